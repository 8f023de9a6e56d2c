"""Exact sparse top-k for TF-IDF rows: a dense BLAS head plus a sparse product tail.

SciPy's CSR x CSR product costs about 10 ns per multiply-add and more per output
entry, so the few terms that most postings share (frequent words, common character
n-grams) dominate it: their cost grows with df squared. The backend splits the columns
once, at ``fit``: the ``F`` most frequent go to a dense ``(n, F)`` block multiplied with
BLAS, the rest stay sparse. ``F`` minimises a cost model (``F = 0`` for word-level
vocabularies with no very frequent term). Each row block's similarities are then
either densified into one reused buffer and reduced by the one-pass dense top-k, or,
when the product is sparse enough, thresholded and ranked on its CSR data directly
(never densified, as ``sparse_dot_topn`` does).

Where numba is installed (``kernel="auto"``, the ``[fast]`` extra) one compiled kernel
does the sparse tail and the selection together, row by row (Gustavson's product into
a dense accumulator that stays in cache, then the heap pass of the dense kernel), in
one worker thread per core: no CSR product is ever built. Its multiply-add costs a few
ns instead of SciPy's ten, so the cost model sends fewer columns to the dense head.

Pairs that share no feature have similarity 0 and are not returned: slots with
similarity <= 0 come back as index -1 / similarity -inf.

The dense head costs ``n x n x F`` multiply-adds and ``n x F`` floats: quadratic in the
catalogue. Where the best exact plan would cost more than ``max_exact_s`` single-core
seconds (``approx="auto"``; about 150k character-n-gram titles), the backend prunes
instead: the most frequent columns leave the search (as many as it takes to bring the
sparse product under ``pruned_s``), each row's ``2k`` best candidates by the remaining
columns are found, and their exact similarities (every column) rank them: the top-k of
those, with exact similarities. Rows whose true neighbours share only frequent columns
may then miss some (``exact_`` is False after such a ``fit``); rows made only of
frequent columns are searched with every column.
"""

from __future__ import annotations

import logging
import threading

import numpy as np
import scipy.sparse as sp

from ._base import chunk_rows
from ._numpy import _THREADED_MIN, _map_blocks, effective_n_jobs
from ._topk import compiled_kernels, empty_result, topk_block
from .graph import keep_entries

__all__ = ["SparseBackend"]

logger = logging.getLogger(__name__)

# cost model (ns, measured on 2 SkylakeX cores): per sparse multiply-add (SciPy, and
# the compiled kernel), per dense (pair x feature) multiply-add, and per dense block
# element (write + top-k pass)
_NS_SPARSE, _NS_SPARSE_COMPILED, _NS_DENSE, _NS_BLOCK = 10.0, 2.0, 0.018, 2.0
_MAX_HEAD = 2048
#: candidates a pruned search ranks exactly, per neighbour asked for
_PRUNED_OVERSAMPLE = 2


def _head_size(df: np.ndarray, n: int, ns_sparse: float = _NS_SPARSE) -> int:
    """How many of the most frequent columns to multiply densely (0: none)."""
    if n == 0 or len(df) == 0:
        return 0
    dfs = np.sort(df)[::-1].astype(np.float64)
    tail = np.cumsum((dfs**2)[::-1])[::-1]  # tail[f]: sparse work if the first f are dense
    f = np.arange(min(len(dfs), _MAX_HEAD) + 1)
    tail_cost = np.append(tail, 0.0)[f] * ns_sparse
    dense_cost = np.where(f > 0, float(n) * n * (_NS_BLOCK + f * _NS_DENSE), 0.0)
    return int(f[np.argmin(tail_cost + dense_cost)])


def _plan_cost_s(df: np.ndarray, n: int, ns_sparse: float) -> float:
    """Single-core seconds of the best exact plan (:func:`_head_size`'s head)."""
    if n == 0 or len(df) == 0:
        return 0.0
    f = _head_size(df, n, ns_sparse)
    dfs = np.sort(df)[::-1].astype(np.float64)
    tail = float((dfs[f:] ** 2).sum()) * ns_sparse
    dense = float(n) * n * (_NS_BLOCK + f * _NS_DENSE) if f else 0.0
    return (tail + dense) * 1e-9


def _prune_count(df: np.ndarray, ns_sparse: float, budget_s: float) -> int:
    """Fewest most-frequent columns to leave out so the sparse product of the rest
    costs at most ``budget_s`` single-core seconds."""
    dfs = np.sort(df)[::-1].astype(np.float64)
    tail = np.cumsum((dfs**2)[::-1])[::-1] * ns_sparse * 1e-9  # tail[f]: cost without the first f
    over = np.flatnonzero(tail > budget_s)
    return int(over[-1] + 1) if len(over) else 0


