"""Self-training on the catalogue matched (``PairReranker(self_train=True)``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from shopee_match import Pipeline, Postings
from shopee_match.cli import main
from shopee_match.rerank._selftrain import FLOOR, self_train
from shopee_match.review import score_pairs
from shopee_match.sources import combine_by_source

WORDS = [f"{a}{b}" for a in ("ka", "lo", "mi", "ne", "pu", "ro", "si", "tu", "ve", "zo")
         for b in ("bar", "den", "fip", "gol", "hun", "jat", "kem", "lur")]


def catalogue(siblings: int, seed: int = 0, n_products: int = 40,
              ) -> tuple[list[str], np.ndarray, sp.csr_matrix]:
    """Titles, labels and a candidate graph (every pair sharing a word, probability
    0.1: the model dropped them all). Products with a model code have 3 offers, and
    ``siblings`` other products each: the same words, another code (a series). Products
    without codes have 3 offers worded alike (a word dropped, the order shuffled)."""
    rng = np.random.default_rng(seed)
    titles, labels = [], []

    def offers(words: list[str], code: str, label: int) -> None:
        for _ in range(3):
            w = list(rng.permutation(words))[: len(words) - int(rng.integers(0, 2))]
            titles.append(" ".join(w + ([code] if code else [])))
            labels.append(label)

    label = 0
    for p in range(n_products):  # coded products and their siblings
        words = list(rng.choice(WORDS, 5, replace=False))
        for s in range(1 + siblings):
            offers(words, f"xq{100 * p + s}", label)
            label += 1
    for _ in range(n_products):  # products without codes
        offers(list(rng.choice(WORDS, 5, replace=False)), "", label)
        label += 1
    n = len(titles)
    tok = [set(t.split()) for t in titles]
    r, c = zip(*[(i, j) for i in range(n) for j in range(i + 1, n) if len(tok[i] & tok[j]) >= 2])
    proba = sp.coo_matrix((np.full(len(r), 0.1, np.float32), (r, c)), shape=(n, n)).tocsr()
    return titles, np.array(labels), sp.csr_matrix(proba + proba.T)


def test_a_catalogue_whose_codes_mostly_agree_gets_its_worded_pairs_back() -> None:
    titles, labels, proba = catalogue(siblings=0)
    kept = sp.eye(len(titles), format="csr")
    learnt = self_train(titles, proba, kept)
    assert learnt.point is not None and learnt.point >= FLOOR
    a = sp.triu(learnt.added, 1).tocoo()
    assert a.nnz > 50
    assert (labels[a.row] == labels[a.col]).mean() > 0.9
    code = np.array([t.split()[-1] if "xq" in t else "" for t in titles])
    coded = (code[a.row] != "") & (code[a.col] != "")
    assert coded.any() and (code[a.row] == code[a.col])[coded].all()  # agreeing codes only
    assert ((code[a.row] == "") & (code[a.col] == "")).sum() > 20  # worded pairs, no code
    assert (learnt.added != learnt.added.T).nnz == 0


def test_a_catalogue_of_series_whose_codes_conflict_adds_nothing() -> None:
    titles, _, proba = catalogue(siblings=3)
    learnt = self_train(titles, proba, sp.eye(len(titles), format="csr"))
    assert learnt.evidence > 100
    assert learnt.point is None and learnt.added.nnz == 0


def test_conflicting_and_kept_pairs_are_never_added() -> None:
    titles, _, proba = catalogue(siblings=0)
    titles = [*titles, "kabar lofip miden xq1", "kabar lofip miden xq2"]  # a conflict
    n = len(titles)
    extra = sp.csr_matrix(([0.1, 0.1], ([n - 2, n - 1], [n - 1, n - 2])), shape=(n, n))
    proba = sp.csr_matrix(sp.block_diag([proba, sp.csr_matrix((2, 2))]) + extra)
    kept = sp.csr_matrix(sp.eye(n) + proba.multiply(sp.random(n, n, 0.3, random_state=0) > 0))
    learnt = self_train(titles, proba, kept)
    assert learnt.point is not None
    assert learnt.added[n - 2, n - 1] == 0
    assert learnt.added.multiply(kept).nnz == 0
    assert learnt.added.multiply(kept.T).nnz == 0  # kept one way round (a min-matches partner)


def marketplace(seed: int = 0, n_products: int = 40) -> Postings:
    titles, labels, _ = catalogue(siblings=0, seed=seed, n_products=n_products)
    return Postings(pd.DataFrame({"posting_id": [f"p{i}" for i in range(len(titles))],
                                  "title": titles, "label_group": labels}))


def test_pretrained_matches_are_the_cut_plus_what_self_training_adds() -> None:
    pipe = Pipeline.pretrained()
    rr = pipe.combiner_
    assert rr.self_train  # the shipped model learns each catalogue's cut
    cat = marketplace()
    proba = rr.predict_proba_graph(pipe.step_graphs(cat), cat.titles)
    cut = rr.select(proba)
    got = rr.matches(proba, cat.titles)
    assert cut.multiply(got).nnz == cut.nnz  # nothing the cut keeps is lost
    assert rr.set_params(self_train=False).matches(proba, cat.titles).nnz == cut.nnz
    added = sp.triu(got - cut, 1).tocoo()
    g = cat.groups()
    if added.nnz:
        assert (g[added.row] == g[added.col]).mean() > 0.8


def test_explanations_and_sources_apply_self_training() -> None:
    pipe = Pipeline.pretrained()
    cat = marketplace(seed=1, n_products=100)
    want = pipe.predict(cat)
    scores = score_pairs(pipe, cat)
    learnt = scores.matches - pipe.combiner_.select(scores.proba)
    if learnt.nnz == 0:
        pytest.skip("the shipped model kept every pair here: nothing for self-training")
    r, c = sp.triu(learnt, 1).nonzero()
    said = scores.evidence(r[:3], c[:3])
    assert all(s.startswith("kept by self-training") for s in said)
    # one source: the same as no source column; two halves: each shop learns its own cut
    df = cat.df.copy()
    df["source"] = "shop"
    one = combine_by_source(pipe, pipe.step_graphs(cat), Postings(df))
    assert (one != pipe.combine_graphs(pipe.step_graphs(cat), cat)).nnz == 0
    got = scores.submission()
    assert (got["matches"].to_numpy() == want["matches"].to_numpy()).all()
    # two shops (products split between them): each shop's own pairs self-trained
    df["source"] = np.where(cat.groups() % 2 == 0, "a", "b")
    two = Postings(df)
    with_st = combine_by_source(pipe, pipe.step_graphs(two), two)
    pipe.combiner_.set_params(self_train=False)
    without = combine_by_source(pipe, pipe.step_graphs(two), two)
    assert without.multiply(with_st).nnz == without.nnz and with_st.nnz > without.nnz


def test_cli_match_self_trains_unless_told_not_to(tmp_path: Path) -> None:
    cat = marketplace(seed=2, n_products=60)
    csv = tmp_path / "catalogue.csv"
    cat.df[["posting_id", "title"]].to_csv(csv, index=False)
    outs = {}
    for flag in ([], ["--no-self-train"]):
        out = tmp_path / f"sub{len(flag)}.csv"
        assert main(["match", str(csv), "-o", str(out), "-q", *flag]) == 0
        outs[len(flag)] = pd.read_csv(out)["matches"].str.split().map(set)
    with_st, without = outs[0], outs[1]
    assert all(b <= a for a, b in zip(with_st, without))  # only additions
    assert sum(map(len, with_st)) > sum(map(len, without))


def test_blocks_of_rows_give_the_same_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    import shopee_match.rerank._selftrain as selftrain

    titles, _, proba = catalogue(siblings=0, seed=3)
    kept = sp.eye(len(titles), format="csr")
    whole = self_train(titles, proba, kept)
    monkeypatch.setattr(selftrain, "CHUNK", 97)
    blocks = self_train(titles, proba, kept)
    assert whole.point == blocks.point and whole.evidence == blocks.evidence
    assert whole.added.nnz > 0 and (whole.added != blocks.added).nnz == 0


def test_calibration_keeps_self_training_only_where_the_labels_say_it_helps(
        tmp_path: Path) -> None:
    from shopee_match.metrics import graph_f1_scores

    cat = marketplace(seed=4, n_products=80)
    pipe = Pipeline.pretrained().calibrate(cat)
    cal = pipe.tuning_["calibration"]
    rr = pipe.combiner_
    assert cal["self_train"] == rr.self_train_
    assert cal["f1"] >= cal["f1_before"] - 1e-9
    proba = rr.predict_proba_graph(pipe.step_graphs(cat), cat.titles)
    f1 = graph_f1_scores(rr.matches(proba, cat.titles), cat.groups()).mean()
    assert f1 == pytest.approx(cal["f1"])  # what predict now does is what was chosen
    other = rr.cut(proba, rr.threshold_)  # the same cut, the other self-training choice
    if not rr.self_train_:
        other = sp.csr_matrix(other + rr.self_trained(proba, cat.titles, other))
    assert graph_f1_scores(other, cat.groups()).mean() <= cal["f1"] + 1e-9
    pipe.save(tmp_path / "m")
    assert Pipeline.load(tmp_path / "m").combiner_.self_train_ == rr.self_train_


def test_a_block_with_nothing_to_add_is_no_error() -> None:
    # every candidate pair conflicts: no pair can be added (an empty gather in SciPy)
    titles = ["aa bb dd xq1", "aa bb dd xq2", "cc ee ff"]
    proba = sp.csr_matrix(([0.1, 0.1], ([0, 1], [1, 0])), shape=(3, 3))
    learnt = self_train(titles, proba, sp.eye(3, format="csr"))
    assert learnt.point is None and learnt.added.nnz == 0 and learnt.evidence == 1


@pytest.mark.parametrize("answer", [1, 0])
def test_reviewed_self_trained_pairs_decide_whether_they_stay(answer: int) -> None:
    """``calibrate_pairs`` keeps self-training's pairs when most reviewed ones were
    answered "same" and drops them when most were not, whatever the probability map
    says of their (low) model probabilities; the other reviewed pairs move the cut."""
    import scipy.sparse as sp

    from shopee_match.calibration import calibrate_pairs, self_trained_pairs

    cat = marketplace(seed=2, n_products=120)
    pipe = Pipeline.pretrained()
    rr = pipe.combiner_
    proba = sp.csr_matrix(rr.predict_proba_graph(pipe.step_graphs(cat), cat.titles))
    learnt = sp.triu(self_trained_pairs(rr, proba, cat.titles), 1).tocoo()
    below = learnt.data < rr.threshold_  # the pairs it adds to the shipped cut
    learnt = sp.coo_matrix((learnt.data[below], (learnt.row[below], learnt.col[below])),
                           shape=learnt.shape)
    assert learnt.nnz >= 10
    g = cat.groups()
    others = sp.triu(proba, 1).tocoo()  # candidate pairs self-training does not add
    out = np.asarray(sp.csr_matrix(learnt != 0)[others.row, others.col]).ravel() == 0
    rng = np.random.default_rng(0)
    high = np.flatnonzero(out & (others.data >= 0.5))
    pick = np.r_[rng.choice(high, 20, replace=False),
                 rng.choice(np.flatnonzero(out), 20, replace=False)]
    ids = np.asarray(cat.posting_id)
    labels = pd.DataFrame({
        "left_id": np.r_[ids[learnt.row[:10]], ids[others.row[pick]]],
        "right_id": np.r_[ids[learnt.col[:10]], ids[others.col[pick]]],
        "same": np.r_[np.full(10, answer),
                      (g[others.row[pick]] == g[others.col[pick]]).astype(int)],
    }).drop_duplicates(["left_id", "right_id"])
    calibrate_pairs(pipe, labels, cat)
    assert pipe.combiner_.self_train_ is bool(answer)
    assert pipe.tuning_["calibration"]["self_train"] is bool(answer)
