"""The one contract every KNN backend passes: same neighbours as brute force (ties aside)."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import scipy.sparse as sp

from shopee_match.neighbors import available_backends, get_backend
from shopee_match.neighbors._numpy import NumpyBackend, merge_topk
from shopee_match.neighbors._sparse import SparseBackend, _head_size
from shopee_match.neighbors._topk import topk_block, topk_columns

HAS_FAISS = importlib.util.find_spec("faiss") is not None
HAS_NUMBA = importlib.util.find_spec("numba") is not None
needs_numba = pytest.mark.skipif(not HAS_NUMBA, reason="numba (the [fast] extra)")
HAS_GPU = False
if importlib.util.find_spec("cupy") is not None:  # pragma: no cover - no GPU in CI
    try:
        import cupy

        HAS_GPU = cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        HAS_GPU = False

DENSE_EXACT = [
    pytest.param("numpy", {}, id="numpy"),
    pytest.param("numpy", {"kernel": "numba"}, id="numpy-numba", marks=needs_numba),
    pytest.param("numpy", {"symmetric": True}, id="numpy-symmetric"),
    pytest.param("numpy", {"symmetric": True, "kernel": "numba"}, id="numpy-symmetric-numba",
                 marks=needs_numba),
    pytest.param("numpy", {"working_memory": 0.05, "symmetric": True}, id="numpy-small-tiles"),
    pytest.param("numpy", {"working_memory": 0.05, "kernel": "numba"}, id="numpy-small-blocks",
                 marks=needs_numba),
    pytest.param("sklearn", {}, id="sklearn"),
    pytest.param("faiss", {}, id="faiss", marks=pytest.mark.skipif(not HAS_FAISS, reason="faiss")),
    pytest.param("cupy", {}, id="cupy", marks=pytest.mark.skipif(not HAS_GPU, reason="GPU")),
    pytest.param("cuml", {}, id="cuml", marks=pytest.mark.skipif(not HAS_GPU, reason="GPU")),
]


def _unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    n[n == 0] = 1
    return (x / n).astype(np.float32)


def _brute(q: np.ndarray, r: np.ndarray, k: int) -> np.ndarray:
    """Reference: each row's k largest similarities (float64), sorted falling."""
    s = np.asarray(q, dtype=np.float64) @ np.asarray(r, dtype=np.float64).T
    return -np.sort(-s, axis=1)[:, : min(k, r.shape[0])]


def check_contract(sims, idx, q, r, k, threshold=None, positive_only=False, atol=1e-5):
    """Shapes, sortedness, returned ids really have the returned similarity, and the
    similarity profile equals brute force (so the set is right up to ties)."""
    q = q.toarray() if sp.issparse(q) else np.asarray(q)
    r = r.toarray() if sp.issparse(r) else np.asarray(r)
    kk = min(k, r.shape[0])
    assert sims.shape == idx.shape == (q.shape[0], kk)
    assert sims.dtype == np.float32
    assert np.issubdtype(idx.dtype, np.integer)
    ref = _brute(q, r, k)
    floor = threshold
    if positive_only:
        floor = 1e-7 if threshold is None else max(threshold, 1e-7)
    if floor is not None:
        ref = np.where(ref >= floor - atol, ref, -np.inf)
    valid = idx >= 0
    assert np.all(np.isneginf(sims[~valid]))
    for i in range(q.shape[0]):
        row = idx[i][valid[i]]
        assert len(set(row.tolist())) == len(row), "duplicate neighbour"
        true = q[i].astype(np.float64) @ r[row].astype(np.float64).T
        np.testing.assert_allclose(sims[i][valid[i]], true, atol=atol)
        assert np.all(np.diff(sims[i][valid[i]]) <= atol), "not sorted"
    got = np.where(valid, sims, -np.inf)
    both = np.isfinite(ref) & np.isfinite(got)
    np.testing.assert_allclose(got[both], ref[both], atol=atol)
    # slots that differ in finiteness may only sit at the floor (float32 vs float64)
    odd = np.isfinite(ref) != np.isfinite(got)
    if odd.any():
        assert floor is not None
        vals = np.where(np.isfinite(ref[odd]), ref[odd], got[odd])
        np.testing.assert_allclose(vals, floor, atol=10 * atol)


