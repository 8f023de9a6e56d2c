"""Self-training for an index: the catalogue's point learnt at build, kept up by ``add``.

Batch matching learns, on the catalogue it matches, the similarity of the rest of two
titles past which agreeing codes outnumber conflicting ones (self-training,
:mod:`shopee_match.rerank`), and adds the dropped pairs past it. A query's neighbourhood
is too small to learn that point from, so the index learns it on the catalogue's stored
candidate rows when it is built, and at each query adds the new postings' pairs past it
(nothing in conflict, not kept already), their similarity weighted by the catalogue's
word rarity. The evidence (pairs and agreeing pairs per similarity bin) is kept, and
each ``add`` counts the new postings' candidate pairs into it and reads the point again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..rerank import either_way, scan_pairs
from ..rerank.title_features import title_doc_freq

__all__ = ["added_pairs", "catalogue_df", "catalogue_evidence", "new_evidence",
           "self_trains"]


def self_trains(ens: Any) -> bool:
    """Whether combiner ``ens`` adds what self-training finds."""
    return bool(getattr(ens, "self_train", False) and getattr(ens, "self_train_", True))


def _pattern(graphs: Sequence[sp.spmatrix | None], n: int) -> sp.csr_matrix:
    """Each pair of any graph once (upper triangle of the symmetric union)."""
    g = sp.csr_matrix((n, n), dtype=np.float32)
    for part in graphs:
        if part is not None:
            p = sp.csr_matrix(part, dtype=np.float32)[:n, :n]
            p.data[:] = 1.0
            g = g + p
    up = sp.triu(g + g.T, 1).tocsr()
    up.eliminate_zeros()
    return up


def catalogue_evidence(rows: Sequence[sp.spmatrix | None], titles: Sequence[str],
                       ) -> tuple[np.ndarray, np.ndarray] | None:
    """The self-training evidence counts (pairs, agreeing pairs; 1,001 similarity bins)
    of the catalogue's stored candidate rows (``None``: no rows stored); the point is
    :func:`~shopee_match.rerank.evidence_point` of them."""
    if all(r is None for r in rows) or not len(titles):
        return None
    n = len(titles)
    found = scan_pairs(list(titles), _pattern(rows, n), sp.csr_matrix((n, n), dtype=bool))
    return found.counts, found.hits


def new_evidence(rows: Sequence[sp.spmatrix | None], titles_of: Any, slots: np.ndarray,
                 df: tuple[Mapping[str, int], int]) -> tuple[np.ndarray, np.ndarray]:
    """The evidence counts of the candidate pairs stored in the rows of postings
    ``slots`` (just added), each pair once, read with the catalogue's word rarity
    ``df``; ``titles_of(ids)`` gives indexed titles. Only the new postings and their
    candidates are read, so the cost follows what was added, not the catalogue.

    >>> rows = [sp.csr_matrix(([0.9], ([2], [0])), shape=(3, 3))]
    >>> titles = ["blue shirt xq1", "red mug", "shirt blue xq1"]
    >>> c, h = new_evidence(rows, lambda ids: [titles[i] for i in ids], np.array([2]),
    ...                     catalogue_df(titles))
    >>> int(c.sum()), int(h.sum())
    (1, 1)
    """
    slots = np.asarray(slots, np.int64)
    heads, tails = [], []
    for r in rows:
        if r is None:
            continue
        own = sp.csr_matrix(r)[slots].tocoo()
        heads.append(slots[own.row])
        tails.append(own.col.astype(np.int64))
    empty = (np.zeros(1001), np.zeros(1001))
    if not heads:
        return empty
    a, b = np.concatenate(heads), np.concatenate(tails)
    keep = a != b
    lo, hi = np.minimum(a[keep], b[keep]), np.maximum(a[keep], b[keep])
    if not len(lo):
        return empty
    nodes = np.unique(np.r_[lo, hi])
    i, j = np.searchsorted(nodes, lo), np.searchsorted(nodes, hi)
    m = len(nodes)
    up = sp.csr_matrix((np.ones(len(i), np.float32), (i, j)), shape=(m, m))
    up.sum_duplicates()
    found = scan_pairs(list(titles_of(nodes)), up, sp.csr_matrix((m, m), dtype=bool), df)
    return found.counts, found.hits


def catalogue_df(titles: Sequence[str]) -> tuple[Mapping[str, int], int]:
    """The catalogue's title-token document counts, for a query's similarities."""
    return title_doc_freq(list(titles)), len(titles)


def added_pairs(graphs: Sequence[sp.spmatrix], titles: Sequence[str], kept: sp.spmatrix,
                n_new: int, point: float, df: tuple[Mapping[str, int], int]) -> sp.csr_matrix:
    """The candidate pairs of a query's neighbourhood (``graphs`` over ``titles``; rows
    ``0 .. n_new - 1`` the new postings) that self-training adds at ``point``: pairs of
    a new posting, not in ``kept``, nothing in conflict. Symmetric, data 1."""
    n = len(titles)
    up = _pattern(graphs, n).tocoo()
    mine = (up.row < n_new) | (up.col < n_new)
    up = sp.csr_matrix((up.data[mine], (up.row[mine], up.col[mine])), shape=(n, n))
    kept = sp.csr_matrix(kept)[:n, :n]
    found = scan_pairs(list(titles), up, either_way(kept), df)
    r, c = found.added(point)
    return sp.csr_matrix((np.ones(2 * len(r), np.float32), (np.r_[r, c], np.r_[c, r])),
                         shape=(n, n))
