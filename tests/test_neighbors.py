"""NeighborMatcher against a brute-force NumPy reference, on fixed and random sizes."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.base import clone

from shopee_match import NeighborMatcher
from shopee_match.neighbors import graph_from_knn, graph_to_sets, select


def _unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    n[n == 0] = 1
    return (x / n).astype(np.float32)


def _reference_sets(emb, threshold, k, min_matches=1, min_threshold=None):
    """Brute force: top-k by cosine (float64), kept above threshold, plus self and the
    min_matches fallback. Also returns, per row, pairs too close to call (|s - t| tiny or
    at the k boundary), which the comparison ignores."""
    s = emb.astype(np.float64) @ emb.T.astype(np.float64)
    n = len(emb)
    k = min(k, n)
    out, fuzzy = [], []
    for i in range(n):
        order = np.argsort(-s[i], kind="stable")
        top = order[:k]
        near = set()
        if k < n and abs(s[i, order[k - 1]] - s[i, order[k]]) < 1e-5:
            near |= set(np.flatnonzero(np.abs(s[i] - s[i, order[k - 1]]) < 1e-5).tolist())
        keep = {int(j) for j in top if j != i and s[i, j] >= threshold}
        near |= {int(j) for j in range(n) if abs(s[i, j] - threshold) < 1e-5}
        if min_matches > 1 and len(keep) < min_matches - 1:
            floor = -np.inf if min_threshold is None else min_threshold
            extra = [int(j) for j in top if j != i and int(j) not in keep and s[i, j] >= floor]
            keep |= set(extra[: min_matches - 1 - len(keep)])
            near |= set(extra)  # fallback ties are not decidable either
        out.append(keep | {i})
        fuzzy.append(near - {i})
    return out, fuzzy


def _assert_sets_match(got, emb, threshold, k, **kw):
    ref, fuzzy = _reference_sets(emb, threshold, k, **kw)
    assert len(got) == len(ref)
    for i, (g, r, f) in enumerate(zip(got, ref, fuzzy, strict=True)):
        assert i in g.tolist()
        assert set(g.tolist()) - f == r - f, i


@pytest.mark.parametrize("backend", ["numpy", "sklearn", "faiss", "auto"])
@pytest.mark.parametrize("n", [1, 2, 5, 60, 300])
def test_match_equals_brute_force(backend, n):
    if backend == "faiss":
        pytest.importorskip("faiss")
    rng = np.random.default_rng(n)
    emb = _unit(np.repeat(rng.standard_normal((n // 3 + 1, 12)), 3, axis=0)[:n]
                + 0.2 * rng.standard_normal((n, 12)))
    m = NeighborMatcher(threshold=0.8, k=10, backend=backend)
    _assert_sets_match(m.match(emb), emb, 0.8, 10)


def test_neighbors_shapes_and_self_first():
    emb = _unit(np.random.default_rng(0).standard_normal((30, 8)))
    idx, sims = NeighborMatcher(k=50).neighbors(emb)  # k > n: capped
    assert idx.shape == sims.shape == (30, 30)
    assert idx[:, 0].tolist() == list(range(30))
    assert np.all(np.diff(sims, axis=1) <= 1e-6)
    idx, sims = NeighborMatcher().neighbors(np.zeros((0, 8), np.float32))
    assert idx.shape == sims.shape == (0, 0)
    assert NeighborMatcher().match(np.zeros((0, 8), np.float32)) == []


def test_zero_rows_match_only_themselves():
    emb = np.vstack([_unit(np.ones((2, 4))), np.zeros((3, 4), np.float32)])
    sets = NeighborMatcher(threshold=0.5, k=5).match(emb)
    assert [s.tolist() for s in sets] == [[0, 1], [0, 1], [2], [3], [4]]


def test_duplicates_and_ties():
    emb = _unit(np.array([[1, 0], [1, 0], [1, 0], [0, 1]], np.float32))
    sets = NeighborMatcher(threshold=0.99, k=4).match(emb)
    assert [s.tolist() for s in sets] == [[0, 1, 2], [0, 1, 2], [0, 1, 2], [3]]


def test_sparse_tfidf_rows():
    x = sp.csr_matrix(np.array([[1, 0, 0], [0.8, 0.6, 0], [0, 0, 1], [0, 0, 0]], np.float32))
    sets = NeighborMatcher(threshold=0.7, k=3).match(x)
    assert [s.tolist() for s in sets] == [[0, 1], [0, 1], [2], [3]]
    dense = NeighborMatcher(threshold=0.7, k=3, backend="numpy").match(x.toarray())
    assert [s.tolist() for s in sets] == [s.tolist() for s in dense]


def test_min_matches_fallback():
    emb = _unit(np.array([[1, 0], [0.6, 0.8], [0, 1], [-1, 0.01]], np.float32))
    m = NeighborMatcher(threshold=0.99, k=4, min_matches=2)
    assert [s.tolist() for s in m.match(emb)] == [[0, 1], [1, 2], [1, 2], [2, 3]]
    m = NeighborMatcher(threshold=0.99, k=4, min_matches=2, min_threshold=0.5)
    assert [s.tolist() for s in m.match(emb)] == [[0, 1], [1, 2], [1, 2], [3]]


def test_threshold_aware_graph_equals_select_of_candidates():
    emb = _unit(np.random.default_rng(1).standard_normal((200, 6)))
    for kw in ({}, {"min_matches": 2}, {"min_matches": 3, "min_threshold": 0.2}):
        m = NeighborMatcher(threshold=0.75, k=15, **kw)
        fast = m.match_graph(emb)
        slow = m.select(m.candidates(emb))
        assert (fast != slow).nnz == 0


def test_select_threshold_override_and_candidates_graph():
    emb = _unit(np.random.default_rng(2).standard_normal((50, 5)))
    m = NeighborMatcher(threshold=0.9, k=8)
    cand = m.candidates(emb)
    assert cand.shape == (50, 50) and cand.nnz == 50 * 8
    loose = m.select(cand, threshold=0.0)
    assert loose.nnz >= m.select(cand).nnz
    assert m.set_similarity_threshold(0.5).similarity_threshold() == 0.5


def test_graph_helpers_skip_missing_slots():
    sims = np.array([[1.0, 0.5], [1.0, -np.inf]], np.float32)
    idx = np.array([[0, 1], [1, -1]])
    g = graph_from_knn(sims, idx)
    assert g.nnz == 3
    assert [s.tolist() for s in graph_to_sets(select(g, 0.4))] == [[0, 1], [1]]


def test_validation_messages():
    emb = np.eye(2, dtype=np.float32)
    with pytest.raises(ValueError, match="threshold"):
        NeighborMatcher(threshold=2.0).match(emb)
    with pytest.raises(TypeError, match="k"):
        NeighborMatcher(k=1.5).match(emb)
    with pytest.raises(ValueError, match="2-D"):
        NeighborMatcher().match(np.ones(3, np.float32))
    with pytest.raises(ValueError, match="Unknown KNN backend"):
        NeighborMatcher(backend="nope").match(emb)
    clone(NeighborMatcher(threshold=0.3, backend="numpy", working_memory=8))
    with pytest.raises(ValueError, match="kernel must be one of"):  # reaches the backend
        NeighborMatcher(backend_kwargs={"kernel": "fortran"}).match(emb)
    with pytest.raises(TypeError, match="backend_kwargs must be a dict"):
        NeighborMatcher(backend_kwargs=[("n_jobs", 1)]).match(emb)


def test_backend_kwargs_same_matches_and_saved():
    from shopee_match._persist import estimator_from_json, estimator_to_json

    emb = _unit(np.random.default_rng(5).standard_normal((400, 8)))
    m = NeighborMatcher(threshold=0.6, k=9, backend_kwargs={"kernel": "numpy", "n_jobs": 1})
    a, b = m.match(emb), NeighborMatcher(threshold=0.6, k=9).match(emb)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    back = estimator_from_json(estimator_to_json(m))
    assert back.backend_kwargs == {"kernel": "numpy", "n_jobs": 1}


def test_working_memory_is_respected():
    emb = _unit(np.random.default_rng(4).standard_normal((500, 8)))
    a = NeighborMatcher(threshold=0.6, k=9, working_memory=0.02).match(emb)
    b = NeighborMatcher(threshold=0.6, k=9).match(emb)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(0, 200),
    d=st.integers(1, 12),
    k=st.integers(1, 60),
    threshold=st.floats(-0.5, 0.99),
    min_matches=st.integers(1, 3),
    seed=st.integers(0, 2**16),
    backend=st.sampled_from(["numpy", "sklearn"]),
)
def test_matcher_random_sizes(n, d, k, threshold, min_matches, seed, backend):
    rng = np.random.default_rng(seed)
    emb = _unit(rng.standard_normal((n, d)))
    m = NeighborMatcher(threshold=threshold, k=k, min_matches=min_matches, backend=backend,
                        working_memory=0.01)
    got = m.match(emb)
    _assert_sets_match(got, emb, threshold, k, min_matches=min_matches)
    g = m.match_graph(emb)
    assert g.shape == (n, n)
    assert np.all(g.diagonal() == 1)
