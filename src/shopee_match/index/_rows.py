"""Candidate rows: per-row neighbour lists kept as CSR, and row overrides.

The index keeps, per search space, each catalogue posting's candidate row (its top-k
neighbours and their similarities, as batch search would find them). A query never
edits them: it computes *overrides* (the rows that new postings change) and reads rows
through them, so concurrent queries share one read-only catalogue.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["Overrides", "kth_of", "rows_from_lists", "topk_rows"]


def topk_rows(rows: np.ndarray, cols: np.ndarray, sims: np.ndarray, k: int | None,
              n_rows: int, n_cols: int) -> sp.csr_matrix:
    """CSR of the entries, keeping each row's ``k`` most similar (all if ``k`` is None);
    a repeated ``(row, col)`` keeps its last value."""
    rows = np.asarray(rows, np.int64)
    cols = np.asarray(cols, np.int64)
    sims = np.asarray(sims, np.float32)
    if len(rows):
        key = rows * n_cols + cols
        _, last = np.unique(key[::-1], return_index=True)
        keep = len(key) - 1 - last
        rows, cols, sims = rows[keep], cols[keep], sims[keep]
    if k is not None and len(rows):
        order = np.lexsort((cols, -sims, rows))
        rows, cols, sims = rows[order], cols[order], sims[order]
        starts = np.searchsorted(rows, rows, side="left")
        first = (np.arange(len(rows)) - starts) < k
        rows, cols, sims = rows[first], cols[first], sims[first]
    return _csr(rows, cols, sims, n_rows, n_cols)


def rows_from_lists(sims: np.ndarray, idx: np.ndarray, row_ids: np.ndarray, n: int,
                    floor: float = -np.inf) -> sp.csr_matrix:
    """An ``n x n`` CSR holding the KNN lists ``(sims, idx)`` at rows ``row_ids``;
    slots with index -1 or similarity below ``floor`` are skipped."""
    ok = (idx >= 0) & (sims >= floor) & np.isfinite(sims)
    r = np.repeat(np.asarray(row_ids, np.int64), idx.shape[1])[ok.ravel()]
    return topk_rows(r, idx[ok], sims[ok], None, n, n)


def kth_of(g: sp.csr_matrix, k: int) -> np.ndarray:
    """Each row's k-th best similarity, or -inf where the row holds fewer than ``k``
    (then any candidate can enter it)."""
    n = g.shape[0]
    deg = np.diff(g.indptr)
    out = np.full(n, -np.inf, dtype=np.float32)
    full = np.flatnonzero(deg >= k)
    if len(full):
        mins = np.minimum.reduceat(g.data, g.indptr[:-1][full]) if g.nnz else np.empty(0)
        out[full] = mins
    return out


class Overrides:
    """Replacement rows over ``n_total`` slots: rows in ``mask`` come from ``graph``."""

    def __init__(self, n_total: int) -> None:
        self.n_total = n_total
        self.mask = np.zeros(n_total, dtype=bool)
        self.graph = sp.csr_matrix((n_total, n_total), dtype=np.float32)

    def set(self, graph: sp.csr_matrix, rows: np.ndarray) -> None:
        """Take rows ``rows`` of ``graph`` (n_total columns) as replacements."""
        rows = np.unique(np.asarray(rows, np.int64))
        if len(rows) == 0:
            return
        keep = np.zeros(self.n_total, dtype=bool)
        keep[rows] = True
        a, b = self.graph.tocoo(), sp.csr_matrix(graph).tocoo()
        ka, kb = ~keep[a.row], keep[b.row]
        self.graph = _csr(np.r_[a.row[ka], b.row[kb]], np.r_[a.col[ka], b.col[kb]],
                          np.r_[a.data[ka], b.data[kb]], self.n_total, self.n_total)
        self.mask |= keep

    def row_graph(self, stored: sp.csr_matrix | None, rows: np.ndarray) -> sp.csr_matrix:
        """``len(rows) x n_total`` CSR of the current rows ``rows`` (overrides first,
        then the stored catalogue rows, else empty)."""
        rows = np.asarray(rows, np.int64)
        over = self.mask[rows]
        rr, cc, dd = [], [], []
        pos = np.flatnonzero(over)
        if len(pos):
            sub = self.graph[rows[pos]].tocoo()
            rr.append(pos[sub.row])
            cc.append(sub.col)
            dd.append(sub.data)
        if stored is not None:
            pos = np.flatnonzero(~over & (rows < stored.shape[0]))
            if len(pos):
                sub = stored[rows[pos]].tocoo()
                rr.append(pos[sub.row])
                cc.append(sub.col)
                dd.append(sub.data)
        if not rr:
            return sp.csr_matrix((len(rows), self.n_total), dtype=np.float32)
        return _csr(np.concatenate(rr), np.concatenate(cc), np.concatenate(dd),
                    len(rows), self.n_total)


def _csr(r: np.ndarray, c: np.ndarray, d: np.ndarray, n_rows: int, n_cols: int) -> sp.csr_matrix:
    """CSR without summing or dropping anything (entries are unique per (row, col))."""
    order = np.lexsort((c, r))
    r, c, d = r[order], c[order], d[order]
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(r, minlength=n_rows), out=indptr[1:])
    return sp.csr_matrix((d.astype(np.float32), c.astype(np.int64), indptr),
                         shape=(n_rows, n_cols))