DATASETS = {
    "gauss": lambda rng: _unit(rng.standard_normal((300, 16))),
    "ties": lambda rng: _unit(np.c_[np.ones(300), rng.integers(-1, 2, size=(300, 5))]),
    "zero-rows": lambda rng: np.vstack([_unit(rng.standard_normal((250, 8))),
                                        np.zeros((7, 8), np.float32)]),
    "clustered": lambda rng: _unit(np.repeat(rng.standard_normal((30, 12)), 10, axis=0)
                                   + 0.01 * rng.standard_normal((300, 12))),
}


@pytest.mark.parametrize(("name", "kwargs"), DENSE_EXACT)
@pytest.mark.parametrize("data", sorted(DATASETS))
@pytest.mark.parametrize("k", [1, 7, 50])
def test_dense_exact_self_join(name, kwargs, data, k):
    if name == "sklearn" and data == "zero-rows":
        pytest.skip("scikit-learn gives a zero row cosine distance 0 to itself")
    x = DATASETS[data](np.random.default_rng(len(data) + k))
    b = get_backend(name, x, **kwargs).fit(x)
    assert b.exact
    sims, idx = b.search(x, k)
    check_contract(sims, idx, x, x, k)


@pytest.mark.parametrize(("name", "kwargs"), DENSE_EXACT)
@pytest.mark.parametrize("n_ref", [1, 3, 60, 701])
def test_dense_exact_query_and_small_n(name, kwargs, n_ref):
    rng = np.random.default_rng(n_ref)
    r = _unit(rng.standard_normal((n_ref, 10)))
    q = _unit(rng.standard_normal((37, 10)))
    sims, idx = get_backend(name, r, **kwargs).fit(r).search(q, 50)  # k > n when n small
    check_contract(sims, idx, q, r, 50)


@pytest.mark.parametrize(("name", "kwargs"), DENSE_EXACT)
@pytest.mark.parametrize("threshold", [-0.5, 0.3, 0.8, 1.5])
def test_dense_threshold(name, kwargs, threshold):
    x = DATASETS["clustered"](np.random.default_rng(1))
    sims, idx = get_backend(name, x, **kwargs).fit(x).search(x, 20, threshold=threshold)
    check_contract(sims, idx, x, x, 20, threshold=threshold)


@pytest.mark.parametrize(("name", "kwargs"), DENSE_EXACT)
def test_dense_empty_query(name, kwargs):
    x = _unit(np.random.default_rng(0).standard_normal((5, 4)))
    sims, idx = get_backend(name, x, **kwargs).fit(x).search(x[:0], 3)
    assert sims.shape == idx.shape == (0, 3)


def _sparse_data(rng: np.random.Generator, n: int, n_feat: int, density: float) -> sp.csr_matrix:
    x = sp.random(n, n_feat, density=density, format="csr", dtype=np.float32, random_state=rng)
    x.data = np.abs(x.data) + 0.01
    x = sp.vstack([x, sp.csr_matrix((3, n_feat), dtype=np.float32)]).tocsr()  # empty rows
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1))).ravel()
    norms[norms == 0] = 1
    return sp.csr_matrix(sp.diags(1 / norms) @ x, dtype=np.float32)


SPARSE = [
    pytest.param("sparse", {}, id="sparse-auto"),
    pytest.param("sparse", {"head": 0}, id="sparse-csr-topk"),
    pytest.param("sparse", {"head": 5}, id="sparse-hybrid"),
    pytest.param("sparse", {"head": 5, "working_memory": 0.01}, id="sparse-hybrid-blocks"),
    pytest.param("sparse", {"head": 0, "working_memory": 0.01}, id="sparse-blocks"),
    pytest.param("sparse", {"head": 0, "kernel": "numba"}, id="sparse-csr-numba", marks=needs_numba),
    pytest.param("sparse", {"head": 5, "kernel": "numba"}, id="sparse-hybrid-numba",
                 marks=needs_numba),
    pytest.param("sparse", {"head": 5, "kernel": "numba", "working_memory": 0.01},
                 id="sparse-hybrid-numba-blocks", marks=needs_numba),
]


