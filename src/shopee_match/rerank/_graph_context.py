"""One modality's candidate graph read for pair features: each posting's neighbourhood
statistics (:func:`row_stats`, row by row, so rows computed where they live can be
stacked elsewhere) and :class:`GraphContext`, which features any block of pairs from
them (:func:`graph_features`). Re-exported by :mod:`~shopee_match.rerank.pair_features`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from ..neighbors.graph import keep_entries, row_blocks

__all__ = ["DENSITY_RANKS", "KTH", "GraphContext", "RowStats", "graph_features", "row_stats"]

#: neighbours whose similarity describes a posting's neighbourhood density
DENSITY_RANKS = (2, 5, 10)


class _Stored:
    """Where pairs sit among a canonical CSR graph's stored entries, found by a
    binary search of each pair's row (no index of the graph's own: O(1) memory), and
    read from any graph of the same sparsity (similarities, ranks)."""

    def __init__(self, g: sp.csr_matrix) -> None:
        self.indptr = g.indptr.astype(np.int64)
        self.indices = g.indices

    def at(self, rows: np.ndarray, cols: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        """A reader of the pairs' values (float64, NaN where not stored)."""
        rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols)
        pos = _find(self.indptr, self.indices, rows, cols)
        hit = pos >= 0
        pos = pos[hit]

        def read(data: np.ndarray) -> np.ndarray:
            out = np.full(len(rows), np.nan)
            out[hit] = data[pos]
            return out

        return read


def _find(indptr: np.ndarray, indices: np.ndarray, rows: np.ndarray,
          cols: np.ndarray) -> np.ndarray:
    """Position of each ``(rows[p], cols[p])`` among a canonical CSR graph's stored
    entries (-1 where not stored): every row's binary search at once, the pairs still
    searching narrowed each round."""
    lo, end = indptr[rows], indptr[rows + 1]
    hi = end.copy()
    left = np.flatnonzero(lo < hi)
    while len(left):
        a, b = lo[left], hi[left]
        mid = (a + b) >> 1
        right = indices[mid] < cols[left]
        lo[left] = np.where(right, mid + 1, a)
        hi[left] = np.where(right, b, mid)
        left = left[lo[left] < hi[left]]
    out = np.full(len(rows), -1, dtype=np.int64)
    inside = np.flatnonzero(lo < end)
    found = inside[indices[lo[inside]] == cols[inside]]
    out[found] = lo[found]
    return out


def _off_diagonal(g: sp.spmatrix, chunk: int, first: int = 0) -> sp.csr_matrix:
    """``g`` as a canonical float32 CSR graph without its diagonal (row ``r``'s at column
    ``first + r``): ``g`` itself (no copy) where it is one already."""
    g = sp.csr_matrix(g, dtype=np.float32)
    if not g.has_canonical_format:
        g = g.copy()
        g.sum_duplicates()
    indptr, indices = g.indptr, g.indices
    keep = np.ones(g.nnz, dtype=bool)
    for lo, hi in row_blocks(indptr, None, chunk):
        a, z = int(indptr[lo]), int(indptr[hi])
        rows = np.repeat(np.arange(first + lo, first + hi, dtype=np.int64),
                         np.diff(indptr[lo:hi + 1]))
        keep[a:z] = indices[a:z] != rows
    return g if keep.all() else keep_entries(g, keep)


class RowStats(NamedTuple):
    """What :class:`GraphContext` reads of each row of a candidate graph, row by row
    (:func:`row_stats`): rows can be computed where they live and stacked elsewhere."""

    graph: sp.csr_matrix  #: the rows without their diagonal (canonical, float32)
    rank: np.ndarray  #: each stored entry's 1-based rank in its row (float32)
    kth: np.ndarray  #: rows x len(KTH): each row's k-th best similarity (NaN: fewer)


#: the ranks whose similarity :class:`GraphContext` keeps per row: the best, then the density
KTH = (1, *DENSITY_RANKS)


