"""Exact distributed k-NN: block-pair products with a tree reduction of top-k.

Every ordered pair of partitions ``(a, b)`` is one task: the matcher's own KNN backend
is fitted on block ``b`` and searched with block ``a`` (so the kernel, its threshold
floor and its tie rules are the single-machine ones). Each task returns ``(n_a, k)``
arrays with global column ids; the ``P`` results of block ``a`` are merged pairwise in
a binary tree (``log2 P`` levels, two ``(n_a, k)`` arrays per merge), and the merged
top-k is thresholded exactly as :func:`~shopee_match.neighbors.graph.select` does.
Memory per task: two partitions' embeddings, the backend's block and O(n_a * k).

The helpers here are plain NumPy functions; the IVF path (:mod:`._ivf`) reuses them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from ..neighbors import get_backend

__all__ = [
    "catalogue_counts",
    "cut_topk",
    "exact_edges",
    "exact_for_queries",
    "exact_topk",
    "merge_topk",
    "pair_topk",
    "prune",
    "select_rows",
    "topk_from_triples",
    "tree_reduce",
]


def pair_topk(
    query: Any, ref: Any, matcher: Any, col_offset: int, same: bool = False,
    extra: int = 0, floor: bool = True, catalogue: tuple[np.ndarray, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of each ``query`` row among ``ref`` rows: ``(sims, global idx)``, -1 padded.

    ``extra``: search ``k + extra`` (to see ties at the k-th place); ``floor=False``:
    every neighbour, not only those the matcher's threshold could keep (candidates).
    ``catalogue``: the whole catalogue's column counts and rows (sparse rows, from
    :func:`catalogue_counts`): the sparse backend then plans every block as it plans the
    whole search, so the similarities are the single-machine ones bit for bit.

    >>> from shopee_match import NeighborMatcher
    >>> x = np.eye(3, dtype=np.float32)
    >>> pair_topk(x, x, NeighborMatcher(k=1), col_offset=10)[1].ravel().tolist()
    [10, 11, 12]
    """
    # Dask already runs one task per worker thread: one search thread each, by default
    options = {"n_jobs": 1, **matcher.backend_options()}
    if catalogue is not None:
        options["catalogue"] = catalogue
    backend = get_backend(matcher.backend, ref, **options)
    backend.fit(ref)
    low = matcher.search_floor() if floor else None
    sims, idx = backend.search(ref if same else query, int(matcher.k) + extra, threshold=low)
    idx = np.where(idx >= 0, idx.astype(np.int64) + int(col_offset), -1)
    return sims.astype(np.float32, copy=False), idx