class SparseBackend:
    """Exact inner-product top-k over CSR rows, in row blocks; never n x n.

    ``head`` forces the number of densely multiplied columns (``None``: cost model).
    ``kernel`` and ``n_jobs`` as for :class:`NumpyBackend` (``"numpy"``: SciPy's product
    and the NumPy selection, in the calling thread). ``approx``: ``"auto"`` prunes where
    the exact plan would cost more than ``max_exact_s`` single-core seconds (see the
    module's docstring), ``True`` always, ``False`` never; ``pruned_s`` is the pruned
    product's cost the columns left out are chosen for. ``catalogue``: ``(column document
    counts, rows)`` of the whole catalogue when the reference is one block of it (a
    distributed search): the plan (dense head, pruning, kernel) is then the catalogue's,
    so an exact search's similarities are the whole-catalogue search's, bit for bit.

    >>> import scipy.sparse as sp, numpy as np
    >>> x = sp.csr_matrix(np.eye(3, dtype=np.float32))
    >>> SparseBackend().fit(x).search(x, 1)[1].ravel().tolist()
    [0, 1, 2]
    """

    name = "sparse"
    exact = True

    def __init__(
        self,
        working_memory: float | None = None,
        head: int | None = None,
        kernel: str = "auto",
        n_jobs: int | None = None,
        approx: bool | str = "auto",
        max_exact_s: float = 900.0,
        pruned_s: float = 120.0,
        catalogue: tuple[np.ndarray, int] | None = None,
    ) -> None:
        self.working_memory = working_memory
        self.head = head
        self.kernel = kernel
        self.n_jobs = n_jobs
        self.approx = approx
        self.max_exact_s = max_exact_s
        self.pruned_s = pruned_s
        self.catalogue = catalogue

    def fit(self, ref: sp.spmatrix) -> SparseBackend:
        ref = sp.csr_matrix(ref, dtype=np.float32)
        n, n_feat = ref.shape
        df = np.bincount(ref.indices, minlength=n_feat)
        # the plan is the whole catalogue's where this reference is a block of one
        self.plan_size_: int | None = None
        if self.catalogue is not None:
            df, n_plan = np.asarray(self.catalogue[0], dtype=np.int64), int(self.catalogue[1])
            if df.shape != (n_feat,):
                raise ValueError(f"`catalogue` counts {df.shape[0]} columns; the reference has "
                                 f"{n_feat}: pass the column counts of the same vectors.")
            self.plan_size_ = n_plan * n_plan
            n = n_plan
        compiled = compiled_kernels(self.kernel, n * n) is not None
        ns_sparse = _NS_SPARSE_COMPILED if compiled else _NS_SPARSE
        if self.approx not in (True, False, "auto"):
            raise ValueError(f"`approx` must be True, False or 'auto', got {self.approx!r}.")
        pruned = (self.approx is True or (
            self.approx == "auto" and self.head is None
            and _plan_cost_s(df, n, ns_sparse) > float(self.max_exact_s)))
        n_head = min(int(self.head), n_feat) if self.head is not None else None
        if pruned:
            n_head = _prune_count(df, ns_sparse, float(self.pruned_s))
        elif n_head is None:
            n_head = _head_size(df, n, ns_sparse)
        order = np.argsort(-df, kind="stable")
        self.head_cols_ = np.sort(order[:n_head])
        is_head = np.zeros(n_feat, dtype=bool)
        is_head[self.head_cols_] = True
        self.tail_cols_ = np.flatnonzero(~is_head)
        self.exact_ = not pruned
        # pruned: the frequent columns are left out of the search, and the whole rows
        # rank its candidates exactly
        self.ref_head_ = ref[:, self.head_cols_].toarray() if n_head and not pruned else None
        self.ref_ = ref if pruned else None
        if pruned:  # one copy: the reference without its frequent columns, transposed; its
            # rows keep the input's column numbers, so queries are searched as they are
            self.is_head_ = is_head
            self.ref_tail_t_ = _without_columns(ref, is_head).T.tocsr()
        else:
            self.ref_tail_t_ = ref[:, self.tail_cols_].T.tocsr()
        self.n_ref_ = ref.shape[0]
        if pruned:
            logger.info("sparse search pruned: %d of %d columns (df >= %d) left out of the "
                        "search of %d rows", n_head, n_feat,
                        int(df[order[n_head - 1]]) if n_head else 0, n)
        return self

    def search(
        self, query: sp.spmatrix, k: int, threshold: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` reference rows by inner product for each query row."""
        query = sp.csr_matrix(query, dtype=np.float32)
        n_q, n_ref = query.shape[0], self.n_ref_
        k = min(k, n_ref)
        sims, idx = empty_result(n_q, k)
        if n_q == 0 or k == 0:
            return sims, idx
        # zero similarity means "no shared feature": never a neighbour
        tiny = float(np.finfo(np.float32).tiny)
        t = tiny if threshold is None else max(float(np.float32(threshold)), tiny)
        if self.ref_ is not None:
            return self._search_pruned(query, k, t)
        q_tail = query[:, self.tail_cols_].tocsr()
        q_head = query[:, self.head_cols_].tocsr() if self.ref_head_ is not None else None
        compiled = compiled_kernels(self.kernel, self._size(n_q, n_ref))
        if compiled is not None:
            self._search_compiled(compiled, q_tail, q_head, k, t, sims, idx)
            return sims, idx
        step = max(1, min(n_q, chunk_rows(n_ref, self.working_memory)))
        buf = np.empty(step * n_ref, dtype=np.float32)
        for start in range(0, n_q, step):
            stop = min(start + step, n_q)
            rows = stop - start
            prod = (q_tail[start:stop] @ self.ref_tail_t_).tocsr()
            dense = buf[: rows * n_ref].reshape(rows, n_ref)
            if q_head is not None and self.ref_head_ is not None:
                prod.toarray(out=dense)  # the sparse tail, then += the dense head in BLAS
                _gemm_add(self.ref_head_, q_head[start:stop].toarray(), dense)
            elif prod.nnz > 0.005 * rows * n_ref:  # dense enough: one pass beats a sort
                prod.toarray(out=dense)
            else:
                s, i = _topk_csr(prod, k, t)
                sims[start:stop], idx[start:stop] = s, i
                continue
            s, i = topk_block(dense, k, t, "numpy")
            sims[start:stop], idx[start:stop] = s, i
        return sims, idx

    def _size(self, n_q: int, n_ref: int) -> int:
        """The search size the kernel is chosen by: the catalogue's when fitted on a block."""
        size = getattr(self, "plan_size_", None)
        return int(size) if size is not None else n_q * n_ref

    def _search_pruned(self, query: sp.csr_matrix, k: int, floor: float,
                       chunk: int = 65536) -> tuple[np.ndarray, np.ndarray]:
        """The pruned plan: ``2k`` candidates by the columns kept, ranked by exact
        similarity (every column), the top ``k`` of them at or above ``floor``; ``chunk``
        query rows at a time (each row's answer is its own: only the chunk's ``2k``
        candidates are held)."""
        n_q = query.shape[0]
        sims, idx = empty_result(n_q, k)
        # the kernel is chosen for the whole query (kernels may keep other tied neighbours)
        compiled = compiled_kernels(self.kernel, self._size(n_q, self.n_ref_))
        for start in range(0, n_q, chunk):
            stop = min(start + chunk, n_q)
            sims[start:stop], idx[start:stop] = self._pruned_rows(
                query[start:stop], k, floor, compiled)
        return sims, idx

    def _pruned_rows(self, query: sp.csr_matrix, k: int, floor: float, compiled: object
                     ) -> tuple[np.ndarray, np.ndarray]:
        n_q, n_ref = query.shape[0], self.n_ref_
        ref = self.ref_
        assert ref is not None  # a pruned fit keeps the whole rows
        wide = min(n_ref, _PRUNED_OVERSAMPLE * k)
        tiny = float(np.finfo(np.float32).tiny)
        cand_s, cand_i = empty_result(n_q, wide)
        # the query as it is: its frequent columns meet empty rows of ref_tail_t_
        if compiled is not None:
            self._search_compiled(compiled, query, None, wide, tiny, cand_s, cand_i)
        else:
            step = 4096
            for start in range(0, n_q, step):
                stop = min(start + step, n_q)
                prod = (query[start:stop] @ self.ref_tail_t_).tocsr()
                cand_s[start:stop], cand_i[start:stop] = _topk_csr(prod, wide, tiny)
        # rows made only of frequent columns share nothing left: their candidates come
        # from every column (a few rows, in chunks that bound the product's size)
        kept = np.concatenate([[0], np.cumsum(~self.is_head_[query.indices], dtype=np.int64)])
        bare = np.flatnonzero(kept[query.indptr[1:]] == kept[query.indptr[:-1]])
        del kept
        step = max(1, 2**24 // max(n_ref, 1))  # the reference is never transposed whole
        for start in range(0, len(bare), step):
            rows = bare[start:start + step]
            prod = (ref @ query[rows].T).T.tocsr()
            cand_s[rows], cand_i[rows] = _topk_csr(prod, wide, tiny)
        del cand_s
        return _rescore(query, ref, cand_i, k, floor)

    def _search_compiled(
        self,
        compiled: object,
        q_tail: sp.csr_matrix,
        q_head: sp.csr_matrix | None,
        k: int,
        floor: float,
        sims: np.ndarray,
        idx: np.ndarray,
    ) -> None:
        """Row blocks in worker threads: the head's BLAS product, then the kernel."""
        n_q, n_ref = q_tail.shape[0], self.n_ref_
        r = self.ref_tail_t_
        head = self.ref_head_
        work = n_q * (n_ref if head is not None else max(1, r.nnz // max(1, n_ref)))
        n_jobs = effective_n_jobs(self.n_jobs) if work >= _THREADED_MIN else 1
        rows = chunk_rows(n_ref, self.working_memory) // n_jobs if head is not None else 4096
        step = min(max(1, -(-n_q // n_jobs)), max(1, rows))
        local = threading.local()
        no_dense = np.empty((0, n_ref), dtype=np.float32)

        def block(start: int) -> None:
            stop = min(start + step, n_q)
            dense = no_dense
            if head is not None and q_head is not None:
                buf = getattr(local, "buf", None)
                if buf is None:
                    buf = local.buf = np.empty((step, n_ref), dtype=np.float32)
                dense = buf[: stop - start]
                np.matmul(q_head[start:stop].toarray(), head.T, out=dense)
            q = q_tail[start:stop]
            compiled.sparse_topk(  # type: ignore[attr-defined]
                q.indptr, q.indices, q.data, r.indptr, r.indices, r.data,
                dense, n_ref, k, floor, sims[start:stop], idx[start:stop],
            )

        _map_blocks(block, range(0, n_q, step), n_jobs)


def _without_columns(x: sp.csr_matrix, drop: np.ndarray, step: int = 1 << 16) -> sp.csr_matrix:
    """``x`` without the entries in columns ``drop`` (a boolean mask) nor any stored
    zero: built at its own size, never as a whole copy of ``x`` first."""
    keep = ~drop[x.indices]
    keep &= x.data != 0
    return keep_entries(x, keep, step)


def _rescore(query: sp.csr_matrix, ref: sp.csr_matrix, cand: np.ndarray, k: int,
             floor: float, max_entries: int = 2**24) -> tuple[np.ndarray, np.ndarray]:
    """Each query row's candidates ``cand`` (index -1: none) ranked by their exact inner
    product with it: the top ``k`` at or above ``floor``, sorted; in row chunks of at
    most about ``max_entries`` gathered entries."""
    n_q, wide = cand.shape
    sims, idx = empty_result(n_q, k)
    per_row = max(1.0, query.nnz / max(n_q, 1)) * wide
    step = max(1, int(max_entries // per_row))
    for start in range(0, n_q, step):
        stop = min(start + step, n_q)
        c = cand[start:stop]
        valid = c >= 0
        rows = np.repeat(np.arange(start, stop), wide)[valid.ravel()]
        exact = np.asarray(query[rows].multiply(ref[c[valid]]).sum(axis=1), dtype=np.float32).ravel()
        s = np.full(c.shape, -np.inf, dtype=np.float32)
        s[valid] = exact
        s[s < floor] = -np.inf
        order = np.argsort(-s, axis=1, kind="stable")[:, :k]
        top_s = np.take_along_axis(s, order, axis=1)
        top_i = np.where(np.isfinite(top_s), np.take_along_axis(c, order, axis=1), -1)
        sims[start:stop, :top_s.shape[1]] = top_s
        idx[start:stop, :top_i.shape[1]] = top_i
    return sims, idx


def _gemm_add(ref_head: np.ndarray, q_head: np.ndarray, dense: np.ndarray) -> None:
    """``dense += q_head @ ref_head.T`` in place: BLAS sgemm with beta = 1 on the
    Fortran-ordered view ``dense.T`` (``np.matmul`` cannot accumulate)."""
    from scipy.linalg.blas import sgemm

    out = sgemm(1.0, ref_head.T, q_head.T, beta=1.0, c=dense.T, trans_a=1, overwrite_c=1)
    if not np.shares_memory(out, dense):  # pragma: no cover - a BLAS wrapper that copied
        dense += out.T


def _topk_csr(prod: sp.csr_matrix, k: int, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Each CSR row's top-k stored entries at or above ``threshold``, sorted (ties:
    smaller column first); entries below it are dropped *before* the sort."""
    n_rows = prod.shape[0]
    sims, idx = empty_result(n_rows, k)
    counts = np.diff(prod.indptr)
    rows = np.repeat(np.arange(n_rows, dtype=np.int64), counts)
    keep = prod.data >= threshold
    rows, data, cols = rows[keep], prod.data[keep], prod.indices[keep]
    if len(data) == 0:
        return sims, idx
    # row ascending, then similarity descending, equal similarities smaller column first
    # (as the compiled kernel keeps them: the answer never depends on the row blocks)
    order = np.lexsort((cols, -data, rows))
    rows, data, cols = rows[order], data[order], cols[order]
    starts = np.searchsorted(rows, rows, side="left")
    rank = np.arange(len(rows)) - starts
    take = rank < k
    sims[rows[take], rank[take]] = data[take]
    idx[rows[take], rank[take]] = cols[take]
    return sims, idx
