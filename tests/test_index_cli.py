"""``shopee-match index`` and ``shopee-match query``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from shopee_match import MatchIndex, Pipeline, make_catalog
from shopee_match.cli import main


def _csvs(tmp_path: Path) -> tuple[Path, Path, pd.DataFrame]:
    df = make_catalog(n_groups=60, images=False, seed=21).df
    cat, new = df.iloc[20:], df.iloc[:20]
    cat.to_csv(tmp_path / "cat.csv", index=False)
    new.to_csv(tmp_path / "new.csv", index=False)
    return tmp_path / "cat.csv", tmp_path / "new.csv", new


def test_index_query_add_replace(tmp_path: Path, capsys: object) -> None:
    cat, new, new_df = _csvs(tmp_path)
    idx, out = tmp_path / "idx", tmp_path / "m.csv"
    train = make_catalog(n_groups=30, images=False, seed=23)
    model = Pipeline.default(phash=False).fit(train).save(tmp_path / "model")
    assert main(["index", str(cat), "--model", str(model), "-o", str(idx), "-q"]) == 0
    assert main(["query", str(new), "--index", str(idx), "-o", str(out), "-q"]) == 0
    sub = pd.read_csv(out)
    assert list(sub.posting_id) == list(new_df.posting_id)
    assert all(pid in m.split() for pid, m in zip(sub.posting_id, sub.matches))
    assert main(["query", str(new), "--index", str(idx), "-o", str(out), "--add", "-q"]) == 0
    assert len(MatchIndex.load(idx)) == len(pd.read_csv(cat)) + len(new_df)
    # now indexed: a second --add is refused, --replace updates
    assert main(["query", str(new), "--index", str(idx), "-o", str(out), "--add", "-q"]) == 2
    assert main(["query", str(new), "--index", str(idx), "-o", str(out), "--add", "--replace",
                 "-q"]) == 0
    assert len(MatchIndex.load(idx)) == len(pd.read_csv(cat)) + len(new_df)


def test_index_with_model_and_wrong_model(tmp_path: Path, capsys: object) -> None:
    cat, new, _ = _csvs(tmp_path)
    train = make_catalog(n_groups=30, images=False, seed=22)
    model = Pipeline.default(rerank=False, phash=False).fit(train).save(tmp_path / "model")
    idx = tmp_path / "idx"
    assert main(["index", str(cat), "--model", str(model), "-o", str(idx), "-q"]) == 0
    other = Pipeline.default(rerank=False, phash=False).fit(make_catalog(n_groups=31, images=False))
    try:
        MatchIndex.load(idx, other)
    except ValueError as exc:
        assert "another model" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("a pipeline fitted on other data was accepted")
    assert main(["query", str(new), "--index", str(tmp_path), "-o", str(tmp_path / "o.csv"),
                 "-q"]) == 2


def test_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cat, _, new_df = _csvs(tmp_path)
    idx = tmp_path / "idx"
    model = Pipeline.default(rerank=False, phash=False).fit(
        make_catalog(n_groups=30, images=False, seed=24)).save(tmp_path / "model")
    assert main(["index", str(cat), "--model", str(model), "-o", str(idx), "-q"]) == 0
    capsys.readouterr()
    bad = tmp_path / "bad.csv"
    pd.concat([new_df, new_df.iloc[:1]]).to_csv(bad, index=False)  # a duplicate id
    assert main(["query", str(bad), "--index", str(idx), "-o", str(tmp_path / "o.csv"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "duplicate posting_id" in err and "\n" not in err
    new_df[["posting_id"]].to_csv(bad, index=False)  # no title
    assert main(["index", str(bad), "--model", str(model), "-o", str(tmp_path / "i2"), "-q"]) == 2
    header = tmp_path / "h.csv"
    header.write_text("posting_id,title\n")
    assert main(["query", str(header), "--index", str(idx), "-o", str(tmp_path / "o.csv"),
                 "--add", "-q"]) == 0
    assert pd.read_csv(tmp_path / "o.csv").empty
    assert len(MatchIndex.load(idx)) == len(pd.read_csv(cat))