def row_stats(g: sp.spmatrix, first: int = 0, chunk: int = 1 << 22) -> RowStats:
    """:class:`RowStats` of the rows of ``g`` (any number of rows; row ``r``'s own
    posting is column ``first + r``, its diagonal entry, left out). Every row's values
    depend on that row alone, so the rows of a graph's parts stacked are the whole
    graph's (what a Dask partition sends the partitions that need its postings).

    >>> g = sp.csr_matrix(np.array([[0, 1, .5, .25]], dtype=np.float32))
    >>> st = row_stats(g, first=1)
    >>> st.graph.indices.tolist(), st.rank.tolist(), st.kth[0, :2].tolist()
    ([2, 3], [1.0, 2.0], [0.5, 0.25])
    """
    off_g = _off_diagonal(g, chunk, first)
    n = off_g.shape[0]
    indptr, indices, s = off_g.indptr, off_g.indices, off_g.data
    deg = np.diff(indptr).astype(np.int64)
    rank = np.empty(off_g.nnz, dtype=np.float32)
    kth = np.full((n, len(KTH)), np.nan)
    for lo, hi in row_blocks(indptr, None, chunk):
        a, z = int(indptr[lo]), int(indptr[hi])
        r = np.repeat(np.arange(lo, hi, dtype=np.int64), deg[lo:hi])
        # each row's candidates by similarity, ties by column (as stored)
        order = np.lexsort((indices[a:z], -s[a:z], r))
        rank[a + order] = np.arange(a, z) - indptr[r] + 1
        s_sorted = s[a:z][order]
        for col, k in enumerate(KTH):
            has = np.flatnonzero(deg[lo:hi] >= k) + lo
            kth[has, col] = s_sorted[indptr[has] - a + k - 1]
    return RowStats(off_g, rank, kth)


class GraphContext:
    """One modality's candidate graph, read once: what :func:`graph_features` needs of
    every posting (canonical similarities, each candidate's rank, the best and k-th
    similarity, the candidate count), so that any block of pairs is then featured
    without another pass over the graph. Memory: the graph (shared, not copied, when it
    is a canonical float32 CSR graph without diagonal) and one float32 rank per stored
    pair; the ranks are found ``chunk`` stored pairs at a time. :meth:`from_stats`
    builds it from rows whose statistics were computed elsewhere.

    >>> g = sp.csr_matrix(np.array([[1, .9, .2], [.9, 1, 0], [.2, 0, 1]], dtype=np.float32))
    >>> ctx = GraphContext(g)
    >>> ctx.features(np.array([0]), np.array([1]))["rank_ij"].tolist()
    [1.0]
    """

    def __init__(self, g: sp.spmatrix, chunk: int = 1 << 22) -> None:
        self._set(row_stats(g, 0, chunk))

    @classmethod
    def from_stats(cls, stats: RowStats) -> GraphContext:
        """The context of a square graph whose :class:`RowStats` are given (rows
        stacked from :func:`row_stats` of parts; an empty row has NaN statistics).

        >>> g = sp.csr_matrix(np.array([[1, .9, .2], [.9, 1, 0], [.2, 0, 1]], dtype=np.float32))
        >>> top, low = row_stats(g[:1], 0), row_stats(g[1:], 1)
        >>> both = RowStats(sp.vstack([top.graph, low.graph], format="csr"),
        ...                 np.concatenate([top.rank, low.rank]), np.vstack([top.kth, low.kth]))
        >>> a = GraphContext.from_stats(both).features(np.array([0, 1]), np.array([1, 2]))
        >>> b = GraphContext(g).features(np.array([0, 1]), np.array([1, 2]))
        >>> all(np.array_equal(a[k], b[k], equal_nan=True) for k in b)
        True
        """
        n, m = stats.graph.shape
        if n != m or len(stats.rank) != stats.graph.nnz or stats.kth.shape != (n, len(KTH)):
            raise ValueError(
                f"RowStats of a {n} x {m} graph with {stats.graph.nnz} entries got "
                f"{len(stats.rank)} ranks and a {stats.kth.shape} k-th table; build them "
                "with row_stats and stack their rows in the same order.")
        out = cls.__new__(cls)
        out._set(stats)
        return out

    def _set(self, stats: RowStats) -> None:
        off_g = sp.csr_matrix(stats.graph)
        off_g.has_canonical_format = True
        self.present = bool(off_g.nnz)
        self.deg = np.diff(off_g.indptr).astype(np.int64)
        self.kth: dict[int, np.ndarray] = {k: stats.kth[:, col] for col, k in enumerate(KTH)}
        # float32 as searched; every read widens them exactly
        self.rank_data = np.asarray(stats.rank, dtype=np.float32)
        self.off_g = off_g
        self.stored = _Stored(off_g)
        self.shared = _SharedNeighbours(off_g)

    def features(self, rows: np.ndarray, cols: np.ndarray, prefix: str = "") -> dict[str, np.ndarray]:
        """The features of pairs ``(rows[p], cols[p])`` (see :func:`graph_features`)."""
        ij, ji = self.stored.at(rows, cols), self.stored.at(cols, rows)
        data = self.off_g.data
        sim_ij, sim_ji = ij(data), ji(data)
        sim = np.where(np.isnan(sim_ij), sim_ji, sim_ij)
        f: dict[str, np.ndarray] = {
            "sim": sim,
            "rank_ij": ij(self.rank_data),
            "rank_ji": ji(self.rank_data),
        }
        top1 = self.kth[1]
        f["top1_i"], f["top1_j"] = top1[rows], top1[cols]
        f["gap_i"], f["gap_j"] = f["top1_i"] - sim, f["top1_j"] - sim
        for k in DENSITY_RANKS:
            sk = self.kth[k]
            f[f"s{k}_i"], f[f"s{k}_j"] = sk[rows], sk[cols]
        f["deg_i"], f["deg_j"] = self.deg[rows].astype(np.float64), self.deg[cols].astype(np.float64)
        f["shared"], f["sim2"] = self.shared(rows, cols)
        f.update(_relative(f))
        return {prefix + k: v for k, v in f.items()}

    def matrix(self, rows: np.ndarray, cols: np.ndarray, prefix: str = "") -> tuple[np.ndarray, list[str]]:
        """:meth:`features` as a float64 matrix (one column per feature) and the names."""
        feats = self.features(rows, cols, prefix)
        names = list(feats)
        return np.column_stack([feats[k] for k in names]), names