@pytest.mark.parametrize(("name", "kwargs"), SPARSE)
@pytest.mark.parametrize(("n_feat", "density"), [(400, 0.01), (40, 0.2), (2000, 0.001)])
@pytest.mark.parametrize("threshold", [None, 0.2])
def test_sparse_exact(name, kwargs, n_feat, density, threshold):
    rng = np.random.default_rng(n_feat)
    x = _sparse_data(rng, 250, n_feat, density)
    b = get_backend(name, x, **kwargs).fit(x)
    sims, idx = b.search(x, 10, threshold=threshold)
    # zero similarity = no shared term: never returned by the sparse backend
    check_contract(sims, idx, x, x, 10, threshold=threshold, positive_only=True)


def test_sparse_no_overlap_rows_and_tiny():
    x = sp.csr_matrix(np.eye(4, dtype=np.float32))
    sims, idx = SparseBackend().fit(x).search(x, 3)
    assert idx[:, 0].tolist() == [0, 1, 2, 3]
    assert np.all(idx[:, 1:] == -1) and np.all(np.isneginf(sims[:, 1:]))
    one = sp.csr_matrix(np.ones((1, 3), np.float32) / np.sqrt(3))
    sims, idx = SparseBackend().fit(one).search(one, 50)
    assert idx.tolist() == [[0]] and sims[0, 0] == pytest.approx(1.0)


def test_sparse_head_cost_model():
    n = 10_000
    assert _head_size(np.full(100, 3), n) == 0  # rare terms only: all sparse
    df = np.r_[np.full(50, n // 2), np.full(10_000, 3)]
    assert 40 <= _head_size(df, n) <= 60  # the frequent terms go dense
    assert _head_size(np.array([], dtype=int), 0) == 0


def test_sklearn_backend_sparse_input():
    x = _sparse_data(np.random.default_rng(3), 80, 50, 0.1)
    sims, idx = get_backend("sklearn", x).fit(x).search(x, 5)
    check_contract(sims, idx, x, x, 5)


@pytest.mark.skipif(not HAS_FAISS, reason="faiss not installed")
@pytest.mark.parametrize("name", ["faiss_ivf", "faiss_hnsw"])
def test_approximate_backends_recall(name):
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((40, 32))
    x = _unit(np.repeat(centers, 50, axis=0) + 0.3 * rng.standard_normal((2000, 32)))
    b = get_backend(name, x, min_n=0).fit(x)
    assert not b.exact
    sims, idx = b.search(x, 10)
    _, exact = NumpyBackend().fit(x).search(x, 10)
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(idx, exact, strict=True)])
    assert recall >= 0.8, recall
    valid = idx >= 0
    true = np.einsum("ij,ikj->ik", x, x[np.where(valid, idx, 0)])
    np.testing.assert_allclose(sims[valid], true[valid], atol=1e-4)
    # below min_n the same backends are exact
    sims, idx = get_backend(name, x[:300]).fit(x[:300]).search(x[:300], 5)
    check_contract(sims, idx, x[:300], x[:300], 5)


@pytest.mark.parametrize("kernel", [pytest.param("numba", marks=needs_numba), "numpy"])
def test_large_search_threads_and_column_tiles(kernel):
    """Above the threading cut-off and wider than one column tile: worker threads and
    tiles give what one thread over whole rows gives, and match brute force."""
    rng = np.random.default_rng(11)
    x = _unit(rng.standard_normal((5000, 8)))  # 25M similarities: threaded, 2 tiles
    sims, idx = NumpyBackend(kernel=kernel).fit(x).search(x, 10, threshold=0.2)
    s1, i1 = NumpyBackend(kernel="numpy", n_jobs=1).fit(x).search(x, 10, threshold=0.2)
    np.testing.assert_array_equal(idx, i1)
    # BLAS may round a tile's products and a whole row's one unit in the last place apart
    # (its kernels differ by block shape), never more
    np.testing.assert_allclose(sims, s1, rtol=0, atol=4e-7)
    check_contract(sims[:300], idx[:300], x[:300], x, 10, threshold=0.2)


@pytest.mark.parametrize("kernel", [pytest.param("numba", marks=needs_numba), "numpy"])
def test_sparse_threads_match_one_thread(kernel):
    x = _sparse_data(np.random.default_rng(4), 6000, 300, 0.02)
    got = SparseBackend(kernel=kernel).fit(x).search(x, 10)
    ref = SparseBackend(kernel="numpy", n_jobs=1).fit(x).search(x, 10)
    np.testing.assert_allclose(got[0], ref[0], atol=1e-6)  # ids: equal up to ties
    check_contract(got[0][:300], got[1][:300], x[:300], x, 10, positive_only=True)


