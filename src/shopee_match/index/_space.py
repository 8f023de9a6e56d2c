"""A cosine search space of the catalogue: its vectors, the top-k rows, and queries.

``search`` finds the top-k of query vectors against the catalogue in which some slots
hold fresh vectors (new postings appended, or catalogue postings whose vector changed:
a replaced posting, a re-blended row). ``plan`` turns fresh vectors into row overrides:
the fresh slots' own rows and every catalogue row they enter, leave or change, found
from the products of the fresh vectors with the whole catalogue (exact: not only the
catalogue postings the fresh ones find, but every one that would find them).
"""

from __future__ import annotations

import json
import threading
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..neighbors import get_backend
from ._rows import Overrides, kth_of, rows_from_lists, topk_rows

__all__ = ["CosineSpace", "VectorStore"]

#: the sparse backends never return a pair that shares no feature
TINY = float(np.finfo(np.float32).tiny)
_CHUNK = 256


class VectorStore:
    """The catalogue's vectors in one space (dense array or CSR), shared by the spaces
    that search them, with the fitted backend and the transposed CSR cached."""

    def __init__(self, x: Any) -> None:
        self.x = sp.csr_matrix(x, dtype=np.float32) if sp.issparse(x) else np.asarray(x)
        self.sparse = sp.issparse(x)
        self._lock = threading.Lock()
        self._backends: dict[str, Any] = {}
        self._xt: sp.csr_matrix | None = None

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    def rows(self, slots: np.ndarray) -> Any:
        return self.x[np.asarray(slots, np.int64)]

    def backend(self, name: str, options: dict[str, Any]) -> Any:
        key = name + json.dumps(options, sort_keys=True, default=str)
        with self._lock:
            if key not in self._backends:
                x = self.x if self.sparse else np.ascontiguousarray(self.x, dtype=np.float32)
                self._backends[key] = get_backend(name, x, **options).fit(x)
            return self._backends[key]

    def xt(self) -> sp.csr_matrix:
        with self._lock:
            if self._xt is None:
                self._xt = sp.csr_matrix(self.x.T)
            return self._xt

    def products(self, f: Any, start: int, stop: int) -> Any:
        """``f[start:stop] @ X.T``: CSR for a sparse space, an array for a dense one."""
        if self.sparse:
            return sp.csr_matrix(with_width(sp.csr_matrix(f[start:stop]), self.x.shape[1])
                                 @ self.xt())
        return np.asarray(f[start:stop], dtype=np.float32) @ np.asarray(self.x, np.float32).T

    def committed(self, slots: np.ndarray, vecs: Any, n_total: int) -> VectorStore:
        """A new store with ``vecs`` at ``slots`` (replacing or appending)."""
        n = self.n
        perm = np.arange(n_total)
        perm[slots] = n + np.arange(len(slots))
        if self.sparse:
            w = max(self.x.shape[1], vecs.shape[1])
            both = sp.vstack([with_width(self.x, w),
                              with_width(sp.csr_matrix(vecs, dtype=np.float32), w)], format="csr")
        else:
            both = np.concatenate([np.asarray(self.x), np.asarray(vecs, self.x.dtype)])
        return VectorStore(both[perm])


def with_width(x: Any, width: int) -> Any:
    """Sparse rows cut or zero-padded to ``width`` columns (an open vocabulary adds
    columns the catalogue's vectors do not have: they are zero there)."""
    if not sp.issparse(x) or x.shape[1] == width:
        return x
    x = sp.csr_matrix(x)
    if x.shape[1] > width:
        return sp.csr_matrix(x[:, :width])
    return sp.csr_matrix((x.data, x.indices, x.indptr), shape=(x.shape[0], width))


def _dot(q: Any, f: Any, sparse: bool) -> np.ndarray:
    if sparse:
        w = min(q.shape[1], f.shape[1])
        q, f = with_width(sp.csr_matrix(q), w), with_width(sp.csr_matrix(f), w)
        return np.asarray((q @ f.T).toarray(), np.float32)
    return np.asarray(q, np.float32) @ np.asarray(f, np.float32).T


