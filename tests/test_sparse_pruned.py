"""The sparse backend's pruned plan (for catalogues where the exact plan is quadratic):
exact similarities, high recall of the exact top-k, and the exact plan where it is cheap."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from shopee_match import TfidfEmbedder, make_catalog
from shopee_match.neighbors._sparse import SparseBackend

K = 10


@pytest.fixture(scope="module")
def emb():
    p = make_catalog(n_groups=300, per_group=(1, 6), images=False, seed=4)
    return TfidfEmbedder(fit_on="predict").fit_embed(p)


def test_auto_keeps_the_exact_plan_on_small_catalogues(emb) -> None:
    b = SparseBackend(n_jobs=1).fit(emb)
    assert b.exact_ and b.ref_ is None


def test_pruned_similarities_are_exact_and_sorted(emb) -> None:
    b = SparseBackend(approx=True, pruned_s=1e-4, n_jobs=1).fit(emb)
    assert not b.exact_ and len(b.head_cols_) > 0  # frequent columns were left out
    sims, idx = b.search(emb, K)
    dense = (emb @ emb.T).toarray()
    valid = idx >= 0
    rows = np.repeat(np.arange(emb.shape[0]), K).reshape(-1, K)
    np.testing.assert_allclose(sims[valid], dense[rows[valid], idx[valid]], rtol=1e-5, atol=1e-6)
    with np.errstate(invalid="ignore"):
        step = np.diff(sims, axis=1)
    assert np.all((step <= 1e-7) | ~valid[:, 1:])  # each row sorted, best first
    assert all(i in row for i, row in enumerate(idx))  # every row finds itself
    assert np.all(sims[:, 0] > 1 - 1e-5)


def test_pruned_search_recalls_most_exact_neighbours(emb) -> None:
    exact_s, exact_i = SparseBackend(approx=False, n_jobs=1).fit(emb).search(emb, K)
    b = SparseBackend(approx=True, pruned_s=0.03, n_jobs=1).fit(emb)
    assert len(b.head_cols_) > 100
    _, got_i = b.search(emb, K)
    found = [len(set(a[a >= 0]) & set(g[g >= 0])) / max(1, (a >= 0).sum())
             for a, g in zip(exact_i, got_i)]
    assert np.mean(found) > 0.95
    # nothing pruned: the same neighbours as the exact plan
    same = SparseBackend(approx=True, pruned_s=1e9, n_jobs=1).fit(emb)
    assert len(same.head_cols_) == 0
    np.testing.assert_allclose(np.sort(same.search(emb, K)[0], axis=1),
                               np.sort(exact_s, axis=1), rtol=1e-5)


@pytest.mark.parametrize("kernel", ["auto", "numpy"])
def test_pruned_search_applies_the_floor(emb, kernel: str) -> None:
    sims, idx = SparseBackend(approx=True, pruned_s=1e-4, n_jobs=1, kernel=kernel).fit(emb).search(
        emb, K, threshold=0.6)
    assert all(i in row for i, row in enumerate(idx))  # bare rows too find themselves
    assert np.all(sims[idx >= 0] >= 0.6 - 1e-6)
    assert np.all(np.isneginf(sims[idx < 0]))


def test_approx_must_be_known(emb) -> None:
    with pytest.raises(ValueError, match="approx"):
        SparseBackend(approx="sometimes").fit(emb)


def test_pruned_search_gives_the_same_answer_in_query_chunks(emb) -> None:
    # the pruned plan holds 2k candidates for a chunk of query rows at a time: the
    # answer of every row is its own, whatever the chunks
    b = SparseBackend(approx=True, pruned_s=1e-4, n_jobs=1).fit(emb)
    whole_s, whole_i = b.search(emb, K)
    q = emb.tocsr().astype(np.float32)
    tiny = float(np.finfo(np.float32).tiny)
    for chunk in (1, 7, 100):
        s, i = b._search_pruned(q, K, tiny, chunk=chunk)
        np.testing.assert_array_equal(i, whole_i)
        np.testing.assert_array_equal(s, whole_s)


def test_reference_without_frequent_columns_is_built_row_chunk_by_chunk() -> None:
    from shopee_match.neighbors._sparse import _without_columns

    rng = np.random.default_rng(0)
    x = sp.random(97, 23, 0.3, format="csr", random_state=1, dtype=np.float32)
    x.data[rng.random(x.nnz) < 0.1] = 0  # stored zeros leave too
    drop = rng.random(23) < 0.3
    want = x.copy()
    want.data[drop[want.indices]] = 0
    want.eliminate_zeros()
    for step in (1, 7, 1000):
        got = _without_columns(x, drop, step=step)
        assert np.array_equal(got.indptr, want.indptr)
        assert np.array_equal(got.indices, want.indices)
        assert np.array_equal(got.data, want.data)
