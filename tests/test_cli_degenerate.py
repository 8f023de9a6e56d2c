"""Degenerate inputs, through the API and through `shopee-match`: they fit with a
warning saying what was skipped, or fail with one line saying what is needed."""

from __future__ import annotations

import re
import warnings

import pandas as pd
import pytest

from shopee_match import Pipeline, Postings, PostingsError, make_catalog, read_postings
from shopee_match._plot_eda import largest_groups
from shopee_match.cli import main
from shopee_match.datasets import make_titles


def _rows(kind: str) -> list[tuple[str, str, int]]:
    if kind == "one_group":
        return [("a", "Red mug 300ml", 1), ("b", "red mug 300 ml", 1), ("c", "RED MUG", 1)]
    if kind == "singletons":
        return [(f"p{i}", f"Item {i} thing {i * 7}", i) for i in range(8)]
    if kind == "two_postings":
        return [("a", "Red mug", 1), ("b", "Blue mug", 2)]
    if kind == "three_two_groups":
        return [("a", "Red mug", 1), ("b", "red mug", 1), ("c", "Blue pan", 2)]
    if kind == "one_group_everything":
        return [(f"p{i}", f"Mug variant {i % 5}", 7) for i in range(60)]
    if kind == "group_of_thousands":  # 2,000 postings of one product and 30 others
        big = [(f"b{i}", f"Acme Water Bottle 500ml {['Red', 'Blue'][i % 2]}", 0) for i in range(2000)]
        return big + [(f"s{i}", f"Item {i} thing", i + 1) for i in range(30)]
    raise AssertionError(kind)


KINDS = ["one_group", "singletons", "two_postings", "three_two_groups", "one_group_everything",
         "group_of_thousands"]
#: why nothing is learned from each kind (matched against the warnings)
SKIPPED = {"one_group": "too few", "singletons": "could not learn", "two_postings": "too few",
           "three_two_groups": "too few", "one_group_everything": "too few",
           "group_of_thousands": None}


def _csv(tmp_path, kind):
    path = tmp_path / f"{kind}.csv"
    pd.DataFrame(_rows(kind), columns=["posting_id", "title", "label_group"]).to_csv(path, index=False)
    return path


def _check_submission(sub: pd.DataFrame, ids: list[str]) -> None:
    assert sub["posting_id"].tolist() == ids
    for pid, matches in zip(sub["posting_id"], sub["matches"]):
        assert pid in matches.split() and set(matches.split()) <= set(ids)


@pytest.mark.parametrize("kind", KINDS)
def test_api_fits_degenerate_sets_with_a_warning(tmp_path, kind):
    postings = read_postings(_csv(tmp_path, kind))
    rerank = kind != "group_of_thousands"  # the reranker on 2,000 x 30 pairs is slow, not broken
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipe = Pipeline.default(phash=False, rerank=rerank).fit(postings)
    messages = " | ".join(str(w.message) for w in caught)
    if SKIPPED[kind]:
        assert SKIPPED[kind] in messages
        assert "using the" in messages and "union" in messages  # what replaced the reranker
    pipe.save(tmp_path / "model")
    again = Pipeline.load(tmp_path / "model")
    _check_submission(again.predict(postings), postings.posting_id.tolist())


