"""IVF candidates of a reranked pipeline: the probes chosen from a label-free recall
target, and IVF equal to exact search when every posting joins every cell."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

pytest.importorskip("distributed")

from shopee_match import NeighborMatcher, Postings, TfidfEmbedder
from shopee_match.datasets import make_titles
from shopee_match.distributed._io import Part
from shopee_match.distributed._ivf import ivf_edges
from shopee_match.distributed._search import cut_topk, exact_topk

pytestmark = pytest.mark.dask

K = 20


@pytest.fixture(scope="module")
def rows():
    """TF-IDF rows of ~2,100 generated postings."""
    p = Postings(make_titles(600, seed=11))
    return TfidfEmbedder().fit(p).embed(p)


@pytest.fixture(scope="module")
def parts(client, rows):
    bounds = np.linspace(0, rows.shape[0], 4).astype(int)
    futs = [client.scatter(Part(ids=np.arange(lo, hi), offset=int(lo), embs={"t": rows[lo:hi]}))
            for lo, hi in itertools.pairwise(bounds)]
    return futs, bounds.astype(np.int64)


@pytest.fixture(scope="module")
def exact(client, parts):
    futs, _ = parts
    tops = client.gather(exact_topk(client, futs, "t", NeighborMatcher(k=K), candidates=True))
    # the k-th and (k+1)-th similarities of each row, to tell a tie at the cut
    return [(*cut_topk(t, K)[:2], t[0][:, K]) for t in tops]


def _ivf(client, parts, **kw):
    futs, offsets = parts
    base = {"n_cells": None, "n_probe": None, "cell_size": 120, "dim": 256,
            "sample_size": 50_000, "seed": 0}
    edges, stats = ivf_edges(client, futs, offsets, "t", NeighborMatcher(k=K),
                             candidates=True, **{**base, **kw})
    stats.pop("split")
    return client.gather(edges), stats


def _recall(exact, ivf, offsets) -> float:
    """Share of each row's exact top-k (self and pairs tied at the k-th place left out)
    found in its IVF top-k."""
    found = total = 0
    for a, ((es, ei, _), (_, ii, _)) in enumerate(zip(exact, ivf)):
        self_ids = np.arange(offsets[a], offsets[a + 1])[:, None]
        want = (ei >= 0) & (ei != self_ids) & (es > es[:, -1:])
        hit = (ei[:, :, None] == ii[:, None, :]).any(axis=2)
        found += int((want & hit).sum())
        total += int(want.sum())
    return found / total


def test_probes_chosen_from_a_recall_target_reach_it(client, parts, exact):
    """The fewest probes whose sampled recall reaches the target (tried doubling, then
    bisected); the recall of the whole search then reaches it too, and the estimate is
    close to it (it is exact on the sample: a neighbour found is one sharing a cell)."""
    _, offsets = parts
    one, _ = _ivf(client, parts, n_probe=1)
    low = _recall(exact, one, offsets)
    assert low < 0.95  # small cells: one probe misses neighbours
    got, stats = _ivf(client, parts, recall=0.98, probe_sample=400)
    assert stats["recall_target"] == 0.98 and stats["recall_target_met"] is True
    tried = stats["probes_tried"]
    chosen = stats["n_probe"]
    assert chosen > 1 and tried[chosen] == stats["recall_estimate"] >= 0.98
    # the fewest: one probe fewer was tried and missed the target, as did every fewer tried
    assert tried[chosen - 1] < 0.98
    assert all(r < 0.98 for p, r in tried.items() if p < chosen)
    assert all(r >= 0.98 for p, r in tried.items() if p > chosen)
    actual = _recall(exact, got, offsets)
    assert actual >= 0.97 and actual > low
    assert abs(actual - stats["recall_estimate"]) < 0.02


def test_a_target_out_of_reach_uses_the_most_probes_and_says_so(client, parts, caplog):
    with caplog.at_level("INFO", logger="shopee_match.distributed._ivf"):
        _, stats = _ivf(client, parts, recall=0.999, max_probe=2, probe_sample=100)
    assert stats["n_probe"] == 2 and sorted(stats["probes_tried"]) == [1, 2]
    assert stats["recall_target_met"] is False
    assert "IVF t: recall" in caplog.text and "below the target" in caplog.text


def test_every_posting_in_every_cell_is_exact_search(client, parts, exact):
    """Four cells, four probes: every pair shares a cell, so the IVF top-k is the exact
    top-k (rows with a tie at the k-th place may keep another of the equals)."""
    got, stats = _ivf(client, parts, n_cells=4, n_probe=4)
    assert stats["n_cells"] == 4
    for (es, ei, nxt), (gs, gi, _) in zip(exact, got):
        np.testing.assert_allclose(gs, es, rtol=1e-5)  # the same similarities, in order
        untied = nxt < es[:, -1] - 1e-5
        assert untied.mean() > 0.5
        assert all(set(a) == set(b) for a, b in zip(ei[untied], gi[untied]))


def test_needs_probes_or_a_target(client, parts):
    with pytest.raises(ValueError, match="n_probe"):
        _ivf(client, parts)
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match=r"recall target must be in \(0, 1\], got"):
            _ivf(client, parts, recall=bad)
