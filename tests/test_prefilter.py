"""The reranker's pair prefilter (a cascade): pairs it drops are never featured or
scored, at fit and at predict time alike; it is saved with the model (JSON and
LightGBM text), and the block engine's answers still do not depend on block sizes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from shopee_match import Pipeline, make_catalog
from shopee_match.data import train_test_split_groups
from shopee_match.rerank import PairReranker
from shopee_match.rerank._fit import stage_features
from shopee_match.rerank._prefilter import prefilter_features, prefilter_names
from shopee_match.rerank.pair_features import PairContext, candidate_pairs
from shopee_match.review import score_pairs


@pytest.fixture(scope="module")
def case() -> tuple[PairReranker, dict[str, sp.csr_matrix], list[str], np.ndarray]:
    p = make_catalog(n_groups=220, per_group=(1, 6), images=False, seed=11)
    train, test = train_test_split_groups(p, test_size=0.4, random_state=0)
    pipe = Pipeline.pretrained()
    rr = PairReranker(prefilter_recall=0.99, max_iter=25, n_jobs=1).fit(
        pipe.step_graphs(train), train.groups(), list(train.titles))
    return rr, pipe.step_graphs(test), list(test.titles), test.groups()


def _straightforward(rr: PairReranker, cands: dict[str, sp.csr_matrix],
                     titles: list[str]) -> tuple[sp.csr_matrix, np.ndarray]:
    """The probabilities computed in one go: the prefilter's features of every pair,
    its model and floor, then the full stages on the kept pairs only."""
    r, c = candidate_pairs(cands)
    n = next(iter(cands.values())).shape[0]
    ctx = PairContext(cands, titles, 1)
    q = prefilter_features(ctx.graphs, r, c)
    keep = rr.prefilter_.predict(q) >= rr.prefilter_floor_
    r, c = r[keep], c[keep]
    x, _ = ctx.features(r, c)
    proba = sp.csr_matrix((n, n), dtype=np.float32)
    for stage, booster in enumerate(rr.boosters_):
        if stage:
            x = np.hstack([x, stage_features(proba, r, c, stage - 1)[0]])
        p = np.asarray(booster.predict(x), dtype=np.float64)
        g = sp.csr_matrix((p, (r, c)), shape=(n, n))
        proba = sp.csr_matrix((g + g.T) * 0.5, dtype=np.float32)
    return proba, keep


@pytest.mark.parametrize("block", [1, 7, None])
def test_prefiltered_blocks_equal_the_straightforward_scoring(case, block) -> None:
    rr, cands, titles, _ = case
    want, keep = _straightforward(rr, cands, titles)
    assert 0.05 < keep.mean() < 0.8  # it drops many pairs, not all
    got = rr.predict_proba_graph(cands, titles, block_size=block)
    assert got.nnz == want.nnz > 100
    assert (got != want).nnz == 0  # bit for bit
    assert rr.predict_proba_graph(cands, titles, max_pairs=40).nnz == want.nnz


def test_dropped_pairs_are_symmetric_and_absent(case) -> None:
    rr, cands, titles, _ = case
    r, _ = candidate_pairs(cands)
    got = rr.predict_proba_graph(cands, titles)
    stored = sp.csr_matrix((np.ones(got.nnz), got.indices, got.indptr), shape=got.shape)
    assert (stored != stored.T).nnz == 0  # (i, j) kept iff (j, i) kept
    assert got.nnz < len(r)  # fewer pairs than candidates carry a probability


def test_prefilter_keeps_the_true_pairs_of_unseen_groups(case) -> None:
    rr, cands, _, groups = case
    r, c = candidate_pairs(cands)
    keep = rr.keep_pairs(PairContext(cands, None, 1).graphs, r, c)
    assert keep is not None
    true = groups[r] == groups[c]
    assert keep[true].mean() >= 0.97  # of held-out true pairs (fitted for 0.99 in fold)
    assert keep[~true].mean() < 0.7  # while most wrong pairs go


def test_features_are_symmetric_in_the_pair(case) -> None:
    _, cands, _, _ = case
    r, c = candidate_pairs(cands)
    graphs = PairContext(cands, None, 1).graphs
    a, b = prefilter_features(graphs, r, c), prefilter_features(graphs, c, r)
    assert a.shape == (len(r), len(prefilter_names(sorted(cands))))
    assert np.array_equal(a, b, equal_nan=True)


def test_saved_with_the_model_and_loaded_back(case, tmp_path) -> None:
    rr, cands, titles, _ = case
    rr.save_state(tmp_path)
    state = json.loads((tmp_path / "reranker.json").read_text())
    assert state["format"] == 3 and state["prefilter"]["floor"] == rr.prefilter_floor_
    assert (tmp_path / "reranker_prefilter.txt").is_file()
    back = PairReranker()
    back.load_state(tmp_path)
    got = back.predict_proba_graph(cands, titles)
    assert (got != rr.predict_proba_graph(cands, titles)).nnz == 0


def test_without_prefilter_saved_as_before(tmp_path) -> None:
    p = make_catalog(n_groups=60, images=False, seed=2)
    pipe = Pipeline.pretrained()
    cands = pipe.step_graphs(p)
    rr = PairReranker(max_iter=10, n_jobs=1).fit(cands, p.groups(), list(p.titles))
    assert rr.prefilter_ is None
    rr.save_state(tmp_path)
    state = json.loads((tmp_path / "reranker.json").read_text())
    assert state["format"] == 2 and "prefilter" not in state
    assert not (tmp_path / "reranker_prefilter.txt").exists()
    back = PairReranker()
    back.load_state(tmp_path)
    assert back.prefilter_ is None
    r, _ = candidate_pairs(cands)
    assert back.predict_proba_graph(cands, list(p.titles)).nnz == len(r)  # every pair scored


def test_training_pairs_shrink(case) -> None:
    rr = case[0]
    assert 0.0 < rr.prefilter_kept_ < 0.8
    assert rr.prefilter_names_ == prefilter_names(rr.modalities_)


@pytest.mark.parametrize("bad", [0.0, 1.5, -1])
def test_bad_recall_is_refused(bad) -> None:
    p = make_catalog(n_groups=20, images=False, seed=0)
    cands = Pipeline.pretrained().step_graphs(p)
    with pytest.raises(ValueError, match="prefilter_recall"):
        PairReranker(prefilter_recall=bad).fit(cands, p.groups(), list(p.titles))


def test_explain_names_the_dropped_pairs(case) -> None:
    p = make_catalog(n_groups=80, per_group=(1, 5), images=False, seed=4)
    train, test = train_test_split_groups(p, test_size=0.5, random_state=1)
    pipe = Pipeline.default(images=False, phash=False).set_params(ensemble__max_iter=15,
                                                               ensemble__prefilter_recall=0.99)
    pipe.fit(train)
    assert pipe.combiner_.prefilter_ is not None
    scores = score_pairs(pipe, test)
    r, c = candidate_pairs(pipe.step_graphs(test))
    keep = pipe.combiner_.keep_pairs(PairContext(pipe.step_graphs(test), None, 1).graphs, r, c)
    assert keep is not None and not keep.all()
    dropped = np.flatnonzero(~keep)[:3]
    words = scores.evidence(r[dropped], c[dropped])
    assert all("prefilter" in w for w in words)
    assert scores.proba[r[dropped], c[dropped]].max() == 0