@pytest.mark.parametrize("kind", KINDS)
def test_cli_fits_degenerate_sets_with_a_warning(tmp_path, kind, capsys):
    csv = _csv(tmp_path, kind)
    extra = ["--no-rerank"] if kind == "group_of_thousands" else []
    assert main(["fit", str(csv), "-o", str(tmp_path / "model"), *extra]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "error" not in err
    assert re.search(r"fitted on \d+ postings; (cross-validated F1 \d|not tuned \(too few)", out)
    if SKIPPED[kind]:
        assert any(line.startswith("warning:") and SKIPPED[kind] in line for line in err.splitlines())
    assert main(["match", str(csv), "--model", str(tmp_path / "model"), "-o",
                 str(tmp_path / "sub.csv"), "-q"]) == 0
    ids = pd.read_csv(csv, dtype=str)["posting_id"].tolist()
    _check_submission(pd.read_csv(tmp_path / "sub.csv", dtype=str), ids)


def test_fit_on_no_postings_says_what_is_needed(tmp_path, capsys):
    csv = tmp_path / "empty.csv"
    csv.write_text("posting_id,title,label_group\n")
    with pytest.raises(ValueError, match="no postings to fit on"):
        Pipeline.default().fit(read_postings(csv))
    assert main(["fit", str(csv), "-o", str(tmp_path / "model")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error:") and "empty.csv" in err[-1] and "no postings" in err[-1]
    assert not (tmp_path / "model").exists()  # never a half-written model


def test_fit_without_labels_is_one_line_and_no_model(tmp_path, capsys):
    csv = tmp_path / "unlabelled.csv"
    csv.write_text("posting_id,title\na,Red mug\nb,Blue mug\n")
    assert main(["fit", str(csv), "-o", str(tmp_path / "model"), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "label_group" in err[0]
    assert not (tmp_path / "model").exists()


@pytest.mark.parametrize("header", ["posting_id,title,title", "posting_id,posting_id,title",
                                    "posting_id,title,label_group,label_group"])
def test_repeated_column_is_an_error_naming_it(tmp_path, capsys, header):
    n = header.count(",") + 1
    csv = tmp_path / "dup.csv"
    csv.write_text(header + "\n" + ",".join(["1"] * n) + "\n" + ",".join(["2"] * n) + "\n")
    name = next(c for c in header.split(",") if header.split(",").count(c) > 1)
    with pytest.raises(PostingsError, match=rf"dup\.csv: column `{name}` appears twice"):
        read_postings(csv)
    assert main(["match", str(csv), "-o", str(tmp_path / "s.csv"), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "dup.csv" in err[0] and f"`{name}`" in err[0]
    assert not (tmp_path / "s.csv").exists()


def test_distinct_columns_that_look_renamed_are_fine(tmp_path):
    csv = tmp_path / "ok.csv"
    csv.write_text("posting_id,title,title.1\na,Red mug,x\nb,Blue mug,y\n")
    assert len(read_postings(csv)) == 2


def test_make_catalog_splits_sizes_at_the_unit():
    titles = " ".join(make_titles(400, seed=0)["title"]).lower()
    assert not re.search(r"\d+p cs|\d+m ah|\d+c m|\d+m l\b|\d+g r\b", titles)
    for unit in ("pcs", "mah", "ml"):
        assert re.search(rf"\b\d+ {unit}\b", titles), unit  # the split still happens
        assert re.search(rf"\b\d+{unit}\b", titles), unit  # and not always


def test_eda_labels_decode_escaped_bytes(tmp_path, capsys):
    df = pd.DataFrame({"posting_id": [f"p{i}" for i in range(4)],
                       "title": [r"Peace \xe2\x98\xae mug", r"Peace \xe2\x98\xae mug",
                                 "Plain cup", r"Caf\xc3\xa9 beans"],
                       "label_group": [1, 1, 2, 3]})
    fig = largest_groups(Postings(df), top=5)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert any("☮" in s for s in labels) and any("Café" in s for s in labels)
    assert not any("\\x" in s for s in labels)
    csv = tmp_path / "esc.csv"
    df.to_csv(csv, index=False)
    assert main(["eda", str(csv), "-o", str(tmp_path / "eda"), "-q"]) == 0
    assert sorted(p.name for p in (tmp_path / "eda").iterdir()) == [
        "largest_groups.png", "title_lengths.png"]


def test_image_model_without_images_is_one_line_and_no_model(tmp_path, capsys):
    data = make_catalog(n_groups=3, images=False, seed=0).df
    data["image"] = [f"{p}.jpg" for p in data["posting_id"]]
    csv = tmp_path / "p.csv"
    data.to_csv(csv, index=False)
    code = main(["fit", str(csv), "-o", str(tmp_path / "m"), "--image-model", "-q"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--images" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.csv"]
