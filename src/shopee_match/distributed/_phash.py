"""Distributed perceptual-hash matches: a shuffle on hash chunks (pigeonhole).

Two hashes within ``r`` bits share at least one of ``r + 1`` bit chunks. Each partition
sends ``(code, global id)`` of every posting with a hash to one bucket per chunk,
chosen by that chunk's value; every bucket then runs the single-machine
:class:`~shopee_match.neighbors.HashMatcher` on its members. Equal hashes always meet in
one bucket (so the ``max_bucket`` placeholder rule sees the global count), and a pair
found through two chunks is merged once at the end. Data moved: 16 bytes a posting and
chunk, then the matched pairs.
"""

from __future__ import annotations

import itertools
import operator
from typing import Any

import numpy as np

from ._io import Part, home_of

__all__ = ["hash_edges"]

_MIX = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing spreads chunk values


def _chunks(n_bits: int, radius: int) -> list[tuple[int, int]]:
    edges = np.linspace(0, n_bits, radius + 2).astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges) if b > a]


def _hash_split(
    part: Part, step: str, radius: int, n_buckets: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Pieces ``(codes, global ids)``, bucket ``c * n_buckets + b`` for chunk ``c``."""
    codes, valid, n_bits = part.embs[step]
    rows = np.flatnonzero(valid)
    codes = codes[rows]
    gids = rows.astype(np.int64) + part.offset
    out = []
    for a, b in _chunks(n_bits, radius):
        key = (codes >> np.uint64(n_bits - b)) & np.uint64((1 << (b - a)) - 1)
        with np.errstate(over="ignore"):
            bucket = ((key * _MIX) >> np.uint64(32)) % np.uint64(n_buckets)
        for j in range(n_buckets):
            sel = bucket == np.uint64(j)
            out.append((codes[sel], gids[sel]))
    return out


def _bucket(
    matcher: Any, n_bits: int, offsets: np.ndarray, *pieces: tuple[np.ndarray, np.ndarray]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Hash matches among one bucket's postings, split by the partition owning the row."""
    n_parts = len(offsets) - 1
    codes = np.concatenate([p[0] for p in pieces]) if pieces else np.empty(0, np.uint64)
    gids = np.concatenate([p[1] for p in pieces]) if pieces else np.empty(0, np.int64)
    empty = np.empty(0, dtype=np.int64)
    if len(codes) < 2:
        return [(empty, empty)] * n_parts
    shifts = np.arange(n_bits - 1, -1, -1, dtype=np.uint64)
    bits = ((codes[:, None] >> shifts) & np.uint64(1)).astype(np.float32)
    vectors = (2.0 * bits - 1.0) / np.float32(np.sqrt(n_bits))
    coo = matcher.candidates(vectors).tocoo()
    keep = coo.data >= matcher.similarity_threshold() - 1e-6
    gi, gj = gids[coo.row[keep]], gids[coo.col[keep]]
    other = gi != gj
    gi, gj = gi[other], gj[other]
    owner = home_of(gi, offsets)
    return [(gi[owner == a] - offsets[a], gj[owner == a]) for a in range(n_parts)]


def hash_edges(
    client: Any, parts: list[Any], offsets: np.ndarray, step: str, matcher: Any,
    n_bits: int = 64,
) -> list[list[Any]]:
    """For each partition, futures of its hash-step edges ``(local rows, global ids)``."""
    matcher._validate()
    radius = int(matcher.max_distance)
    n_parts = len(parts)
    n_buckets = max(1, n_parts)
    n_chunks = len(_chunks(n_bits, radius))
    split = [client.submit(_hash_split, p, step, radius, n_buckets, pure=False) for p in parts]
    buckets = []
    for q in range(n_chunks * n_buckets):
        pieces = [client.submit(operator.getitem, s, q, pure=False) for s in split]
        buckets.append(client.submit(_bucket, matcher, n_bits, offsets, *pieces, pure=False))
    return [
        [client.submit(operator.getitem, b, a, pure=False) for b in buckets]
        for a in range(n_parts)
    ]