class CosineSpace:
    """Top-``k`` cosine neighbours over a :class:`VectorStore`, with the catalogue rows
    (``rows``, an n x n CSR as batch search builds it) where they are kept."""

    def __init__(self, store: VectorStore, k: int, backend: str = "auto",
                 options: dict[str, Any] | None = None,
                 rows: sp.csr_matrix | None = None, search_floor: float | None = None) -> None:
        self.store = store
        self.search_floor = search_floor  # only where no catalogue rows are kept
        self.k = int(k)
        self.backend_name = backend
        self.options = dict(options or {})
        self.rows = rows
        self._kth: np.ndarray | None = None
        self._rev: sp.csr_matrix | None = None
        self._lock = threading.Lock()

    @property
    def floor(self) -> float:
        low = TINY if self.store.sparse else -np.inf
        return low if self.search_floor is None else max(low, float(self.search_floor))

    def kth(self) -> np.ndarray:
        assert self.rows is not None
        with self._lock:
            if self._kth is None:
                self._kth = kth_of(sp.csr_matrix(self.rows), min(self.k, self.store.n))
            return self._kth

    def rev(self) -> sp.csr_matrix:
        assert self.rows is not None
        with self._lock:
            if self._rev is None:
                self._rev = sp.csr_matrix(self.rows.T)
            return self._rev

    # --- search -----------------------------------------------------------------------
    def search(self, q: Any, slots: np.ndarray, vecs: Any) -> tuple[np.ndarray, np.ndarray]:
        """Top-k ``(sims, idx)`` of each row of ``q`` against the catalogue with
        ``vecs`` at ``slots`` (slots >= n are appended postings)."""
        n, m = self.store.n, q.shape[0]
        slots = np.asarray(slots, np.int64)
        n_total = max(n, int(slots.max()) + 1 if len(slots) else 0)
        k = min(self.k, n_total)
        changed = slots[slots < n]
        parts_s, parts_i = [], []
        fetched = k2 = 0
        if n and m:
            k2 = min(n, k + (k if len(changed) else 0))
            be = self.store.backend(self.backend_name, self.options)
            qc = with_width(q, self.store.x.shape[1]) if self.store.sparse else q
            s, i = be.search(qc, k2, threshold=self.search_floor)
            s, i = np.asarray(s, np.float32).copy(), np.asarray(i, np.int64).copy()
            fetched = (i >= 0).sum(axis=1)
            if len(changed):
                stale = np.isin(i, changed)
                i[stale], s[stale] = -1, -np.inf
            parts_s.append(s)
            parts_i.append(i)
        if len(slots) and m:
            p = _dot(q, vecs, self.store.sparse)
            parts_s.append(p)
            parts_i.append(np.broadcast_to(slots, p.shape).copy())
        if not parts_s:
            return np.full((m, 0), -np.inf, np.float32), np.full((m, 0), -1, np.int64)
        s, i = np.concatenate(parts_s, axis=1), np.concatenate(parts_i, axis=1)
        s[(i < 0) | (s < self.floor)] = -np.inf
        i[~np.isfinite(s)] = -1
        if len(changed) and n:  # rows whose fetched list ran short once stale slots left
            kept = (parts_i[0] >= 0).sum(axis=1)
            short = np.flatnonzero((fetched >= k2) & (kept < k))
            if len(short):
                s[short], i[short] = self._brute(q[short], slots, vecs, changed, s.shape[1])
        return _top(s, i, k)

    def _brute(self, q: Any, slots: np.ndarray, vecs: Any, changed: np.ndarray,
               width: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-``width`` of rows ``q`` against the whole catalogue with fresh slots."""
        out_s = np.full((q.shape[0], width), -np.inf, np.float32)
        out_i = np.full((q.shape[0], width), -1, np.int64)
        fresh = _dot(q, vecs, self.store.sparse)
        for start in range(0, q.shape[0], _CHUNK):
            stop = min(start + _CHUNK, q.shape[0])
            x = self.store.products(q, start, stop)
            full = np.asarray(x.toarray() if sp.issparse(x) else x, np.float32)
            full[:, changed] = -np.inf
            s = np.concatenate([full, fresh[start:stop]], axis=1)
            i = np.broadcast_to(np.r_[np.arange(self.store.n), slots], s.shape).copy()
            s[s < self.floor] = -np.inf
            i[~np.isfinite(s)] = -1
            ts, ti = _top(s, i, min(width, s.shape[1]))
            out_s[start:stop, : ts.shape[1]], out_i[start:stop, : ti.shape[1]] = ts, ti
        return out_s, out_i

    # --- row overrides ------------------------------------------------------------------
    def plan(self, slots: np.ndarray, vecs: Any, n_total: int,
             catalogue_rows: bool = True) -> Overrides:
        """Rows of the fresh ``slots`` and, where catalogue rows are kept and asked for,
        every catalogue row the fresh vectors change."""
        slots = np.asarray(slots, np.int64)
        over = Overrides(n_total)
        if not len(slots):
            return over
        s, i = self.search(vecs, slots, vecs)
        over.set(rows_from_lists(s, i, slots, n_total), slots)
        if self.rows is None or not catalogue_rows or self.store.n == 0:
            return over
        n = self.store.n
        changed = slots[slots < n]
        is_changed = np.zeros(n, dtype=bool)
        is_changed[changed] = True
        kth = self.kth()
        rev = self.rev()
        ins_r, ins_c, ins_s = [], [], []  # entries (catalogue row, fresh slot, sim)
        upd_r, upd_c, upd_s = [], [], []  # new sims of changed slots already in a row
        for start in range(0, len(slots), _CHUNK):
            stop = min(start + _CHUNK, len(slots))
            prod = self.store.products(vecs, start, stop)
            if sp.issparse(prod):
                coo = prod.tocoo()
                r, x, v = coo.row, coo.col, coo.data.astype(np.float32)
            else:
                r, x = np.nonzero(prod > kth[None, :])
                v = prod[r, x]
            ok = (v > kth[x]) & (v >= self.floor) & ~is_changed[x]
            ins_r.append(x[ok])
            ins_c.append(slots[start + r[ok]])
            ins_s.append(v[ok])
            for j in range(start, stop):
                f = slots[j]
                if f >= n:
                    continue
                xs = rev.indices[rev.indptr[f]:rev.indptr[f + 1]]
                xs = xs[~is_changed[xs]]
                if sp.issparse(prod):
                    row = prod[j - start]
                    vals = np.zeros(len(xs), np.float32)
                    pos = np.searchsorted(row.indices, xs) if row.nnz else np.zeros(0, int)
                    if row.nnz:
                        pos = np.clip(pos, 0, row.nnz - 1)
                        hit = row.indices[pos] == xs
                        vals[hit] = row.data[pos[hit]]
                else:
                    vals = prod[j - start, xs]
                upd_r.append(xs)
                upd_c.append(np.full(len(xs), f))
                upd_s.append(vals)
        ur = np.concatenate([np.empty(0, np.int64), *upd_r]).astype(np.int64)
        uc = np.concatenate([np.empty(0, np.int64), *upd_c]).astype(np.int64)
        us = np.concatenate([np.empty(0, np.float32), *upd_s]).astype(np.float32)
        dirty = np.unique(ur[us < kth[ur]])
        touched = np.unique(np.r_[np.concatenate(ins_r), ur]).astype(np.int64)
        touched = touched[~np.isin(touched, dirty)]
        if len(touched):
            old = sp.csr_matrix(self.rows[touched]).tocoo()
            orow, ocol, osim = touched[old.row], old.col.astype(np.int64), old.data
            gone = np.isin(ocol, changed)  # their new sims come from the updates
            keep_u = np.isin(ur, touched) & (us >= self.floor)
            ir, ic, isim = (np.concatenate(a) for a in (ins_r, ins_c, ins_s))
            g = topk_rows(np.r_[orow[~gone], ur[keep_u], ir], np.r_[ocol[~gone], uc[keep_u], ic],
                          np.r_[osim[~gone], us[keep_u], isim], self.k, n_total, n_total)
            over.set(g, touched)
        if len(dirty):
            s, i = self.search(self.store.rows(dirty), slots, vecs)
            over.set(rows_from_lists(s, i, dirty, n_total), dirty)
        return over

    def committed(self, store: VectorStore, over: Overrides) -> CosineSpace:
        """A space over ``store`` whose rows are these rows with ``over`` applied."""
        rows = None
        if self.rows is not None:
            rows = over.row_graph(self.rows, np.arange(over.n_total))
        return CosineSpace(store, self.k, self.backend_name, self.options, rows,
                           self.search_floor)


def _top(s: np.ndarray, i: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    if s.shape[1] > k:
        part = np.argpartition(-s, k - 1, axis=1)[:, :k]
        s, i = np.take_along_axis(s, part, axis=1), np.take_along_axis(i, part, axis=1)
    order = np.argsort(-s, axis=1, kind="stable")
    return np.take_along_axis(s, order, axis=1), np.take_along_axis(i, order, axis=1)
