"""Self-training for an index: the catalogue's point learnt once, at build.

Batch matching learns, on the catalogue it matches, the similarity of the rest of two
titles past which agreeing codes outnumber conflicting ones (self-training,
:mod:`shopee_match.rerank`), and adds the dropped pairs past it. A query's neighbourhood
is too small to learn that point from, so the index learns it on the catalogue's stored
candidate rows when it is built, and at each query adds the new postings' pairs past it
(nothing in conflict, not kept already), their similarity weighted by the catalogue's
word rarity.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..rerank import either_way, evidence_point, scan_pairs
from ..rerank.title_features import title_doc_freq

__all__ = ["added_pairs", "catalogue_df", "catalogue_point", "self_trains"]


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


def catalogue_point(rows: Sequence[sp.spmatrix | None], titles: Sequence[str]) -> float | None:
    """The catalogue's self-training point from its stored candidate rows (``None``: too
    little evidence, or no rows stored)."""
    if all(r is None for r in rows) or not len(titles):
        return None
    n = len(titles)
    found = scan_pairs(list(titles), _pattern(rows, n), sp.csr_matrix((n, n), dtype=bool))
    return evidence_point(found.counts, found.hits)


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
