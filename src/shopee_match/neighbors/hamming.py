"""``HashMatcher``: perceptual-hash matches by exact hash or within a Hamming radius.

Uses hash tables, not dense search: radius 0 groups equal hashes; radius r splits the
64 bits into r + 1 chunks (pigeonhole: two hashes within r share at least one chunk),
looks up each chunk, then verifies the full distance. Cost is near-linear in n.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator

from .._registry import register
from .._validation import check_embeddings, check_scalar
from .graph import add_self, graph_to_sets

__all__ = ["HashMatcher", "pack_bits"]


def pack_bits(emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """±1 hash vectors -> ``(codes, valid)``: one integer per row, and rows that have a hash."""
    emb = np.asarray(emb)
    n_bits = emb.shape[1]
    if n_bits > 64:
        raise ValueError(f"HashMatcher supports hashes of at most 64 bits, got {n_bits}.")
    valid = np.abs(emb).sum(axis=1) > 0
    bits = (emb > 0).astype(np.uint64)
    weights = np.uint64(1) << np.arange(n_bits - 1, -1, -1, dtype=np.uint64)
    codes = (bits * weights).sum(axis=1, dtype=np.uint64)
    return codes, valid


def _popcount(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.uint64)
    return np.unpackbits(x.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1)


@register()
class HashMatcher(BaseEstimator):  # type: ignore[misc]
    """Match postings whose hashes differ in at most ``max_distance`` bits.

    Takes the ±1 rows of :class:`~shopee_match.PhashEmbedder`; all-zero rows (no image)
    match nothing but themselves. ``max_bucket`` caps a chunk bucket's size (a hash shared
    by thousands of postings, such as a blank image, is skipped with radius > 0).

    >>> from shopee_match.image.phash import hashes_to_vectors
    >>> emb = hashes_to_vectors(["ff00ff00ff00ff00", "ff00ff00ff00ff01", "0000000000000000"])
    >>> [m.tolist() for m in HashMatcher(max_distance=1).match(emb)]
    [[0, 1], [0, 1], [2]]
    """

    def __init__(self, max_distance: int = 0, max_bucket: int = 5000) -> None:
        self.max_distance = max_distance
        self.max_bucket = max_bucket

    def _validate(self) -> None:
        check_scalar(self.max_distance, "max_distance", (int, np.integer), min_val=0, max_val=31)
        check_scalar(self.max_bucket, "max_bucket", (int, np.integer), min_val=2)

    def similarity_threshold(self) -> float:
        return 1.0 - self.max_distance / 32.0

    def set_similarity_threshold(self, value: float) -> HashMatcher:
        self.max_distance = int(np.floor((1.0 - value) * 32.0 + 1e-9))
        return self

    def candidates(self, emb: Any, max_distance: int | None = None) -> sp.csr_matrix:
        """Pairs within ``max_distance`` bits, valued by cosine ``1 - d / 32``."""
        self._validate()
        emb = check_embeddings(emb, allow_sparse=False)
        radius = self.max_distance if max_distance is None else max_distance
        codes, valid = pack_bits(emb)
        n = len(codes)
        n_bits = emb.shape[1]
        rows = np.flatnonzero(valid)
        pairs_i: list[np.ndarray] = []
        pairs_j: list[np.ndarray] = []
        n_chunks = radius + 1
        edges = np.linspace(0, n_bits, n_chunks + 1).astype(int)
        for a, b in zip(edges[:-1], edges[1:]):
            if b == a:
                continue
            shift = np.uint64(n_bits - b)
            mask = np.uint64((1 << (b - a)) - 1)
            keys = (codes[rows] >> shift) & mask
            order = np.argsort(keys, kind="stable")
            sk = keys[order]
            starts = np.flatnonzero(np.r_[True, sk[1:] != sk[:-1]])
            sizes = np.diff(np.r_[starts, len(sk)])
            for s, m in zip(starts[sizes > 1], sizes[sizes > 1]):
                if m > self.max_bucket and radius > 0:
                    continue
                members = rows[order[s:s + m]]
                ii, jj = np.meshgrid(members, members, indexing="ij")
                pairs_i.append(ii.ravel())
                pairs_j.append(jj.ravel())
        if pairs_i:
            pi, pj = np.concatenate(pairs_i), np.concatenate(pairs_j)
            keep = pi != pj
            pi, pj = pi[keep], pj[keep]
            dist = _popcount(codes[pi] ^ codes[pj])
            ok = dist <= radius
            pi, pj, dist = pi[ok], pj[ok], dist[ok]
            sims = (1.0 - 2.0 * dist / n_bits).astype(np.float32)
            g = sp.csr_matrix((sims, (pi, pj)), shape=(n, n))
            g.sum_duplicates()
            # duplicates from several shared chunks summed up: restore the similarity
            g.data = np.float32(1.0) - 2.0 * _pair_dist(g, codes) / n_bits
        else:
            g = sp.csr_matrix((n, n), dtype=np.float32)
        return g.astype(np.float32)

    def select(self, cand: sp.csr_matrix, threshold: float | None = None) -> sp.csr_matrix:
        t = self.similarity_threshold() if threshold is None else threshold
        coo = cand.tocoo()
        keep = coo.data >= t - 1e-6
        g = sp.csr_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=cand.shape)
        return add_self(g)

    def match_graph(self, emb: Any) -> sp.csr_matrix:
        return self.select(self.candidates(emb))

    def match(self, emb: Any) -> list[np.ndarray]:
        """For each row, the sorted indices of the rows it matches (itself included)."""
        return graph_to_sets(self.match_graph(emb))


def _pair_dist(g: sp.csr_matrix, codes: np.ndarray) -> np.ndarray:
    coo = g.tocoo()
    d = _popcount(codes[coo.row] ^ codes[coo.col]).astype(np.float32)
    # g is CSR with sorted duplicates summed; tocoo keeps the same order as g.data
    return d
