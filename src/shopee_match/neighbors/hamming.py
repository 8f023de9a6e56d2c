"""``HashMatcher``: perceptual-hash matches by exact hash or within a Hamming radius.

Uses hash tables, not dense search. Equal hashes are grouped first (``np.unique``), so
the search below runs on distinct hashes only and a hash shared by many postings costs
one entry, not m^2 candidate pairs. Radius r > 0 uses multi-index hashing: the bits are
split into r + 1 chunks (pigeonhole: two hashes within r share at least one chunk), each
chunk's buckets give candidate pairs, verified by popcount in bounded batches, and a
pair is kept only in the first chunk it shares (no duplicates to merge). Matched hash
pairs are finally expanded to posting pairs: memory is the size of the match graph.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

import numpy as np
import scipy.sparse as sp

from .._params import BaseEstimator
from .._registry import register
from .._validation import check_embeddings, check_scalar
from .graph import add_self, graph_to_sets

__all__ = ["HashMatcher", "pack_bits"]

logger = logging.getLogger(__name__)

#: candidate pairs verified per batch (bounds the temporary memory to ~100 MB)
_PAIR_BATCH = 4_000_000
#: cost of a pair proposed by multi-index hashing against one compared directly
_MIH_COST = 4.0


def pack_bits(emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """±1 hash vectors -> ``(codes, valid)``: one integer per row, and rows that have a hash.

    >>> codes, valid = pack_bits(np.array([[1, -1], [0, 0]], dtype=np.float32))
    >>> codes.tolist(), valid.tolist()
    ([2, 0], [True, False])
    """
    emb = np.asarray(emb)
    n_bits = emb.shape[1]
    if n_bits > 64:
        raise ValueError(f"HashMatcher supports hashes of at most 64 bits, got {n_bits}.")
    valid = np.abs(emb).sum(axis=1) > 0
    codes = np.zeros(emb.shape[0], dtype=np.uint64)
    for b in range(n_bits):  # one bit plane at a time: no (n, 64) uint64 temporary
        codes |= (emb[:, b] > 0).astype(np.uint64) << np.uint64(n_bits - 1 - b)
    return codes, valid


def _popcount(x: np.ndarray) -> np.ndarray:
    """Set bits of each uint64 (``np.bitwise_count`` where NumPy has it)."""
    x = np.asarray(x, dtype=np.uint64)
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x).astype(np.int64)
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return ((x * np.uint64(0x0101010101010101)) >> np.uint64(56)).astype(np.int64)


def _cross(
    members: np.ndarray, sa: np.ndarray, na: np.ndarray, sb: np.ndarray, nb: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """All ``(members[sa[p] + u], members[sb[p] + v])`` for ``u < na[p]``, ``v < nb[p]``."""
    tot = na.astype(np.int64) * nb
    if tot.sum() == 0:
        empty = np.empty(0, dtype=members.dtype)
        return empty, empty
    pid = np.repeat(np.arange(len(tot)), tot)
    within = np.arange(int(tot.sum()), dtype=np.int64) - np.repeat(np.cumsum(tot) - tot, tot)
    nbp = nb[pid]
    return members[sa[pid] + within // nbp], members[sb[pid] + within % nbp]


def _batches(sizes: np.ndarray) -> list[slice]:
    """Consecutive runs of buckets whose m^2 pairs sum to about ``_PAIR_BATCH``."""
    cost = np.cumsum(sizes.astype(np.int64) ** 2)
    out, start = [], 0
    while start < len(sizes):
        base = cost[start - 1] if start else 0
        stop = int(np.searchsorted(cost, base + _PAIR_BATCH, side="right"))
        stop = max(stop, start + 1)
        out.append(slice(start, stop))
        start = stop
    return out


def _all_pairs(codes: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs ``(i, j, d)`` with ``i < j`` within ``radius`` bits, by comparing every pair
    (XOR and popcount) in row blocks of about ``_PAIR_BATCH`` pairs."""
    u = len(codes)
    step = max(1, _PAIR_BATCH // max(u, 1))
    out_i, out_j, out_d = [], [], []
    for s in range(0, max(u - 1, 0), step):
        e = min(s + step, u - 1)
        d = _popcount(codes[s:e, None] ^ codes[None, s + 1:])
        ii, jj = np.nonzero(d <= radius)
        i, j = ii + s, jj + s + 1
        up = j > i
        out_i.append(i[up])
        out_j.append(j[up])
        out_d.append(d[ii[up], jj[up]])
    if not out_i:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, empty
    return (np.concatenate(out_i).astype(np.int64), np.concatenate(out_j).astype(np.int64),
            np.concatenate(out_d).astype(np.int64))


def chunk_edges(n_bits: int, radius: int) -> list[tuple[int, int]]:
    """Multi-index hashing's ``radius + 1`` bit ranges: two hashes within ``radius`` bits
    agree on at least one of them."""
    edges = np.linspace(0, n_bits, radius + 2).astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges) if b > a]


