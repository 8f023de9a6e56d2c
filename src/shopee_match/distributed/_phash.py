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

import operator
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..neighbors.hamming import _batches, _cross, _popcount, chunk_edges, compare_all
from ._io import Part, home_of
from ._route import apply_pieces, route

__all__ = ["hash_candidates", "hash_edges"]

_MIX = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing spreads chunk values
#: most distinct hashes whose every pair one task compares (about 2e10 comparisons);
#: beyond, the chunk buckets share the comparisons among tasks
ONE_TASK_MAX = 200_000


def _hash_split(
    part: Part, step: str, radius: int, n_buckets: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Pieces ``(codes, global ids)``, bucket ``c * n_buckets + b`` for chunk ``c``."""
    codes, valid, n_bits = part.embs[step]
    rows = np.flatnonzero(valid)
    codes = codes[rows]
    gids = rows.astype(np.int64) + part.offset
    out = []
    for chunk in chunk_edges(n_bits, radius):
        key = _chunk_key(codes, n_bits, chunk)
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
) -> list[Any]:
    """For each partition, a future of its hash-step edges: a list of ``(local rows,
    global ids)``, one per bucket."""
    matcher.validate()
    radius = matcher.radius()
    n_parts = len(parts)
    n_buckets = max(1, n_parts)
    n_chunks = len(chunk_edges(n_bits, radius))
    split = [client.submit(_hash_split, p, step, radius, n_buckets, pure=False) for p in parts]
    buckets = [apply_pieces(client, h, _bucket, matcher, n_bits, offsets)
               for h in route(client, split, n_chunks * n_buckets)]
    return [apply_pieces(client, h, _listed) for h in route(client, buckets, n_parts)]


def _listed(*pieces: Any) -> list[Any]:
    return list(pieces)


# --- candidates at a radius, as HashMatcher.candidates finds them -----------------------
def _codes(part: Part, step: str) -> tuple[np.ndarray, np.ndarray, int]:
    return part.embs[step]


def _every_pair(matcher: Any, radius: int, offsets: np.ndarray,
                *codes: tuple[np.ndarray, np.ndarray, int]) -> list[sp.csr_matrix]:
    """Each partition's rows of ``matcher.candidates(emb, max_distance=radius)`` over
    every posting's hash: the single-machine call itself, where it compares every pair
    of distinct hashes (then its cost is one machine's; the chunk buckets would compare
    each pair once per chunk)."""
    n_bits = int(codes[0][2])
    code = np.concatenate([c[0] for c in codes])
    valid = np.concatenate([c[1] for c in codes])
    emb = np.zeros((len(code), n_bits), dtype=np.float32)
    one = np.float32(1.0 / np.sqrt(n_bits))
    for b in range(n_bits):  # the ±1/sqrt(n_bits) vectors pack_bits reads back
        bit = (code >> np.uint64(n_bits - 1 - b)) & np.uint64(1)
        emb[:, b] = np.where(bit == 1, one, -one)
    emb[~valid] = 0.0
    g = sp.csr_matrix(matcher.candidates(emb, max_distance=radius))
    return [g[int(offsets[a]):int(offsets[a + 1])] for a in range(len(offsets) - 1)]


def _live_codes(matcher: Any, pieces: tuple[tuple[np.ndarray, np.ndarray], ...]
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(distinct hashes, their postings grouped, group starts, group sizes)`` of a
    bucket; a hash of more than ``max_bucket`` postings (a placeholder) has size 0."""
    codes = np.concatenate([p[0] for p in pieces]) if pieces else np.empty(0, np.uint64)
    gids = np.concatenate([p[1] for p in pieces]) if pieces else np.empty(0, np.int64)
    uniq, inv, counts = np.unique(codes, return_inverse=True, return_counts=True)
    members = gids[np.argsort(inv.ravel(), kind="stable")]
    starts = np.r_[0, np.cumsum(counts)[:-1]].astype(np.int64)
    return uniq, members, starts, np.where(counts > int(matcher.max_bucket), 0, counts)


def _chunk_key(codes: np.ndarray, n_bits: int, chunk: tuple[int, int]) -> np.ndarray:
    a, b = chunk
    return (codes >> np.uint64(n_bits - b)) & np.uint64((1 << (b - a)) - 1)


def _bucket_load(matcher: Any, chunk: int, radius: int, n_bits: int,
                 *pieces: tuple[np.ndarray, np.ndarray]) -> tuple[float, int]:
    """A bucket's share of what decides between multi-index hashing and comparing every
    pair: the pairs its chunk values propose, and (chunk 0) its distinct hashes."""
    uniq, _, _, counts = _live_codes(matcher, pieces)
    key = _chunk_key(uniq[counts > 0], n_bits, chunk_edges(n_bits, radius)[chunk])
    sizes = np.unique(key, return_counts=True)[1].astype(np.float64)
    return float((sizes**2).sum()) / 2.0, len(key) if chunk == 0 else 0


def _chunk_bucket(
    matcher: Any, chunk: int, radius: int, n_bits: int, offsets: np.ndarray,
    every_pair: bool, *pieces: tuple[np.ndarray, np.ndarray],
) -> list[sp.csr_matrix]:
    """Candidate pairs found through chunk ``chunk`` in one bucket (of
    :func:`_hash_split`: every posting with a given chunk value meets the others there), with the rules of
    :meth:`HashMatcher.candidates`: a hash shared by more than ``max_bucket`` postings
    matches nothing; equal hashes pair up (chunk 0 only, so once); distinct hashes pair
    up in a chunk bucket of at most ``max_bucket`` distinct hashes, within ``radius``
    bits, unless they share an earlier chunk (that chunk found or skipped them).
    ``every_pair``: no chunk bucket is skipped (one machine compares every pair).
    Returns, per partition, its rows ``(n_p x N)`` of the pairs found here."""
    n_parts, n_total = len(offsets) - 1, int(offsets[-1])
    uniq, members, starts, counts = _live_codes(matcher, pieces)
    pr, pc, pd = [], [], []
    if chunk == 0:
        grp = np.flatnonzero(counts > 1)
        i, j = _cross(members, starts[grp], counts[grp], starts[grp], counts[grp])
        keep = i != j
        pr.append(i[keep])
        pc.append(j[keep])
        pd.append(np.zeros(int(keep.sum()), np.int64))
    live = np.flatnonzero(counts > 0)
    chunks = chunk_edges(n_bits, radius)
    keys = [_chunk_key(uniq[live], n_bits, ch) for ch in chunks[:chunk + 1]]
    order = np.argsort(keys[chunk], kind="stable")
    sk = keys[chunk][order]
    st = np.flatnonzero(np.r_[True, sk[1:] != sk[:-1]]) if len(sk) else np.empty(0, np.int64)
    sz = np.diff(np.r_[st, len(sk)])
    sel = (sz > 1) & ((sz <= int(matcher.max_bucket)) | every_pair)
    st, sz = st[sel], sz[sel]
    for part in _batches(sz):
        ui, uj = _cross(order, st[part], sz[part], st[part], sz[part])
        up = ui < uj
        ui, uj = ui[up], uj[up]
        for prev in keys[:chunk]:
            fresh = prev[ui] != prev[uj]
            ui, uj = ui[fresh], uj[fresh]
        d = _popcount(uniq[live][ui] ^ uniq[live][uj])
        ok = d <= radius
        ui, uj, d = live[ui[ok]], live[uj[ok]], d[ok]
        both_i, both_j = np.r_[ui, uj], np.r_[uj, ui]
        ci, cj = _cross(members, starts[both_i], counts[both_i], starts[both_j], counts[both_j])
        pr.append(ci)
        pc.append(cj)
        pd.append(np.repeat(np.r_[d, d], counts[both_i] * counts[both_j]))
    r = np.concatenate(pr) if pr else np.empty(0, np.int64)
    c = np.concatenate(pc) if pc else np.empty(0, np.int64)
    sims = (1.0 - 2.0 * (np.concatenate(pd) if pd else np.empty(0)) / n_bits).astype(np.float32)
    owner = home_of(r, offsets)
    out = []
    for a in range(n_parts):
        m = owner == a
        out.append(sp.csr_matrix((sims[m], (r[m] - offsets[a], c[m])),
                                 shape=(int(offsets[a + 1] - offsets[a]), n_total)))
    return out


def _add_rows(*graphs: sp.csr_matrix) -> sp.csr_matrix:
    g = graphs[0]
    for h in graphs[1:]:
        g = g + h
    g = sp.csr_matrix(g, dtype=np.float32)
    g.sort_indices()
    return g


def hash_candidates(
    client: Any, parts: list[Any], offsets: np.ndarray, step: str, matcher: Any,
    radius: int, n_bits: int = 64, one_task_max: int = ONE_TASK_MAX,
) -> list[Any]:
    """For each partition, a future of its rows ``(n_p x N)`` of the candidate graph
    that ``matcher.candidates(emb, max_distance=radius)`` gives on one machine: a
    shuffle on chunk values, each chunk bucket searched once, in its own bucket; or,
    where one machine compares every pair of distinct hashes and there are at most
    ``one_task_max`` of them, that call itself in one task (each pair compared once, not
    once per chunk bucket)."""
    matcher.validate()
    n_parts = len(parts)
    n_buckets = max(1, n_parts)
    n_chunks = len(chunk_edges(n_bits, radius))
    split = [client.submit(_hash_split, p, step, radius, n_buckets, pure=False)
             for p in parts]
    pieces = route(client, split, n_chunks * n_buckets)
    loads = client.gather([
        apply_pieces(client, h, _bucket_load, matcher, q // n_buckets, radius, n_bits)
        for q, h in enumerate(pieces)])
    n_codes = sum(u for _, u in loads)
    every_pair = n_codes > 1 and compare_all(sum(x for x, _ in loads), n_codes)
    if every_pair and n_codes <= one_task_max:  # one machine compares every pair: so does
        # one task, on 8 bytes a posting
        codes = [client.submit(_codes, p, step, pure=False) for p in parts]
        whole = client.submit(_every_pair, matcher, radius, offsets, *codes, pure=False)
        return [client.submit(operator.getitem, whole, a, pure=False) for a in range(n_parts)]
    buckets = [apply_pieces(client, h, _chunk_bucket, matcher, q // n_buckets, radius, n_bits,
                            offsets, every_pair) for q, h in enumerate(pieces)]
    return [apply_pieces(client, h, _add_rows) for h in route(client, buckets, n_parts)]
