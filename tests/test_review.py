"""Pair explanations, the labelling queue, calibration from reviewed pairs, the CLI's
column names and pair / group outputs (``shopee_match.review``, ``calibration``)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shopee_match import Pipeline, make_catalog, read_postings
from shopee_match.calibration import (
    MIN_PAIRS,
    STRATA,
    calibrate_pairs,
    pair_strata,
    read_pair_labels,
)
from shopee_match.cli import main
from shopee_match.data import Postings, PostingsError
from shopee_match.review import review_queue, score_pairs, write_review
from shopee_match.review._phrases import feature_group, phrase


@pytest.fixture(scope="module")
def catalogue() -> Postings:
    return make_catalog(n_groups=80, per_group=(1, 4), images=False, seed=7)


@pytest.fixture(scope="module")
def scores(catalogue):
    return score_pairs(Pipeline.pretrained(), catalogue)


def truth_labels(cat: Postings, left: np.ndarray, right: np.ndarray) -> pd.DataFrame:
    g = cat.groups()
    ids = cat.posting_id.astype(str)
    return pd.DataFrame({"left_id": ids[left], "right_id": ids[right],
                         "same": (g[left] == g[right]).astype(int)})


# --- explanations ------------------------------------------------------------------------
def test_scores_are_the_pipelines_own(catalogue, scores):
    pipe = Pipeline.pretrained()
    graphs = pipe.step_graphs(catalogue)
    proba = pipe.combiner_.predict_proba_graph(graphs, catalogue.titles)
    assert abs(proba - scores.proba).max() == 0
    assert (scores.matches != pipe.predict_graph(catalogue)).nnz == 0
    assert scores.submission().equals(pipe.predict(catalogue))


def test_evidence_direction_follows_the_probability(scores):
    left, right = scores.pairs()
    p = scores.probability(left, right)
    sure = np.flatnonzero(p > 0.95)[:15]
    assert len(sure)
    # the base rate of a candidate pair is low: a sure pair needs a strong push up (a
    # pair far below it can owe that to the base rate alone, so only sure pairs are read)
    for ev in scores.evidence(left[sure], right[sure]):
        strongest = ev.split("; ")[0]
        assert strongest.endswith(")") and strongest.rsplit("(", 1)[1][0] == "+", ev


def test_phrases_read_the_titles():
    a, b = "Panasonic KX-TS108W phone 64GB", "panasonic kxts108w cordless 128 GB"
    assert phrase("codes", {}, a, b, 1.0, {}) == "shared code KXTS108W"
    assert phrase("codes", {}, a, "Panasonic KXTS600W", -1.0, {}) == "codes differ KXTS108W / KXTS600W"
    assert phrase("sizes", {}, a, b, -1.0, {}) == "sizes differ 64GB / 128GB"
    assert phrase("words", {}, "sennheiser momentum red", "sennheiser momentum blue", 1.0,
                  {"sennheiser": 2, "momentum": 1, "red": 50}) == "rare words shared: momentum, sennheiser"
    vals = {"tfidf__rank_ij": 1.0, "tfidf__rank_ji": 3.0, "tfidf__sim": 0.8}
    assert phrase("tfidf:rank", vals, a, b, 1.0, {}) == "rank both ways by title text: 1st / 3rd"
    assert feature_group("code_conflict") == "codes" and feature_group("phash__s5_i") == "phash:crowd"


def test_union_pipelines_explain_by_similarity(catalogue):
    pipe = Pipeline.default(rerank=False, phash=False).fit(catalogue)
    s = score_pairs(pipe, catalogue)
    table = s.table()
    assert s.kind == "union" and len(table) and table["probability"].isna().all()
    assert table["evidence"].str.contains("title text similarity").all()
    assert (s.matches != pipe.predict_graph(catalogue)).nnz == 0


# --- queue -------------------------------------------------------------------------------
def test_queue_draws_by_strata_with_their_weights(scores):
    q = review_queue(scores, 60, random_state=3)
    left, right = scores.pairs()
    strata = pair_strata(scores.probability(left, right), scores.threshold)
    sizes = {STRATA[s]: int(n) for s, n in zip(*np.unique(strata, return_counts=True))}
    assert len(q) == 60 and not q.duplicated(["left", "right"]).any()
    assert (q["left"] < q["right"]).all()
    for name, part in q.groupby("stratum"):
        assert np.allclose(part["weight"], sizes[name] / len(part))
    near = (q["stratum"] == "near").sum()
    assert near == min(30, sizes.get("near", 0)) or near == sizes.get("near", 0)
    # spread over match sets: the queue touches at least as many sets as its pairs allow
    group = scores.groups()
    near_q = q[q["stratum"] == "near"]
    touched = set(group[near_q["left"]]) | set(group[near_q["right"]])
    near_all = np.flatnonzero(strata == STRATA.index("near"))
    rng = np.random.default_rng(0)
    random_sets = [len(set(group[left[d]]) | set(group[right[d]])) for d in
                   (rng.choice(near_all, len(near_q), replace=False) for _ in range(20))]
    assert len(touched) >= np.mean(random_sets)
    # a seed gives one queue
    assert q.equals(review_queue(scores, 60, random_state=3))
    assert not q.equals(review_queue(scores, 60, random_state=4))


# --- calibration from pairs --------------------------------------------------------------
def test_pair_labels_move_the_cut_the_way_they_say(catalogue, scores):
    q = review_queue(scores, 80, random_state=0)
    left, right = q["left"].to_numpy(), q["right"].to_numpy()
    labels = truth_labels(catalogue, left, right)
    p = q["probability"].to_numpy()
    strict = labels.assign(same=(p >= np.quantile(p, 0.8)).astype(int))
    loose = labels.assign(same=(p >= np.quantile(p, 0.2)).astype(int))
    t_strict = Pipeline.pretrained().calibrate(pairs=strict, context=catalogue).combiner_.threshold_
    t_loose = Pipeline.pretrained().calibrate(pairs=loose, context=catalogue).combiner_.threshold_
    assert t_strict > t_loose
    pipe = Pipeline.pretrained().calibrate(pairs=labels, context=catalogue)
    c = pipe.tuning_["calibration"]
    assert c["labelled_pairs"] == len(labels) and c["same_pairs"] == labels["same"].sum()
    assert c["f1"] >= c["f1_before"] - 1e-12


def test_pair_label_errors_are_one_line(catalogue, scores, tmp_path):
    left, right = scores.pairs()
    labels = truth_labels(catalogue, left[:40], right[:40])
    pipe = Pipeline.pretrained()
    bad = labels.copy()
    bad.loc[3, "left_id"] = "nope"
    with pytest.raises(ValueError, match="row 5: posting id 'nope' is not in the catalogue"):
        calibrate_pairs(pipe, bad, catalogue)
    both = pd.concat([labels, labels.iloc[[0]].assign(same=1 - labels["same"].iloc[0])])
    with pytest.raises(ValueError, match="labelled both same and different"):
        calibrate_pairs(pipe, both, catalogue)
    with pytest.raises(ValueError, match="too few labels to move the cut"):
        calibrate_pairs(pipe, labels.iloc[:MIN_PAIRS - 1], catalogue)
    with pytest.raises(ValueError, match="too few labels"):
        calibrate_pairs(pipe, labels.assign(same=0), catalogue)
    path = tmp_path / "labels.csv"
    labels.assign(same="maybe").to_csv(path, index=False)
    with pytest.raises(ValueError, match="row 2: `same` is 'maybe'"):
        read_pair_labels(path)


def test_cli_calibrate_pairs_errors(catalogue, tmp_path, capsys):
    csv = tmp_path / "cat.csv"
    catalogue.df.to_csv(csv, index=False)
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"left_id": ["p0000000", "ghost"], "right_id": ["p0000001", "p0000002"],
                  "same": [1, 0]}).to_csv(labels, index=False)
    rc = main(["calibrate", "--pairs", str(labels), "--catalogue", str(csv), "-o",
               str(tmp_path / "m"), "-q"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "ghost" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "m").exists()
    assert main(["calibrate", "--pairs", str(labels), "-o", str(tmp_path / "m"), "-q"]) == 2
    assert "--catalogue" in capsys.readouterr().err


# --- columns and outputs -----------------------------------------------------------------
def test_read_postings_with_other_column_names(tmp_path):
    path = tmp_path / "items.csv"
    path.write_text("id,name,price\na1,Red mug 300ml,2.5\na2,Blue mug,3\n", encoding="utf-8")
    p = read_postings(path, columns={"posting_id": "id", "title": "name"})
    assert p.posting_id.tolist() == ["a1", "a2"] and p.titles[0] == "Red mug 300ml"
    assert p.df["price"].tolist() == [2.5, 3.0]
    with pytest.raises(PostingsError, match=r"no column `sku` to read as `posting_id` \(--id-column\)"):
        read_postings(path, columns={"posting_id": "sku"})
    with pytest.raises(PostingsError, match="not postings columns"):
        read_postings(path, columns={"price": "price"})
    with pytest.raises(PostingsError, match="--id-column"):
        read_postings(path)


def test_match_writes_pairs_and_groups(catalogue, tmp_path, capsys):
    csv = tmp_path / "items.csv"
    catalogue.df.rename(columns={"posting_id": "id", "title": "name"}).assign(price=1.0) \
        .drop(columns=["label_group"]).to_csv(csv, index=False)
    out, pairs, groups = tmp_path / "sub.csv", tmp_path / "pairs.csv", tmp_path / "groups.csv"
    assert main(["match", str(csv), "--id-column", "id", "--title-column", "name", "-o", str(out),
                 "--pairs-out", str(pairs), "--groups-out", str(groups), "-q"]) == 0
    sub = pd.read_csv(out, dtype=str)
    assert sub.equals(Pipeline.pretrained().predict(catalogue).astype(str))
    pt = pd.read_csv(pairs, dtype={"left_id": str, "right_id": str})
    assert list(pt.columns) == ["left_id", "right_id", "probability", "evidence"]
    kept = {(a, b) for pid, m in zip(sub.posting_id, sub.matches) for a in [pid]
            for b in m.split() if a < b}
    kept |= {(b, a) for a, b in kept}
    assert {tuple(sorted(x)) for x in zip(pt.left_id, pt.right_id)} == {
        tuple(sorted(x)) for x in kept}
    assert pt["probability"].between(0, 1).all() and pt["evidence"].str.len().gt(0).all()
    gt = pd.read_csv(groups, dtype={"posting_id": str})
    assert gt.posting_id.tolist() == sub.posting_id.tolist()
    group = dict(zip(gt.posting_id, gt.group))
    assert all(group[a] == group[b] for a, b in kept)
    # a failed run writes none of them
    for f in (out, pairs, groups):
        f.unlink()
    rc = main(["match", str(csv), "--id-column", "id", "--title-column", "missing", "-o", str(out),
               "--pairs-out", str(pairs), "--groups-out", str(groups), "-q"])
    assert rc == 2 and not any(f.exists() for f in (out, pairs, groups))
    assert "no column `missing`" in capsys.readouterr().err


def test_review_cli_writes_the_page_contract(catalogue, tmp_path):
    csv = tmp_path / "cat.csv"
    catalogue.df.to_csv(csv, index=False)
    page = tmp_path / "review.html"
    assert main(["review", str(csv), "--queue", "25", "-o", str(page), "-q"]) == 0
    text = page.read_text(encoding="utf-8")
    assert text.count("data-pair=") >= 1 and "exportLabels" in text and "localStorage" in text
    assert "http://" not in text and "https://" not in text
    assert main(["review", str(csv), "--queue", "-1", "-o", str(tmp_path / "x.html"), "-q"]) == 2
    assert not (tmp_path / "x.html").exists()


def test_no_import_circle_through_the_cli():
    import ast

    src = Path(__file__).resolve().parents[1] / "src" / "shopee_match"
    for path in src.rglob("*.py"):
        if "cli" in path.relative_to(src).parts or path.name == "__main__.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not (node.module == "cli" or node.module.startswith("cli.")
                            or "shopee_match.cli" in node.module), f"{path} imports the CLI"


def test_review_page_links_thumbnails_beside_it(tmp_path):
    cat = make_catalog(n_groups=40, image_dir=tmp_path / "imgs", seed=2)
    out = tmp_path / "pages" / "review.html"
    page = write_review(Pipeline.pretrained(), cat, out, queue=15)
    text = page.read_text(encoding="utf-8")
    srcs = set(re.findall(r'"(\.\./imgs/[^"]+)"', text))
    assert len(srcs) == len(cat)
    assert all((out.parent / s).is_file() for s in srcs)
    assert str(tmp_path) not in text  # relative links only: the folder can move


def test_scheduler_refuses_what_it_cannot_do(tmp_path, capsys):
    rc = main(["match", "x.csv", "--scheduler", "local:1", "--pairs-out", "p.csv", "-o",
               str(tmp_path / "s.csv"), "-q"])
    assert rc == 2 and "--scheduler" in capsys.readouterr().err
