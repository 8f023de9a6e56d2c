"""HashMatcher (multi-index hashing on phash codes) against brute-force Hamming distances."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shopee_match.image.phash import hashes_to_vectors
from shopee_match.neighbors import HashMatcher
from shopee_match.neighbors.hamming import _popcount, pack_bits


def _vectors(codes: np.ndarray, missing: np.ndarray | None = None) -> np.ndarray:
    hexes = [f"{int(c):016x}" for c in codes]
    if missing is not None:
        hexes = [None if m else h for h, m in zip(hexes, missing, strict=True)]
    return hashes_to_vectors(hexes)


def _clustered_codes(rng: np.random.Generator, n: int, n_centers: int, flips: int) -> np.ndarray:
    centers = rng.integers(0, 2**63, size=n_centers, dtype=np.uint64)
    codes = centers[rng.integers(0, n_centers, size=n)]
    for _ in range(flips):  # flip a random bit in a random half of the rows
        bit = rng.integers(0, 64, size=n).astype(np.uint64)
        on = rng.random(n) < 0.5
        codes = np.where(on, codes ^ (np.uint64(1) << bit), codes)
    return codes


def _brute_graph(codes: np.ndarray, valid: np.ndarray, radius: int) -> dict:
    n = len(codes)
    out = {}
    for i in range(n):
        if not valid[i]:
            continue
        d = _popcount(codes ^ codes[i])
        for j in np.flatnonzero((d <= radius) & valid):
            if j != i:
                out[(i, int(j))] = 1.0 - 2.0 * d[j] / 64
    return out


def _as_dict(g) -> dict:
    coo = g.tocoo()
    return {(int(r), int(c)): float(v) for r, c, v in zip(coo.row, coo.col, coo.data, strict=True)}


@pytest.mark.parametrize("radius", [0, 1, 2, 3, 5, 8])
def test_candidates_equal_brute_force(radius):
    rng = np.random.default_rng(radius)
    codes = _clustered_codes(rng, 400, 40, 4)
    missing = rng.random(400) < 0.05
    emb = _vectors(codes, missing)
    got = _as_dict(HashMatcher(max_distance=radius).candidates(emb))
    want = _brute_graph(codes, ~missing, radius)
    assert got.keys() == want.keys()
    for key, v in want.items():
        assert got[key] == pytest.approx(v)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 120), radius=st.integers(0, 6), centers=st.integers(1, 10),
       flips=st.integers(0, 6), seed=st.integers(0, 2**16))
def test_candidates_random(n, radius, centers, flips, seed):
    rng = np.random.default_rng(seed)
    codes = _clustered_codes(rng, n, centers, flips)
    emb = _vectors(codes) if n else np.zeros((0, 64), np.float32)
    g = HashMatcher(max_distance=radius).candidates(emb)
    assert g.shape == (n, n)
    assert _as_dict(g).keys() == _brute_graph(codes, np.ones(n, bool), radius).keys()


def test_match_sets_and_missing_hashes():
    emb = hashes_to_vectors(["ff00ff00ff00ff00", "ff00ff00ff00ff01", None, "0000000000000000",
                             "0000000000000000", None])
    sets = [s.tolist() for s in HashMatcher(max_distance=1).match(emb)]
    assert sets == [[0, 1], [0, 1], [2], [3, 4], [3, 4], [5]]
    sets = [s.tolist() for s in HashMatcher(max_distance=0).match(emb)]
    assert sets == [[0], [1], [2], [3, 4], [3, 4], [5]]


def test_big_identical_bucket_is_built_without_m_squared_temporaries():
    # 3000 postings share one hash: the graph itself has m(m-1) pairs, nothing more
    m = 3000
    codes = np.r_[np.full(m, 0x0123456789ABCDEF, dtype=np.uint64), np.uint64(0x0123456789ABCDEE)]
    emb = _vectors(codes)
    g0 = HashMatcher(max_distance=0).candidates(emb)
    assert g0.nnz == m * (m - 1)
    g1 = HashMatcher(max_distance=1).candidates(emb)
    assert g1.nnz == m * (m - 1) + 2 * m  # plus the one near hash, both directions
    assert g1[m, 0] == pytest.approx(1 - 2 / 64)


def test_placeholder_hash_over_max_bucket_matches_nothing(caplog):
    codes = np.r_[np.zeros(30, dtype=np.uint64), np.uint64(5), np.uint64(5)]
    emb = _vectors(codes)
    with caplog.at_level(logging.WARNING, logger="shopee_match.neighbors.hamming"):
        sets = HashMatcher(max_distance=2, max_bucket=10).match(emb)
    assert "placeholder" in caplog.text
    assert all(s.tolist() == [i] for i, s in enumerate(sets[:30]))
    assert sets[30].tolist() == [30, 31]


def test_pack_bits_and_popcount():
    emb = hashes_to_vectors(["8000000000000001", None])
    codes, valid = pack_bits(emb)
    assert codes.tolist() == [0x8000000000000001, 0] and valid.tolist() == [True, False]
    x = np.array([0, 1, 2**64 - 1, 0xF0F0], dtype=np.uint64)
    assert _popcount(x).tolist() == [0, 1, 64, 8]


def test_threshold_roundtrip_and_select():
    m = HashMatcher(max_distance=3)
    assert m.similarity_threshold() == pytest.approx(1 - 3 / 32)
    assert m.set_similarity_threshold(1 - 5 / 32).max_distance == 5
    emb = hashes_to_vectors(["00000000000000ff", "00000000000000fe", "00000000000000f0"])
    cand = HashMatcher(max_distance=4).candidates(emb)
    sel = HashMatcher(max_distance=1).select(cand)
    assert sel[0, 1] > 0 and sel[0, 2] == 0 and sel[2, 2] == 1


def test_validation():
    with pytest.raises(ValueError, match="max_distance"):
        HashMatcher(max_distance=-1).candidates(np.zeros((2, 64), np.float32))
    with pytest.raises(ValueError, match="at most 64 bits"):
        pack_bits(np.ones((2, 65), np.float32))
