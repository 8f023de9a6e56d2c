"""A Hamming search space of the catalogue's perceptual hashes (multi-index hashing).

Hash candidates are symmetric pairs within a radius, so a fresh hash adds the pair to
both rows; a replaced one leaves the rows it was in. Lookups split each 64-bit code into
``radius + 1`` chunks: two codes within ``radius`` bits agree on at least one chunk
(pigeonhole), so only postings sharing a chunk value are compared.
"""

from __future__ import annotations

import itertools
import threading

import numpy as np
import scipy.sparse as sp

from ..neighbors.hamming import _popcount, pack_bits
from ._rows import Overrides, topk_rows

__all__ = ["HashSpace"]

#: below this many (fresh, catalogue) pairs, hashes are compared pairwise, not looked up
_BRUTE_PAIRS = 20_000_000


class HashSpace:
    """Packed codes of the catalogue, chunk tables, and the symmetric candidate rows."""

    def __init__(self, codes: np.ndarray, valid: np.ndarray, n_bits: int, radius: int,
                 max_bucket: int, rows: sp.csr_matrix | None = None) -> None:
        self.codes = np.asarray(codes, np.uint64)
        self.valid = np.asarray(valid, bool)
        self.n_bits, self.radius, self.max_bucket = int(n_bits), int(radius), int(max_bucket)
        self.rows = rows
        self._tables: list[tuple[int, int, np.ndarray, np.ndarray]] | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_vectors(cls, emb: np.ndarray, radius: int, max_bucket: int,
                     rows: sp.csr_matrix | None = None) -> HashSpace:
        codes, valid = pack_bits(np.asarray(emb))
        return cls(codes, valid, np.asarray(emb).shape[1], radius, max_bucket, rows)

    @property
    def n(self) -> int:
        return len(self.codes)

    def _chunks(self) -> list[tuple[int, int]]:
        edges = np.linspace(0, self.n_bits, self.radius + 2).astype(int)
        return [(int(a), int(b)) for a, b in itertools.pairwise(edges) if b > a]

    def _key(self, codes: np.ndarray, a: int, b: int) -> np.ndarray:
        return (codes >> np.uint64(self.n_bits - b)) & np.uint64((1 << (b - a)) - 1)

    def tables(self) -> list[tuple[int, int, np.ndarray, np.ndarray]]:
        """Per chunk: bit range, sorted chunk values of the valid catalogue codes, and
        the postings in that order."""
        with self._lock:
            if self._tables is None:
                members = np.flatnonzero(self.valid)
                out = []
                for a, b in self._chunks():
                    key = self._key(self.codes[members], a, b)
                    order = np.argsort(key, kind="stable")
                    out.append((a, b, key[order], members[order]))
                self._tables = out
            return self._tables

    def pairs(self, codes: np.ndarray, valid: np.ndarray, slots: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All ``(fresh slot, other slot, cosine)`` within the radius, against the
        catalogue (minus the fresh slots' old codes) and the other fresh codes."""
        n = self.n
        stale = np.zeros(n, dtype=bool)
        stale[slots[slots < n]] = True
        live = np.flatnonzero(valid)
        fr: list[np.ndarray] = []
        fo: list[np.ndarray] = []
        fd: list[np.ndarray] = []
        if n and len(live):
            search = self._brute if len(live) * n <= _BRUTE_PAIRS else self._lookup
            qi, other, d = search(codes, live, stale)
            fr, fo, fd = [slots[qi]], [other], [d]
        if len(live) > 1:  # fresh against fresh
            d = _popcount(codes[live][:, None] ^ codes[live][None, :])
            r, c = np.nonzero((d <= self.radius) & ~np.eye(len(live), dtype=bool))
            fr.append(slots[live[r]])
            fo.append(slots[live[c]])
            fd.append(d[r, c])
        if not fr:
            e = np.empty(0, np.int64)
            return e, e, np.empty(0, np.float32)
        r, c, d = np.concatenate(fr), np.concatenate(fo), np.concatenate(fd)
        # a hash shared by more than max_bucket postings (a placeholder) matches nothing
        pos = np.full(max(n, int(slots.max()) + 1), -1, np.int64)
        pos[slots] = np.arange(len(slots))
        base = np.sort(np.r_[self.codes[self.valid & ~stale], codes[valid]])

        def crowded(which: np.ndarray) -> np.ndarray:
            fresh = pos[which] >= 0
            code = np.where(fresh, codes[np.maximum(pos[which], 0)],
                            self.codes[np.minimum(which, max(n - 1, 0))] if n else 0)
            cnt = np.searchsorted(base, code, "right") - np.searchsorted(base, code, "left")
            return cnt > self.max_bucket

        keep = ~crowded(r) & ~crowded(c)
        return r[keep], c[keep], (1.0 - 2.0 * d[keep] / self.n_bits).astype(np.float32)

    def _brute(self, codes: np.ndarray, live: np.ndarray, stale: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every (fresh, catalogue) pair compared: ``(fresh index, catalogue slot, d)``."""
        cat = np.flatnonzero(self.valid & ~stale)
        out: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        for st in range(0, len(live), 256):
            q = live[st:st + 256]
            d = _popcount(codes[q][:, None] ^ self.codes[cat][None, :])
            r, c = np.nonzero(d <= self.radius)
            out.append((q[r], cat[c], d[r, c]))
        return tuple(np.concatenate([o[j] for o in out]) for j in range(3))  # type: ignore[return-value]

    def _lookup(self, codes: np.ndarray, live: np.ndarray, stale: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The same through the chunk tables (postings sharing a chunk value)."""
        n = self.n
        found_q, found_o = [], []
        for a, b, keys, members in self.tables():
            qk = self._key(codes[live], a, b)
            lo, hi = np.searchsorted(keys, qk, "left"), np.searchsorted(keys, qk, "right")
            cnt = hi - lo
            if cnt.sum() == 0:
                continue
            within = np.arange(int(cnt.sum())) - np.repeat(np.cumsum(cnt) - cnt, cnt)
            found_q.append(np.repeat(live, cnt))
            found_o.append(members[np.repeat(lo, cnt) + within])
        if not found_q:
            e = np.empty(0, np.int64)
            return e, e, e
        key = np.unique(np.concatenate(found_q).astype(np.int64) * n + np.concatenate(found_o))
        qi, other = key // n, key % n
        d = _popcount(codes[qi] ^ self.codes[other])
        ok = (d <= self.radius) & ~stale[other]
        return qi[ok], other[ok], d[ok]

    def plan(self, slots: np.ndarray, vecs: np.ndarray, n_total: int,
             catalogue_rows: bool = True) -> Overrides:
        """Rows of the fresh slots, and (where kept) the catalogue rows they join or leave."""
        slots = np.asarray(slots, np.int64)
        over = Overrides(n_total)
        if not len(slots):
            return over
        codes, valid = pack_bits(np.asarray(vecs))
        r, c, s = self.pairs(codes, valid, slots)
        over.set(topk_rows(r, c, s, None, n_total, n_total), slots)
        if self.rows is None or not catalogue_rows or self.n == 0:
            return over
        n = self.n
        changed = slots[slots < n]
        back = c < n
        old_nb = self.rows[changed].indices if len(changed) else np.empty(0, np.int64)
        touched = np.setdiff1d(np.unique(np.r_[c[back], old_nb]), changed).astype(np.int64)
        if len(touched):
            old = sp.csr_matrix(self.rows[touched]).tocoo()
            orow, ocol, osim = touched[old.row], old.col.astype(np.int64), old.data
            gone = np.isin(ocol, changed)
            g = topk_rows(np.r_[orow[~gone], c[back]], np.r_[ocol[~gone], r[back]],
                          np.r_[osim[~gone], s[back]], None, n_total, n_total)
            over.set(g, touched)
        return over

    def committed(self, slots: np.ndarray, vecs: np.ndarray, over: Overrides) -> HashSpace:
        n_total = over.n_total
        codes, valid = pack_bits(np.asarray(vecs))
        all_codes = np.zeros(n_total, np.uint64)
        all_valid = np.zeros(n_total, bool)
        all_codes[: self.n], all_valid[: self.n] = self.codes, self.valid
        all_codes[slots], all_valid[slots] = codes, valid
        rows = None if self.rows is None else over.row_graph(self.rows, np.arange(n_total))
        return HashSpace(all_codes, all_valid, self.n_bits, self.radius, self.max_bucket, rows)
