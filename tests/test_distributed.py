"""Distributed matching on a 2-process ``LocalCluster``: the same match sets as one machine."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("dask.dataframe")
pytest.importorskip("distributed")

import dask.dataframe as dd

from shopee_match import (
    HashMatcher,
    NeighborMatcher,
    PhashEmbedder,
    Pipeline,
    Postings,
    TfidfEmbedder,
)
from shopee_match.cli import main
from shopee_match.datasets import make_titles
from shopee_match.distributed import predict_dask
from shopee_match.ensemble import Ensemble

pytestmark = pytest.mark.dask


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """~2,000 generated postings; most of a group share a phash, some near-misses."""
    df = make_titles(550, seed=7)
    rng = np.random.default_rng(7)
    base = {g: int(rng.integers(0, 2**63)) for g in df["label_group"].unique()}
    hashes = []
    for g in df["label_group"]:
        h, u = base[g], rng.random()
        if u < 0.15:
            h ^= 1 << int(rng.integers(0, 64))  # one bit off: a radius-1 match
        elif u < 0.3:
            h = int(rng.integers(0, 2**63))
        hashes.append(f"{h:016x}" if rng.random() > 0.05 else None)
    df["image_phash"] = hashes
    return df


def _pipe(frame: pd.DataFrame, tfidf: NeighborMatcher, phash: HashMatcher) -> Pipeline:
    steps = [("tfidf", TfidfEmbedder(), tfidf), ("phash", PhashEmbedder(), phash)]
    return Pipeline(steps, ensemble=Ensemble(how="union"), tune=False).fit(Postings(frame))


@pytest.fixture(scope="module")
def pipe(frame):
    return _pipe(frame, NeighborMatcher(threshold=0.5, k=50), HashMatcher(max_distance=0))


@pytest.fixture(scope="module")
def expected(pipe, frame) -> pd.DataFrame:
    return pipe.predict(Postings(frame))


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.columns) == ["posting_id", "matches"]
    assert a["posting_id"].tolist() == b["posting_id"].tolist()
    assert a["matches"].tolist() == b["matches"].tolist()


def test_exact_equals_single_machine(client, pipe, frame, expected):
    ddf = dd.from_pandas(frame, npartitions=3)
    out = predict_dask(pipe, ddf, client=client, partition_rows=450)
    _same(out, expected)
    stats = out.attrs["shopee_match"]
    assert stats["n_partitions"] >= 5 and stats["n_postings"] == len(frame)
    assert {"read_embed", "search_tfidf", "search_phash", "assemble"} <= set(stats["timings"])


def test_csv_and_parquet_globs(client, pipe, frame, expected, tmp_path):
    for i, chunk in enumerate(np.array_split(np.arange(len(frame)), 3)):
        part = frame.iloc[chunk]
        part.to_csv(tmp_path / f"postings-{i}.csv", index=False)
        part.to_parquet(tmp_path / f"postings-{i}.parquet", index=False)
    _same(predict_dask(pipe, str(tmp_path / "postings-*.csv"), client=client), expected)
    _same(predict_dask(pipe, str(tmp_path / "postings-*.parquet"), client=client,
                       partition_rows=300), expected)


def test_min_matches_and_hash_radius_exact(client, frame):
    pipe = _pipe(frame, NeighborMatcher(threshold=0.7, k=20, min_matches=2, min_threshold=0.3),
                 HashMatcher(max_distance=2))
    expected = pipe.predict(Postings(frame))
    out = predict_dask(pipe, dd.from_pandas(frame, npartitions=4), client=client)
    _same(out, expected)


@pytest.mark.parametrize("flat_max", [1024, 4])
def test_ivf_reports_recall_and_stays_close(client, pipe, frame, expected, flat_max,
                                            monkeypatch):
    import shopee_match.distributed._quantizer as ivf

    monkeypatch.setattr(ivf, "FLAT_MAX_CELLS", flat_max)  # 4: the two-level quantizer
    ddf = dd.from_pandas(frame, npartitions=4)
    out = predict_dask(pipe, ddf, client=client, method="ivf", cell_size=300, n_probe=2,
                       recall_sample=600)
    assert out["posting_id"].tolist() == expected["posting_id"].tolist()
    stats = out.attrs["shopee_match"]
    rec = stats["recall_tfidf"]
    assert rec["sample"] == 600 and rec["exact_pairs"] > 0
    assert rec["recall"] >= 0.9
    assert rec["precision_vs_exact"] == pytest.approx(1.0)  # cells only lose pairs
    # every IVF match set is a subset of the exact one (phash is exact in both)
    for got, want in zip(out["matches"], expected["matches"]):
        assert set(got.split()) <= set(want.split())
    assert np.mean(out["matches"].to_numpy() == expected["matches"].to_numpy()) >= 0.9
    assert stats["ivf_tfidf"]["n_cells"] > 1
    assert stats["ivf_tfidf"]["two_level"] == (flat_max == 4)


def test_cli_match_with_scheduler(client, pipe, frame, expected, tmp_path, capsys):
    pipe.save(tmp_path / "model")
    for i, chunk in enumerate(np.array_split(np.arange(len(frame)), 2)):
        frame.iloc[chunk].to_csv(tmp_path / f"p{i}.csv", index=False)
    out = tmp_path / "sub.csv"
    rc = main(["match", str(tmp_path / "p*.csv"), "--model", str(tmp_path / "model"),
               "-o", str(out), "--scheduler", client.scheduler.address, "--quiet"])
    assert rc == 0
    assert "wrote" in capsys.readouterr().out
    got = pd.read_csv(out, dtype=str, keep_default_na=False)
    _same(got, expected)


def test_cli_scheduler_with_a_missing_model_folder(tmp_path, frame, capsys):
    frame.to_csv(tmp_path / "p.csv", index=False)
    rc = main(["match", str(tmp_path / "p.csv"), "--model", str(tmp_path / "nope"),
               "-o", str(tmp_path / "s.csv"), "--scheduler", "local:1", "--quiet"])
    assert rc == 2
    assert "nope" in capsys.readouterr().err
    assert not (tmp_path / "s.csv").exists()


def test_unsupported_ensemble_is_explained(client, pipe, frame):
    other = Pipeline(pipe.steps, ensemble=Ensemble(how="vote"), tune=False)
    other.n_postings_fit_, other.combiner_ = pipe.n_postings_fit_, other.ensemble
    with pytest.raises(NotImplementedError, match="union"):
        predict_dask(other, dd.from_pandas(frame, npartitions=2), client=client)
    class Subclassed(NeighborMatcher):  # e.g. a matcher that searches differently
        pass

    sub = Pipeline([("tfidf", pipe.steps[0][1], Subclassed())], tune=False)
    sub.n_postings_fit_, sub.combiner_ = pipe.n_postings_fit_, pipe.combiner_
    with pytest.raises(NotImplementedError, match="no distributed search"):
        predict_dask(sub, dd.from_pandas(frame, npartitions=2), client=client)
    with pytest.raises(ValueError, match="method"):
        predict_dask(pipe, dd.from_pandas(frame, npartitions=2), client=client, method="lsh")
    with pytest.raises(FileNotFoundError, match="no files match"):
        predict_dask(pipe, "/no/such/dir/*.csv", client=client)


def test_pipeline_predict_refuses_dask_inputs_and_names_the_runtime(pipe, frame, tmp_path):
    # Pipeline.predict returns one type; a Dask run is the runtime above it
    for source in (dd.from_pandas(frame, npartitions=2), str(tmp_path / "postings-*.csv"),
                   tmp_path / "postings.parquet"):
        with pytest.raises(TypeError, match=r"shopee_match\.distributed\.predict_dask\(pipe, source\)"):
            pipe.predict(source)
    with pytest.raises(TypeError, match="Postings"):
        pipe.predict(frame)


def test_missing_dask_names_the_extra(monkeypatch, pipe):
    import shopee_match.distributed as dist

    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    with pytest.raises(ImportError, match=r"shopee_match\[dask\]"):
        dist.predict_dask(pipe, "x.csv")


def test_import_does_not_load_dask():
    code = ("import sys, shopee_match, shopee_match.pipeline; "
            "print(any(m == 'dask' or m.startswith(('dask.', 'distributed')) "
            "for m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "False"


def test_header_only_input_and_output_file(client, pipe, tmp_path):
    (tmp_path / "empty.csv").write_text("posting_id,title,image_phash\n")
    out = predict_dask(pipe, str(tmp_path / "empty.csv"), client=client)
    assert list(out.columns) == ["posting_id", "matches"] and len(out) == 0
    stats = predict_dask(pipe, str(tmp_path / "empty.csv"), client=client,
                         output=tmp_path / "sub.csv")
    assert stats["n_written"] == 0
    assert (tmp_path / "sub.csv").read_text().strip() == "posting_id,matches"


def _pieces(b: int, n_dest: int) -> list[tuple[int, int]]:
    return [(b, d) for d in range(n_dest)]


def _concat(tag: str, *pieces: tuple[int, int]) -> tuple[str, list[tuple[int, int]]]:
    return tag, list(pieces)


@pytest.mark.parametrize("group", [None, 1, 3, 7, 50])
def test_route_gives_each_destination_its_pieces_in_source_order(client, group):
    from shopee_match.distributed._route import apply_pieces, route

    n_src, n_dest = 5, 7
    split = [client.submit(_pieces, b, n_dest, pure=False) for b in range(n_src)]
    handles = route(client, split, n_dest, group=group)
    assert len(handles) == n_dest
    got = client.gather([apply_pieces(client, h, _concat, f"d{d}")
                         for d, h in enumerate(handles)])
    assert got == [(f"d{d}", [(b, d) for b in range(n_src)]) for d in range(n_dest)]
    # gathering tasks: one per group of destinations and group of sources (5 sources:
    # groups of 3), not one per piece
    size = {None: 3, 1: 1, 3: 3, 7: 7, 50: 50}[group]
    assert len({g.key for h in handles for g in h[0]}) == -(-n_dest // size) * 2