def graph_features(
    g: sp.spmatrix, rows: np.ndarray, cols: np.ndarray, prefix: str = ""
) -> dict[str, np.ndarray]:
    """One modality's features of the pairs ``(rows[p], cols[p])``.

    ``sim`` is the pair's similarity (either direction; NaN where the modality did not
    propose the pair), ``rank_ij`` / ``rank_ji`` its 1-based rank among each side's other
    candidates, ``top1_*`` / ``s{k}_*`` each side's best and k-th similarity, ``gap_*`` the
    best minus ``sim``, ``deg_*`` the number of candidates. The whole graph is read for
    each call: to feature many blocks of pairs, build one :class:`GraphContext`.
    """
    return GraphContext(g).features(rows, cols, prefix)


def _relative(f: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The pair against each side's neighbourhood, free of the modality's scale: mutual
    best match, share of the best similarity, and place between the 10th and the best."""
    sim = f["sim"]
    out = {"mutual_best": ((f["rank_ij"] == 1) & (f["rank_ji"] == 1)).astype(np.float64)}
    with np.errstate(invalid="ignore", divide="ignore"):
        for side in ("i", "j"):
            top, low = f[f"top1_{side}"], f[f"s{DENSITY_RANKS[-1]}_{side}"]
            out[f"ratio_{side}"] = sim / np.where(top > 0, top, np.nan)
            spread = top - low
            out[f"place_{side}"] = np.where(spread > 1e-6, (sim - low) / spread, np.nan)
    return out


class _SharedNeighbours:
    """Share of common candidates (of the smaller list) and the 2-hop similarity
    ``sum_k s_ik s_jk`` of pairs, in pair chunks so memory stays O(chunk * k).

    One row gather and element-wise product per chunk gives both: the product's stored
    entries are the common candidates (when no similarity is exactly 0), and its row
    sums (NumPy's ``add.reduceat``, so the rounding never changes) the 2-hop similarity.
    """

    def __init__(self, g: sp.csr_matrix, chunk: int = 65536) -> None:
        self.g = sp.csr_matrix(g)
        self.deg = np.diff(self.g.indptr).astype(np.float64)
        self.chunk = chunk
        self.b = None
        if self.g.nnz and not np.all(np.abs(self.g.data) > 1e-150):  # a stored 0 (or a
            # product rounding to 0) would drop a common candidate: count apart
            self.b = self.g.copy()
            self.b.data[:] = 1.0

    def __call__(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        g, b, chunk = self.g, self.b, self.chunk
        shared = np.empty(len(rows))
        sim2 = np.empty(len(rows))
        for s in range(0, len(rows), chunk):
            r, c = rows[s:s + chunk], cols[s:s + chunk]
            prod = sp.csr_matrix(g[r].astype(np.float64).multiply(g[c].astype(np.float64)))
            sim2[s:s + chunk] = np.asarray(prod.sum(axis=1)).ravel()
            if b is None:
                prod.sum_duplicates()
                shared[s:s + chunk] = np.diff(prod.indptr)
            else:
                shared[s:s + chunk] = np.asarray(b[r].multiply(b[c]).sum(axis=1)).ravel()
        with np.errstate(invalid="ignore", divide="ignore"):
            shared = shared / np.minimum(self.deg[rows], self.deg[cols])
        return shared, sim2
