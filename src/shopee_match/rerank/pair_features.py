"""Features of candidate pairs for a second-stage pair classifier.

A candidate pair ``(i, j)`` comes from any modality's candidate graph (a KNN graph, or
phash pairs within a Hamming radius). Its features say how similar the two postings are
in each modality *and how that compares with their neighbourhoods* (rank of ``j`` among
``i``'s neighbours and back, the best and the k-th neighbour's similarity, the gap to the
best, mutual best match), plus title agreement that no cosine sees well: shared and
conflicting model codes, sizes and numbers, rarity-weighted word agreement
(:mod:`~shopee_match.rerank.title_features`).
Nothing here is learned, so the same function serves fitting and prediction.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
import scipy.sparse as sp

from ..neighbors import effective_n_jobs
from ..neighbors.graph import row_blocks
from ._graph_context import (
    DENSITY_RANKS,
    KTH,
    GraphContext,
    RowStats,
    graph_features,
    row_stats,
)
from .title_features import TitleContext, title_features

T = TypeVar("T")

__all__ = [
    "DENSITY_RANKS",
    "KTH",
    "GraphContext",
    "PairContext",
    "RowStats",
    "candidate_pairs",
    "graph_features",
    "pair_features",
    "pair_pattern",
    "row_stats",
    "title_features",
]


def candidate_pairs(cands: Mapping[str, sp.spmatrix]) -> tuple[np.ndarray, np.ndarray]:
    """Off-diagonal pairs stored in any candidate graph, in both directions, sorted
    (the stored entries of :func:`pair_pattern`, row by row).

    >>> g = sp.csr_matrix(np.array([[1, .9, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32))
    >>> [a.tolist() for a in candidate_pairs({"t": g})]
    [[0, 1], [1, 0]]
    """
    pat = pair_pattern(cands)
    rows = np.repeat(np.arange(pat.shape[0], dtype=np.int64), np.diff(pat.indptr))
    return rows, pat.indices.astype(np.int64)


def pair_pattern(cands: Mapping[str, sp.spmatrix], chunk: int = 1 << 22) -> sp.csr_matrix:
    """Every off-diagonal pair stored in any candidate graph, in both directions, as
    one canonical CSR pattern (row ``i``'s columns: ``i``'s candidate partners, sorted;
    boolean data). Built about ``chunk`` stored entries of rows at a time: besides the
    pattern, one transposed copy of each graph's structure.

    >>> g = sp.csr_matrix(np.array([[1, .9, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32))
    >>> p = pair_pattern({"t": g})
    >>> p.indptr.tolist(), p.indices.tolist()
    ([0, 1, 2, 2], [1, 0])
    """
    n = _shape(cands)
    parts = []
    for g in cands.values():
        g = sp.csr_matrix(g)
        if not g.has_canonical_format:
            g = g.copy()
            g.sum_duplicates()
        b = sp.csr_matrix((np.ones(g.nnz, dtype=bool), g.indices, g.indptr), shape=(n, n))
        parts += [b, b.T.tocsr()]
    total = sum(part.indptr.astype(np.int64) for part in parts)
    counts = np.zeros(n + 1, dtype=np.int64)
    indices = []
    for lo, hi in row_blocks(total, None, chunk):
        union = parts[0][lo:hi]
        for part in parts[1:]:
            union = union + part[lo:hi]
        union = sp.csr_matrix(union)
        union.sum_duplicates()
        rows = np.repeat(np.arange(lo, hi), np.diff(union.indptr))
        keep = union.indices != rows
        counts[lo + 1:hi + 1] = np.bincount(rows[keep] - lo, minlength=hi - lo)
        indices.append(union.indices[keep].astype(np.int32 if n < 2**31 else np.int64))
    indptr = np.cumsum(counts)
    idx_type = np.int32 if indptr[-1] < 2**31 and n < 2**31 else np.int64
    out = sp.csr_matrix((np.ones(int(indptr[-1]), dtype=bool),
                         np.concatenate(indices) if indices else np.empty(0, idx_type),
                         indptr.astype(idx_type)), shape=(n, n))
    out.has_canonical_format = True
    return out


def _shape(cands: Mapping[str, sp.spmatrix]) -> int:
    if not cands:
        raise ValueError("`cands` is empty: pass at least one modality's candidate graph.")
    shapes = {name: g.shape for name, g in cands.items()}
    n = next(iter(shapes.values()))[0]
    for name, shape in shapes.items():
        if len(shape) != 2 or shape != (n, n):
            raise ValueError(
                f"candidate graph {name!r} has shape {shape}; every graph must be square and "
                f"the same size (n x n, n = number of postings), got {shapes}."
            )
    return int(n)


class PairContext:
    """Every modality's :class:`GraphContext` and the titles' :class:`TitleContext`,
    built once (each in its own thread, ``n_jobs`` threads; ``None``: every core), then
    :meth:`features` of any block of pairs: the same values as :func:`pair_features`
    of those pairs, whatever the blocks.

    >>> g = sp.csr_matrix(np.array([[1, .9], [.9, 1]], dtype=np.float32))
    >>> ctx = PairContext({"tfidf": g}, ["Mug 300ml", "mug 300 ml"])
    >>> x, names = ctx.features(np.array([0]), np.array([1]))
    >>> x.shape, names[0]
    ((1, 46), 'tfidf__sim')
    """

    def __init__(self, cands: Mapping[str, sp.spmatrix], titles: Sequence[str] | None = None,
                 n_jobs: int | None = None,
                 catalogue_df: tuple[Mapping[str, int], int] | None = None) -> None:
        n = _shape(cands)
        if titles is not None and len(titles) != n:
            raise ValueError(
                f"`titles` has {len(titles)} entries but the candidate graphs have {n} rows; "
                "pass one title per posting, in the graphs' row order."
            )
        self.n = n
        self.names = sorted(cands)
        self.n_jobs = n_jobs
        tasks: list[Callable[[], object]] = [functools.partial(GraphContext, cands[name])
                                             for name in self.names]
        if titles is not None:
            tasks.append(functools.partial(TitleContext, titles, catalogue_df))
        parts = _run(tasks, n_jobs)
        self.graphs: list[GraphContext] = parts[:len(self.names)]  # type: ignore[assignment]
        self.titles: TitleContext | None = (parts[-1] if titles is not None  # type: ignore[assignment]
                                            else None)

    @classmethod
    def from_contexts(cls, graphs: Mapping[str, GraphContext], titles: TitleContext | None = None,
                      n_jobs: int | None = None) -> PairContext:
        """The context of contexts built already (each modality's, e.g. from
        :meth:`GraphContext.from_stats`, and the titles'): the features of
        ``PairContext`` over the graphs and titles they were built from.

        >>> g = sp.csr_matrix(np.array([[1, .9], [.9, 1]], dtype=np.float32))
        >>> ctx = PairContext.from_contexts({"tfidf": GraphContext(g)})
        >>> ctx.features(np.array([0]), np.array([1]))[1][:2]
        ['tfidf__sim', 'tfidf__rank_ij']
        """
        sizes = {name: ctx.off_g.shape[0] for name, ctx in graphs.items()}
        if titles is not None:
            sizes["titles"] = titles.n
        if not graphs or len(set(sizes.values())) != 1:
            raise ValueError(f"`graphs` (and `titles`) must cover the same postings; got "
                             f"these sizes: {sizes}.")
        out = cls.__new__(cls)
        out.n = next(iter(sizes.values()))
        out.names = sorted(graphs)
        out.n_jobs = n_jobs
        out.graphs = [graphs[name] for name in out.names]
        out.titles = titles
        return out

    def features(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """Feature matrix (float64, NaN = missing) of pairs ``(rows[p], cols[p])``, and
        the feature names (modalities in sorted name order, then the titles')."""

        def modality(i: int) -> dict[str, np.ndarray]:
            ctx, name = self.graphs[i], self.names[i]
            f = ctx.features(rows, cols, prefix=f"{name}__")
            # whether the modality exists in this set at all (an empty graph: e.g. no images)
            f[f"{name}__present"] = np.full(len(rows), float(ctx.present))
            return f

        tasks: list[Callable[[], dict[str, np.ndarray]]] = [
            functools.partial(modality, i) for i in range(len(self.names))]
        if self.titles is not None:
            tasks.append(functools.partial(self.titles.features, rows, cols))
        feats: dict[str, np.ndarray] = {}
        for part in _run(tasks, self.n_jobs):
            feats.update(part)
        names = list(feats)
        return _columns([feats[k] for k in names], len(rows)), names


def _run(tasks: Sequence[Callable[[], T]], n_jobs: int | None) -> list[T]:
    """Each task's result, in order, on up to ``n_jobs`` threads (NumPy and SciPy's
    sparse kernels release the GIL)."""
    workers = min(len(tasks), effective_n_jobs(n_jobs))
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(lambda task: task(), tasks))
    return [task() for task in tasks]


def pair_features(
    cands: Mapping[str, sp.spmatrix],
    rows: np.ndarray,
    cols: np.ndarray,
    titles: Sequence[str] | None = None,
    n_jobs: int | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Feature matrix (float64, NaN = missing) of the pairs, and the feature names.

    Modalities are taken in sorted name order so the columns never depend on dict order.
    Each modality's features and the title features are computed in their own thread
    (``n_jobs`` threads; ``None``: every core): the values do not depend on it. To
    feature many blocks of pairs of the same graphs, build one :class:`PairContext`.

    >>> g = sp.csr_matrix(np.array([[1, .9], [.9, 1]], dtype=np.float32))
    >>> r, c = candidate_pairs({"tfidf": g})
    >>> X, names = pair_features({"tfidf": g}, r, c, ["Mug 300ml", "mug 300 ml"])
    >>> X.shape[0], names[0]
    (2, 'tfidf__sim')
    """
    return PairContext(cands, titles, n_jobs).features(rows, cols)


def _columns(cols: Sequence[np.ndarray], n: int, block: int = 16384) -> np.ndarray:
    """``np.column_stack(cols)`` as float64, written a block of rows at a time (the
    block's rows stay in cache while every column is written into them)."""
    x = np.empty((n, len(cols)), dtype=np.float64)
    for s in range(0, n, block):
        part = x[s:s + block]
        for j, c in enumerate(cols):
            part[:, j] = c[s:s + block]
    return x
