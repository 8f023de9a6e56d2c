"""Match graphs: sparse n x n matrices whose stored entries are matched pairs.

Every matcher produces one; ensembles combine them; the submission reads its rows.
The diagonal (a posting matches itself) is decided here, in one place.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["add_self", "graph_from_knn", "graph_to_sets", "grow", "grow_rows", "keep_entries",
           "mean_graph", "n_added",
           "row_blocks", "select", "select_keeps", "symmetric_graph",
           "transposed_positions"]


def keep_entries(x: sp.csr_matrix, keep: np.ndarray, step: int = 1 << 16) -> sp.csr_matrix:
    """The stored entries of CSR ``x`` where ``keep`` (one boolean per stored entry) is
    true, in their order: built at its own size, each row's kept entries counted a chunk
    of ``step`` rows at a time (no per-entry index array).

    >>> x = sp.csr_matrix(np.array([[1, 2], [0, 3]], dtype=np.float32))
    >>> keep_entries(x, np.array([True, False, True])).toarray().tolist()
    [[1.0, 0.0], [0.0, 3.0]]
    """
    counts = np.zeros(x.shape[0], dtype=np.int64)
    step = max(1, int(step))
    for lo in range(0, x.shape[0], step):
        ptr = x.indptr[lo:lo + step + 1].astype(np.int64)
        seg = np.concatenate([[0], np.cumsum(keep[ptr[0]:ptr[-1]], dtype=np.int64)])
        counts[lo:lo + len(ptr) - 1] = np.diff(seg[ptr - ptr[0]])
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(x.indptr.dtype)
    out = sp.csr_matrix((x.data[keep], x.indices[keep], indptr), shape=x.shape)
    out.has_sorted_indices = bool(x.has_sorted_indices)
    return out


def row_blocks(indptr: np.ndarray, block_rows: int | None = None,
               max_pairs: int | None = None) -> list[tuple[int, int]]:
    """Consecutive row ranges ``[lo, hi)`` of a CSR graph (its ``indptr``) of at most
    ``block_rows`` rows and (unless a single row has more) ``max_pairs`` stored pairs; one
    range when both are ``None``.

    >>> row_blocks(np.array([0, 3, 3, 8, 9]), max_pairs=4)
    [(0, 2), (2, 3), (3, 4)]
    >>> row_blocks(np.array([0, 3, 3, 8, 9]), block_rows=3)
    [(0, 3), (3, 4)]
    """
    n = len(indptr) - 1
    if n <= 0:
        return []
    step = n if block_rows is None else max(1, int(block_rows))
    out = []
    lo = 0
    while lo < n:
        hi = min(n, lo + step)
        if max_pairs is not None:
            # the last row whose end stays within the block's pair allowance
            fit = int(np.searchsorted(indptr, indptr[lo] + max(1, int(max_pairs)), side="right")) - 1
            hi = max(lo + 1, min(hi, fit))
        out.append((lo, hi))
        lo = hi
    return out


def transposed_positions(pattern: sp.csr_matrix) -> np.ndarray:
    """For each stored pair ``(i, j)`` of a symmetric canonical CSR pattern, the position
    of ``(j, i)`` among its stored entries: column ``j`` of the pattern's CSC form lists
    the pairs ``(i, j)`` in the order row ``j`` lists ``(j, i)``.

    >>> pattern = sp.csr_matrix(np.array([[0, 1, 1], [1, 0, 0], [1, 0, 0]]))
    >>> transposed_positions(pattern).tolist()
    [2, 3, 0, 1]
    """
    nnz = pattern.nnz
    pos = np.arange(nnz, dtype=np.int32 if nnz < 2**31 else np.int64)
    return sp.csr_matrix((pos, pattern.indices, pattern.indptr), shape=pattern.shape).tocsc().data


def mean_graph(p: sp.spmatrix, q: sp.spmatrix) -> sp.csr_matrix:
    """``(p + q) / 2`` as float32, summed in float64: :func:`symmetric_graph`'s arithmetic
    for ``q = p.T``; a Dask partition passes the own rows of ``P`` and of ``P.T``.

    >>> p = sp.csr_matrix(np.array([[0.0, 0.2], [0.6, 0.0]]))
    >>> mean_graph(p, p.T).toarray().astype(float).round(2).tolist()
    [[0.0, 0.4], [0.4, 0.0]]
    """
    g = sp.csr_matrix(p, dtype=np.float64) + sp.csr_matrix(q, dtype=np.float64)
    return sp.csr_matrix(g * 0.5, dtype=np.float32)


def symmetric_graph(proba: sp.spmatrix, back: np.ndarray | None = None,
                    chunk: int = 1 << 22) -> sp.csr_matrix:
    """The graph of the mean of P(i, j) and P(j, i), from a sparse graph of P(i, j).

    A pair stored one way only counts P(j, i) as 0; entries stored twice are summed. Sums
    in float64, means stored as float32, pairs whose sum is 0 left out (as a sparse sum
    drops them): the pair reranker's probability graph, the same bits in training, in
    the block engine and in the review page. ``back``: for a canonical CSR ``proba`` whose
    pattern is symmetric, :func:`transposed_positions` of it; the graph is then built on
    ``proba``'s own index arrays, ``chunk`` pairs at a time (the same values, less memory).

    >>> r, c = np.array([0, 1, 0]), np.array([1, 0, 2])
    >>> p = sp.coo_matrix((np.array([0.2, 0.6, 0.5]), (r, c)), shape=(3, 3))
    >>> symmetric_graph(p).toarray().astype(float).round(2).tolist()
    [[0.0, 0.4, 0.25], [0.4, 0.0, 0.0], [0.25, 0.0, 0.0]]
    """
    if back is None:
        coo = proba.tocoo()
        g = sp.csr_matrix((np.asarray(coo.data, dtype=np.float64), (coo.row, coo.col)),
                          shape=proba.shape)
        return mean_graph(g, g.T)
    pattern = sp.csr_matrix(proba)
    p = np.asarray(pattern.data, dtype=np.float64)
    out = np.empty(len(p), dtype=np.float32)
    zero = False
    for s in range(0, len(p), chunk):
        total = p[s:s + chunk] + p[back[s:s + chunk]]
        zero = zero or not total.all()
        out[s:s + chunk] = total * 0.5
    g = sp.csr_matrix((out, pattern.indices, pattern.indptr), shape=pattern.shape)
    if zero:  # as a sparse sum drops them (on copies: the pattern's arrays are shared)
        g = sp.csr_matrix((out, pattern.indices.copy(), pattern.indptr.copy()), shape=pattern.shape)
        g.eliminate_zeros()
    g.has_canonical_format = True
    return g


def graph_from_knn(sims: np.ndarray, idx: np.ndarray, n: int | None = None) -> sp.csr_matrix:
    """A candidate graph from KNN results; slots with index ``-1`` are skipped."""
    n_rows = sims.shape[0]
    n = n_rows if n is None else n
    valid = idx >= 0
    rows = np.repeat(np.arange(n_rows), sims.shape[1])[valid.ravel()]
    g = sp.csr_matrix(
        (sims[valid].astype(np.float32), (rows, idx[valid])), shape=(n_rows, n)
    )
    g.sum_duplicates()
    return g


def select(
    cand: sp.csr_matrix,
    threshold: float,
    min_matches: int = 1,
    min_threshold: float | None = None,
) -> sp.csr_matrix:
    """Keep candidate pairs with similarity ``>= threshold``, plus the diagonal.

    Where a posting keeps fewer than ``min_matches`` postings (itself included), its best
    other candidates are added until it has that many, as long as their similarity is at
    least ``min_threshold`` (the competition's "min2" trick with ``min_matches=2``).
    """
    coo = cand.tocoo()
    r, c, s = coo.row, coo.col, coo.data
    other = r != c
    keep = other & select_keeps(s, threshold)
    if min_matches > 1:
        n = cand.shape[0]
        have = np.bincount(r[keep], minlength=n)
        need = np.maximum(0, (min_matches - 1) - have)
        floor = -np.inf if min_threshold is None else min_threshold
        pool = np.flatnonzero(other & ~keep & (s >= floor) & (need[r] > 0))
        if len(pool):
            order = pool[np.lexsort((-s[pool], r[pool]))]
            pr = r[order]
            starts = np.searchsorted(pr, pr, side="left")
            rank = np.arange(len(order)) - starts
            keep[order[rank < need[pr]]] = True
    g = sp.csr_matrix((s[keep], (r[keep], c[keep])), shape=cand.shape, dtype=np.float32)
    return add_self(g)


def select_keeps(sims: np.ndarray, threshold: float) -> np.ndarray:
    """The similarities :func:`select` keeps at ``threshold`` (before ``min_matches``)."""
    return sims >= threshold


def grow(g: sp.csr_matrix, min_share: float = 0.5, rounds: int | None = 1) -> sp.csr_matrix:
    """Let match sets grow past the k neighbours searched, without chaining products.

    Adds the pair ``(i, j)`` when ``i`` and ``j`` share at least ``min_share`` of the
    smaller of their two match sets (itself included in each) and at least two postings:
    a product with hundreds of offers closes up through its many common matches, while
    a single bridge between two products (one wrong pair) is never enough. ``rounds``
    repeats it on the grown graph (``None``: until a round adds nothing). Symmetric in,
    symmetric out.

    >>> import numpy as np, scipy.sparse as sp
    >>> chain = sp.csr_matrix(np.array([[1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 1, 1], [0, 1, 1, 1]],
    ...                                dtype=np.float32))
    >>> grow(chain).toarray().astype(int).tolist()[0]
    [1, 1, 1, 1]
    >>> bridge = sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 1], [0, 1, 1]], dtype=np.float32))
    >>> grow(bridge).toarray().astype(int).tolist()[0]
    [1, 1, 0]
    """
    g = add_self(sp.csr_matrix(g))
    done = 0
    while rounds is None or done < int(rounds):
        done += 1
        grown = grow_rows(g, None, min_share)
        if not n_added(g, grown):
            break  # stable
        g = grown
    return g


def grow_rows(g: sp.csr_matrix, rows: np.ndarray | None,
              min_share: float = 0.5) -> sp.csr_matrix:
    """Rows ``rows`` of one round of :func:`grow` of ``g`` (``None``: every row),
    computed for those rows alone (their common matches with every posting, not every
    pair's): what a block of postings needs of a catalogue-wide round.

    >>> import numpy as np, scipy.sparse as sp
    >>> chain = sp.csr_matrix(np.array([[1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 1, 1], [0, 1, 1, 1]],
    ...                                dtype=np.float32))
    >>> grow_rows(chain, np.array([0])).toarray().astype(int).tolist()
    [[1, 1, 1, 1]]
    """
    g = add_self(sp.csr_matrix(g))
    b = g.copy()
    b.data[:] = 1.0
    deg = np.diff(b.indptr).astype(np.float64)
    if rows is None:
        rows, mine, own = np.arange(g.shape[0], dtype=np.int64), b, g
    else:
        rows = np.asarray(rows, dtype=np.int64)
        mine, own = b[rows], g[rows]
    common = (mine @ b.T).tocoo()
    r = rows[common.row]
    small = np.minimum(deg[r], deg[common.col])
    new = (common.data >= np.maximum(2.0, min_share * small)) & (r != common.col)
    add = sp.csr_matrix((np.ones(int(new.sum()), np.float32),
                         (common.row[new], common.col[new])), shape=(len(rows), g.shape[1]))
    add = add - add.multiply(mine)  # only pairs not matched yet (they keep their value)
    add.eliminate_zeros()
    out = sp.csr_matrix(own + add, dtype=np.float32)
    out.sort_indices()
    return out


def n_added(before: sp.spmatrix, after: sp.spmatrix) -> int:
    """Entries stored in ``after`` and not in ``before`` (pairs a round added).

    >>> n_added(sp.identity(2, format="csr"), sp.csr_matrix(np.ones((2, 2))))
    2
    """
    return int((sp.csr_matrix(after, dtype=bool) > sp.csr_matrix(before, dtype=bool)).nnz)


def add_self(g: sp.csr_matrix) -> sp.csr_matrix:
    """``g`` with every diagonal entry set to 1 (each posting matches itself)."""
    coo = g.tocoo()
    off = coo.row != coo.col
    n = min(g.shape)
    diag = np.arange(n)
    rows = np.concatenate([coo.row[off], diag])
    cols = np.concatenate([coo.col[off], diag])
    vals = np.concatenate([coo.data[off].astype(np.float32), np.ones(n, dtype=np.float32)])
    out = sp.csr_matrix((vals, (rows, cols)), shape=g.shape, dtype=np.float32)
    out.sort_indices()
    return out


def graph_to_sets(g: sp.csr_matrix) -> list[np.ndarray]:
    """Row ``i``'s stored column indices, sorted, for each row."""
    g = g.tocsr()
    g.sort_indices()
    return [g.indices[g.indptr[i]:g.indptr[i + 1]].copy() for i in range(g.shape[0])]