def compare_all(proposed: float, n_codes: int) -> bool:
    """Whether comparing every pair of ``n_codes`` distinct hashes is cheaper than the
    ``proposed`` pairs of multi-index hashing's chunk buckets (then no bucket is
    skipped, whatever ``max_bucket``)."""
    return proposed * _MIH_COST >= n_codes**2 / 2.0


def _near_pairs(
    codes: np.ndarray, radius: int, n_bits: int, max_bucket: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs ``(i, j, d)`` with ``i < j`` of distinct ``codes`` within ``radius`` bits.

    Multi-index hashing, unless its chunk buckets would propose about as many pairs as
    there are (a wide radius: chunks of a few bits): then every pair is compared, which
    costs a few vector operations per pair instead of MIH's dozen.
    """
    out_i: list[np.ndarray] = []
    out_j: list[np.ndarray] = []
    out_d: list[np.ndarray] = []
    chunks = chunk_edges(n_bits, radius)
    keys = [
        (codes >> np.uint64(n_bits - b)) & np.uint64((1 << (b - a)) - 1) for a, b in chunks
    ]
    proposed = sum(float((np.unique(k, return_counts=True)[1].astype(np.float64) ** 2).sum())
                   for k in keys) / 2.0
    if compare_all(proposed, len(codes)):
        return _all_pairs(codes, radius)
    skipped = 0
    for c, key in enumerate(keys):
        order = np.argsort(key, kind="stable")
        sk = key[order]
        starts = np.flatnonzero(np.r_[True, sk[1:] != sk[:-1]])
        sizes = np.diff(np.r_[starts, len(sk)])
        big = sizes > max_bucket
        skipped += int(big.sum())
        sel = (sizes > 1) & ~big
        starts, sizes = starts[sel], sizes[sel]
        for part in _batches(sizes):
            st, sz = starts[part], sizes[part]
            i, j = _cross(order, st, sz, st, sz)
            up = i < j
            i, j = i[up], j[up]
            for prev in keys[:c]:  # found in an earlier chunk already: drop
                fresh = prev[i] != prev[j]
                i, j = i[fresh], j[fresh]
            d = _popcount(codes[i] ^ codes[j])
            ok = d <= radius
            out_i.append(i[ok])
            out_j.append(j[ok])
            out_d.append(d[ok])
    if skipped:
        logger.warning(
            "HashMatcher: skipped %d chunk buckets of more than max_bucket=%d distinct "
            "hashes; pairs found only through them are missed (raise max_bucket or lower "
            "max_distance).", skipped, max_bucket,
        )
    if not out_i:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, empty
    return np.concatenate(out_i), np.concatenate(out_j), np.concatenate(out_d)


@register()
class HashMatcher(BaseEstimator):
    """Match postings whose hashes differ in at most ``max_distance`` bits.

    Takes the ±1 rows of :class:`~shopee_match.PhashEmbedder`; all-zero rows (no image)
    match nothing but themselves. ``max_bucket`` bounds memory and time: a hash shared by
    more than ``max_bucket`` postings (a blank or placeholder image) matches nothing by
    hash, and at radius > 0 a chunk bucket of more than ``max_bucket`` distinct hashes is
    skipped, both logged as warnings, unless the chunk buckets would propose about as
    many pairs as comparing every pair of distinct hashes: then every pair is compared
    and nothing is skipped. Memory is the size of the match graph.

    >>> from shopee_match.image.phash import hashes_to_vectors
    >>> emb = hashes_to_vectors(["ff00ff00ff00ff00", "ff00ff00ff00ff01", "0000000000000000"])
    >>> [m.tolist() for m in HashMatcher(max_distance=1).match(emb)]
    [[0, 1], [0, 1], [2]]
    """

    def __init__(self, max_distance: int = 0, max_bucket: int = 5000) -> None:
        self.max_distance = max_distance
        self.max_bucket = max_bucket

    def validate(self) -> HashMatcher:
        """Check the parameters (a ValueError names a bad one); returns ``self``."""
        check_scalar(self.max_distance, "max_distance", (int, np.integer), min_val=0, max_val=31)
        check_scalar(self.max_bucket, "max_bucket", (int, np.integer), min_val=2)
        return self

    def radius(self) -> int:
        """The Hamming radius in use: the tuned ``max_distance_`` once
        :meth:`fit_threshold` set it (``Pipeline.fit`` does), else ``max_distance``.

        >>> HashMatcher(max_distance=2).fit_threshold(1 - 5 / 32).radius()
        5
        """
        fitted = getattr(self, "max_distance_", None)
        return int(self.max_distance if fitted is None else fitted)

    def similarity_threshold(self) -> float:
        """The radius in use as a similarity, ``1 - radius / 32`` (what tuning searches)."""
        return 1.0 - self.radius() / 32.0

    @staticmethod
    def _distance(value: float) -> int:
        return int(np.floor((1.0 - value) * 32.0 + 1e-9))

    def fit_threshold(self, value: float | None) -> HashMatcher:
        """Keep the radius of similarity ``value`` (as tuning picks it) as the fitted
        ``max_distance_`` (and ``threshold_``, its similarity); ``max_distance`` is left as
        given. ``None`` forgets them.

        >>> m = HashMatcher(max_distance=0).fit_threshold(1 - 3 / 32)
        >>> m.max_distance, m.max_distance_
        (0, 3)
        """
        if value is None:
            self.__dict__.pop("max_distance_", None)
            self.__dict__.pop("threshold_", None)
            return self
        d = self._distance(float(value))
        check_scalar(d, "max_distance", (int, np.integer), min_val=0, max_val=31)
        self.max_distance_ = d
        self.threshold_ = 1.0 - d / 32.0
        return self

    def set_params(self, **params: Any) -> HashMatcher:
        """As scikit-learn's; setting ``max_distance`` also forgets a tuned one."""
        super().set_params(**params)
        if "max_distance" in params:
            self.fit_threshold(None)
        return self

    def set_similarity_threshold(self, value: float) -> HashMatcher:
        """Set the ``max_distance`` parameter from a similarity (and forget a tuned one)."""
        self.max_distance = self._distance(value)
        self.fit_threshold(None)
        return self

    def candidates(self, emb: Any, max_distance: int | None = None) -> sp.csr_matrix:
        """Pairs within ``max_distance`` bits, valued by cosine ``1 - 2 d / n_bits``.

        >>> from shopee_match.image.phash import hashes_to_vectors
        >>> emb = hashes_to_vectors(["00000000000000ff", "00000000000000fe"])
        >>> HashMatcher(max_distance=1).candidates(emb).toarray().tolist()
        [[0.0, 0.96875], [0.96875, 0.0]]
        """
        self.validate()
        emb = check_embeddings(emb, allow_sparse=False)
        radius = self.radius() if max_distance is None else int(max_distance)
        codes, valid = pack_bits(emb)
        n, n_bits = emb.shape
        rows = np.flatnonzero(valid)
        # distinct hashes; members[starts[u]:starts[u]+counts[u]] are the postings of hash u
        uniq, inv, counts = np.unique(codes[rows], return_inverse=True, return_counts=True)
        inv = inv.ravel()
        members = rows[np.argsort(inv, kind="stable")]
        starts = np.r_[0, np.cumsum(counts)[:-1]].astype(np.int64)
        placeholder = counts > self.max_bucket
        if placeholder.any():
            logger.warning(
                "HashMatcher: %d hashes are shared by more than max_bucket=%d postings "
                "(placeholder images?); those postings match only themselves by hash.",
                int(placeholder.sum()), self.max_bucket,
            )
            counts = np.where(placeholder, 0, counts)
        # equal hashes: every ordered pair of distinct postings in a group, distance 0
        grp = np.flatnonzero(counts > 1)
        pi, pj = _cross(members, starts[grp], counts[grp], starts[grp], counts[grp])
        keep = pi != pj
        pr, pc, pd = [pi[keep]], [pj[keep]], [np.zeros(int(keep.sum()), dtype=np.int64)]
        if radius > 0 and len(uniq) > 1:
            live = np.flatnonzero(counts > 0)
            ui, uj, ud = _near_pairs(uniq[live], radius, n_bits, int(self.max_bucket))
            ui, uj = live[ui], live[uj]
            both_i, both_j = np.r_[ui, uj], np.r_[uj, ui]
            ci, cj = _cross(members, starts[both_i], counts[both_i], starts[both_j], counts[both_j])
            pr.append(ci)
            pc.append(cj)
            pd.append(np.repeat(np.r_[ud, ud], counts[both_i] * counts[both_j]))
        r, c, d = np.concatenate(pr), np.concatenate(pc), np.concatenate(pd)
        sims = (1.0 - 2.0 * d / n_bits).astype(np.float32)
        g = sp.csr_matrix((sims, (r, c)), shape=(n, n), dtype=np.float32)
        g.sort_indices()
        return g

    def keeps(self, sims: np.ndarray, threshold: float) -> np.ndarray | None:
        """Which candidate similarities ``threshold`` keeps (what :meth:`select` keeps)."""
        return np.asarray(sims >= threshold - 1e-6)

    def select(self, cand: sp.csr_matrix, threshold: float | None = None) -> sp.csr_matrix:
        t = self.similarity_threshold() if threshold is None else threshold
        coo = cand.tocoo()
        keep = self.keeps(coo.data, t)
        g = sp.csr_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=cand.shape)
        return add_self(g)

    def match_graph(self, emb: Any) -> sp.csr_matrix:
        return self.select(self.candidates(emb))

    def match(self, emb: Any) -> list[np.ndarray]:
        """For each row, the sorted indices of the rows it matches (itself included)."""
        return graph_to_sets(self.match_graph(emb))