def merge_topk(
    a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Merge two row-aligned top-k results into one top-``k`` (sorted, -1 padded).

    >>> a = (np.array([[0.9, 0.1]], np.float32), np.array([[3, 4]]))
    >>> b = (np.array([[0.5]], np.float32), np.array([[7]]))
    >>> merge_topk(a, b, 2)[1].tolist()
    [[3, 7]]
    """
    sims = np.concatenate([a[0], b[0]], axis=1)
    idx = np.concatenate([a[1], b[1]], axis=1)
    sims = np.where(idx >= 0, sims, -np.inf).astype(np.float32)
    order = np.lexsort((idx, -sims), axis=1)[:, :k]  # ties: the smaller id first
    return np.take_along_axis(sims, order, axis=1), np.take_along_axis(idx, order, axis=1)


def tree_reduce(client: Any, futures: list[Any], fn: Any, *args: Any) -> Any:
    """Combine futures pairwise (``fn(x, y, *args)``) until one is left: log2 levels."""
    level = list(futures)
    while len(level) > 1:
        nxt = [
            client.submit(fn, level[i], level[i + 1], *args, pure=False)
            for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def select_rows(
    sims: np.ndarray, idx: np.ndarray, self_ids: np.ndarray, matcher: Any
) -> tuple[np.ndarray, np.ndarray]:
    """``(local rows, global cols)`` kept from sorted top-k rows, self excluded.

    The rule of :func:`~shopee_match.neighbors.graph.select` on sorted rows: keep other
    postings with similarity >= threshold; where fewer than ``min_matches - 1`` pass, add
    the best other ones down to ``min_threshold``.

    >>> from shopee_match import NeighborMatcher
    >>> s = np.array([[1.0, 0.8, 0.3]], np.float32); i = np.array([[5, 6, 7]])
    >>> select_rows(s, i, np.array([5]), NeighborMatcher(threshold=0.5))[1].tolist()
    [6]
    """
    order = np.lexsort((idx, -sims), axis=1)  # ties: the smaller id first, as select does
    sims, idx = np.take_along_axis(sims, order, axis=1), np.take_along_axis(idx, order, axis=1)
    others = (idx >= 0) & (idx != np.asarray(self_ids)[:, None])
    keep = others & (sims >= matcher.similarity_threshold())
    m = int(matcher.min_matches)
    if m > 1:
        rank = np.cumsum(others, axis=1) - 1  # position among the other postings
        low = -np.inf if matcher.min_threshold is None else float(matcher.min_threshold)
        keep |= others & (rank < m - 1) & (sims >= low)
    rows, cols = np.nonzero(keep)
    return rows.astype(np.int64), idx[rows, cols].astype(np.int64)


def prune(
    sims: np.ndarray, idx: np.ndarray, self_ids: np.ndarray, matcher: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Triples ``(row, global col, sim)`` of a partial top-k that the final selection can
    still keep: self, similarity >= threshold, or among the best ``min_matches - 1``.

    A kept pair of the global top-k is always kept by this rule in the partial top-k
    that holds it (its rank there is no worse), so pruning before a merge is exact.

    >>> from shopee_match import NeighborMatcher
    >>> s = np.array([[1.0, 0.8, 0.3]], np.float32); i = np.array([[5, 6, 7]])
    >>> prune(s, i, np.array([5]), NeighborMatcher(threshold=0.5))[1].tolist()
    [5, 6]
    """
    order = np.lexsort((idx, -sims), axis=1)
    sims, idx = np.take_along_axis(sims, order, axis=1), np.take_along_axis(idx, order, axis=1)
    valid = idx >= 0
    is_self = valid & (idx == np.asarray(self_ids)[:, None])
    others = valid & ~is_self
    keep = is_self | (others & (sims >= matcher.similarity_threshold()))
    m = int(matcher.min_matches)
    if m > 1:
        rank = np.cumsum(others, axis=1) - 1
        keep |= others & (rank < m - 1)
    rows, cols = np.nonzero(keep)
    return rows.astype(np.int64), idx[rows, cols].astype(np.int64), sims[rows, cols]


def topk_from_triples(
    rows: np.ndarray, cols: np.ndarray, sims: np.ndarray, n_rows: int, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted ``(n_rows, k)`` top-k from ``(row, col, sim)`` triples; duplicates once.

    >>> s, i = topk_from_triples(np.array([0, 0, 0]), np.array([4, 2, 4]),
    ...                          np.array([0.5, 0.9, 0.5], np.float32), 1, 3)
    >>> i.tolist()
    [[2, 4, -1]]
    """
    out_s = np.full((n_rows, k), -np.inf, dtype=np.float32)
    out_i = np.full((n_rows, k), -1, dtype=np.int64)
    if len(rows) == 0:
        return out_s, out_i
    # the same (row, col) found in several cells has the same similarity: keep one
    key = rows.astype(np.int64) * (int(cols.max()) + 1) + cols
    _, first = np.unique(key, return_index=True)
    rows, cols, sims = rows[first], cols[first], sims[first]
    order = np.lexsort((cols, -sims, rows))
    rows, cols, sims = rows[order], cols[order], sims[order]
    starts = np.searchsorted(rows, rows, side="left")
    rank = np.arange(len(rows)) - starts
    take = rank < k
    out_s[rows[take], rank[take]] = sims[take]
    out_i[rows[take], rank[take]] = cols[take]
    return out_s, out_i


# --- tasks and their graphs ---------------------------------------------------------
def _pair(pa: Any, pb: Any, step: str, matcher: Any, extra: int = 0,
          floor: bool = True, catalogue: tuple[np.ndarray, int] | None = None,
          ) -> tuple[np.ndarray, np.ndarray]:
    xa, xb = pa.embs[step], pb.embs[step]
    return pair_topk(xa, xb, matcher, pb.offset, same=pa is pb, extra=extra, floor=floor,
                     catalogue=catalogue)


def _counts(part: Any, step: str) -> tuple[np.ndarray, int] | None:
    x = part.embs[step]
    if not sp.issparse(x):
        return None
    x = sp.csr_matrix(x)
    return np.bincount(x.indices, minlength=x.shape[1]).astype(np.int64), int(x.shape[0])


def _add_counts(a: tuple[np.ndarray, int] | None, b: tuple[np.ndarray, int] | None
                ) -> tuple[np.ndarray, int] | None:
    return None if a is None or b is None else (a[0] + b[0], a[1] + b[1])


def catalogue_counts(client: Any, parts: list[Any], step: str) -> Any:
    """A future of ``(column document counts, rows)`` of a step's sparse rows over every
    partition (``None`` for dense rows), summed in a tree."""
    return tree_reduce(client, [client.submit(_counts, p, step, pure=False) for p in parts],
                       _add_counts)


def _query_pair(q: Any, pb: Any, step: str, matcher: Any, floor: bool = True
                ) -> tuple[np.ndarray, np.ndarray]:
    return pair_topk(q[0], pb.embs[step], matcher, pb.offset, floor=floor)


def _finish(res: tuple[np.ndarray, np.ndarray], self_ids: np.ndarray, matcher: Any) -> Any:
    return select_rows(res[0], res[1], self_ids, matcher)


def exact_edges(
    client: Any, parts: list[Any], offsets: np.ndarray, step: str, matcher: Any
) -> list[Any]:
    """For each partition, a future of its exact edges ``(local rows, global ids)``.

    ``P * P`` block-pair tasks, then ``P - 1`` merges per partition in a binary tree.
    """
    out = []
    for a, top in enumerate(exact_topk(client, parts, step, matcher)):
        self_ids = np.arange(offsets[a], offsets[a + 1], dtype=np.int64)
        out.append(client.submit(_finish, top, self_ids, matcher, pure=False))
    return out


def exact_topk(
    client: Any, parts: list[Any], step: str, matcher: Any, candidates: bool = False
) -> list[Any]:
    """For each partition, a future of its merged top-k ``(sims, global idx)``.

    ``candidates=True``: every neighbour (no threshold floor), as
    :meth:`~shopee_match.NeighborMatcher.candidates` searches, and ``k + 1`` of them so
    :func:`cut_topk` can count the rows with a tie at the k-th place.
    """
    extra = int(candidates)
    k = int(matcher.k) + extra
    cat = catalogue_counts(client, parts, step)  # one plan for every block
    out = []
    for pa in parts:
        pairs = [client.submit(_pair, pa, pb, step, matcher, extra, not candidates, cat,
                               pure=False) for pb in parts]
        out.append(tree_reduce(client, pairs, merge_topk, k))
    return out


def cut_topk(top: tuple[np.ndarray, np.ndarray], k: int
             ) -> tuple[np.ndarray, np.ndarray, int]:
    """A ``k + 1`` search cut to ``k``, and the rows whose k-th and (k+1)-th neighbours
    are equally similar (there the k kept are one valid choice among several).

    >>> s = np.array([[1.0, 0.5, 0.5], [1.0, 0.5, 0.4]], np.float32)
    >>> cut_topk((s, np.array([[0, 1, 2], [1, 0, 2]])), 2)[2]
    1
    """
    sims, idx = top
    ties = 0
    if sims.shape[1] > k:
        ties = int(((idx[:, k] >= 0) & (sims[:, k] == sims[:, k - 1])).sum())
    return sims[:, :k], idx[:, :k], ties


def exact_for_queries(
    client: Any, parts: list[Any], query: Any, step: str, matcher: Any,
    candidates: bool = False,
) -> Any:
    """A future of ``(rows, global ids)``: exact matches of the ``query = (rows, global
    ids)`` future against every partition (what recall of the IVF path is measured on).

    ``candidates=True``: the merged top-k ``(sims, global idx)`` instead, with no
    threshold floor (a reranker's candidates).
    """
    pairs = [client.submit(_query_pair, query, pb, step, matcher, not candidates, pure=False)
             for pb in parts]
    top = tree_reduce(client, pairs, merge_topk, int(matcher.k))
    if candidates:
        return top
    return client.submit(_finish_query, top, query, matcher, pure=False)


def _finish_query(res: tuple[np.ndarray, np.ndarray], query: Any, matcher: Any) -> Any:
    return select_rows(res[0], res[1], query[1], matcher)