@needs_numba
def test_compiled_kernel_equals_numpy_and_breaks_ties_by_index():
    rng = np.random.default_rng(6)
    block = rng.standard_normal((40, 2003)).astype(np.float32)
    block[:, 100:180] = 9.0  # 80 equal maxima: the smallest columns win
    for k in (1, 50, 200):
        s, i = topk_block(block, k, kernel="numba")
        s2, _ = topk_block(block, k, kernel="numpy")
        np.testing.assert_array_equal(s, s2)
        np.testing.assert_array_equal(np.take_along_axis(block, i, axis=1), s)
        assert i[0, : min(k, 80)].tolist() == list(range(100, 100 + min(k, 80)))
    s, i = topk_block(block, 5, threshold=9.5, kernel="numba")
    assert np.all(i == -1) and np.all(np.isneginf(s))


def test_kernel_option_errors(monkeypatch):
    from shopee_match.neighbors._topk import compiled_kernels

    with pytest.raises(ValueError, match="kernel must be one of"):
        NumpyBackend(kernel="fortran").fit(np.eye(3, dtype=np.float32)).search(np.eye(3), 1)
    monkeypatch.setitem(sys.modules, "numba", None)  # as if numba were not installed
    import shopee_match.neighbors as pkg

    monkeypatch.delitem(sys.modules, "shopee_match.neighbors._numba_kernels", raising=False)
    monkeypatch.delattr(pkg, "_numba_kernels", raising=False)
    with pytest.raises(ImportError, match=r"shopee_match\[fast\]"):
        compiled_kernels("numba")
    assert compiled_kernels("auto") is None  # falls back to NumPy


def test_topk_block_and_columns_agree_with_sort():
    rng = np.random.default_rng(5)
    block = rng.standard_normal((90, 1003)).astype(np.float32)
    for k in (1, 4, 50):
        s, i = topk_block(block, k)
        np.testing.assert_array_equal(s, -np.sort(-block, axis=1)[:, :k])
        np.testing.assert_array_equal(np.take_along_axis(block, i, axis=1), s)
        sc, ic = topk_columns(block.T.copy(), k)
        np.testing.assert_array_equal(sc, s)
        np.testing.assert_array_equal(ic, i)
    s, i = topk_block(block, 5, threshold=2.5)
    assert np.all((s >= 2.5) | np.isneginf(s)) and np.all((i >= 0) == np.isfinite(s))


def test_merge_topk():
    s = np.array([[0.9, 0.5, -np.inf]], np.float32)
    i = np.array([[1, 2, -1]])
    merge_topk(s, i, np.array([[0.7, 0.1, 0.0]], np.float32), np.array([[5, 6, 7]]))
    assert i.tolist() == [[1, 5, 2]]


def test_registry_errors_and_auto():
    x = np.eye(3, dtype=np.float32)
    assert type(get_backend("auto", x)).__name__ == "NumpyBackend"
    assert type(get_backend("auto", sp.csr_matrix(x))).__name__ == "SparseBackend"
    with pytest.raises(ValueError, match="Unknown KNN backend"):
        get_backend("nope", x)
    with pytest.raises(TypeError, match="dense embeddings"):
        get_backend("numpy", sp.csr_matrix(x))
    assert {"numpy", "sparse", "sklearn"} <= set(available_backends())


def test_missing_optional_package_names_the_extra(monkeypatch):
    from shopee_match.neighbors import _base

    monkeypatch.setattr(_base, "_installed", lambda m: m is None)
    with pytest.raises(ImportError, match=r"shopee_match\[gpu\]"):
        get_backend("cupy", np.eye(2, dtype=np.float32))
    with pytest.raises(ImportError, match=r"shopee_match\[faiss\]"):
        get_backend("faiss", np.eye(2, dtype=np.float32))


def test_import_does_not_load_optional_backends():
    import subprocess

    code = ("import sys, shopee_match; from shopee_match import NeighborMatcher; "
            "print(any(m in sys.modules for m in ('faiss', 'cupy', 'cuml')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
