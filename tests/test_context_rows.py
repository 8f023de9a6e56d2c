"""Pair-feature contexts from rows computed elsewhere: each posting's neighbourhood
statistics (:func:`row_stats`) and title tokens (:func:`title_tokens`) computed on parts
of a catalogue, stacked, give the contexts of the whole catalogue, bit for bit (what a
Dask partition sends the partitions that need its postings)."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest
import scipy.sparse as sp

from shopee_match import Pipeline, make_catalog
from shopee_match.rerank.pair_features import (
    KTH,
    GraphContext,
    PairContext,
    RowStats,
    candidate_pairs,
    row_stats,
)
from shopee_match.rerank.title_features import (
    TitleContext,
    stack_tokens,
    title_doc_freq,
    title_tokens,
)

CUTS = (0, 13, 14, 90)  # uneven parts, one of a single row


@pytest.fixture(scope="module")
def case() -> tuple[dict[str, sp.csr_matrix], list[str]]:
    p = make_catalog(n_groups=60, per_group=(1, 6), images=False, seed=3)
    return Pipeline.pretrained().step_graphs(p), list(p.titles)


def _bounds(n: int) -> list[tuple[int, int]]:
    cuts = [c for c in CUTS if c < n] + [n]
    return list(itertools.pairwise(cuts))


def _stacked(g: sp.csr_matrix) -> RowStats:
    """Row statistics of ``g`` computed part by part (each part's rows with global
    columns, as its owner holds them), stacked."""
    parts = [row_stats(g[a:b], first=a) for a, b in _bounds(g.shape[0])]
    return RowStats(sp.vstack([p.graph for p in parts], format="csr"),
                    np.concatenate([p.rank for p in parts]),
                    np.vstack([p.kth for p in parts]))


def _equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return list(a) == list(b) and all(np.array_equal(a[k], b[k], equal_nan=True) for k in b)


def test_graph_context_from_parts_rows_is_the_whole_graphs(case) -> None:
    cands, _ = case
    r, c = candidate_pairs(cands)
    assert len(r) > 500
    assert sum(g.nnz > 0 for g in cands.values()) >= 2
    for name, g in cands.items():
        # with every posting's self-pair stored, left out part by part
        g = sp.csr_matrix(g + sp.identity(g.shape[0], dtype=np.float32, format="csr"))
        got = GraphContext.from_stats(_stacked(g))
        want = GraphContext(g)
        assert _equal(got.features(r, c), want.features(r, c)), name
        assert got.off_g.nnz == want.off_g.nnz == g.nnz - g.shape[0]


def test_pair_context_from_contexts_is_pair_context(case) -> None:
    cands, titles = case
    r, c = candidate_pairs(cands)
    tokens = stack_tokens([title_tokens(titles[a:b]) for a, b in _bounds(len(titles))])
    got = PairContext.from_contexts(
        {n: GraphContext.from_stats(_stacked(g)) for n, g in cands.items()},
        TitleContext.from_tokens(tokens), n_jobs=1).features(r, c)
    want = PairContext(cands, titles, n_jobs=1).features(r, c)
    assert got[1] == want[1] and len(want[1]) > 40
    assert np.array_equal(got[0], want[0], equal_nan=True)


def test_title_tokens_taken_and_counted_as_the_titles(case) -> None:
    _, titles = case
    tokens = title_tokens(titles)
    rows = np.array([40, 3, 3, 77, 0])
    taken = tokens.take(rows)
    alone = title_tokens([titles[i] for i in rows])
    assert taken.tokens.tolist() == alone.tokens.tolist() and len(alone.tokens) > 10
    assert taken.indptr.tolist() == alone.indptr.tolist()
    assert taken.lengths.tolist() == [len(titles[i]) for i in rows]
    assert tokens[5:9].tokens.tolist() == title_tokens(titles[5:9]).tokens.tolist()
    # a rarity feature reads the catalogue's counts: the parts' counts add up to them
    parts = [title_tokens(titles[a:b]).doc_freq() for a, b in _bounds(len(titles))]
    assert sum(parts, Counter()) == title_doc_freq(titles)
    # titles held by a partition with catalogue counts: the context of those titles
    cat = (dict(title_doc_freq(titles)), len(titles))
    a = TitleContext.from_tokens(taken, cat).features(np.array([0, 1, 2]), np.array([3, 4, 1]))
    b = TitleContext([titles[i] for i in rows], cat).features(np.array([0, 1, 2]),
                                                              np.array([3, 4, 1]))
    assert _equal(a, b)


def test_from_stats_refuses_rows_out_of_step(case) -> None:
    cands, _ = case
    st = row_stats(next(iter(cands.values())))
    with pytest.raises(ValueError, match="stack their rows in the same order"):
        GraphContext.from_stats(RowStats(st.graph, st.rank[:-1], st.kth))
    with pytest.raises(ValueError, match="same postings"):
        PairContext.from_contexts({"t": GraphContext(st.graph)},
                                  TitleContext(["a"] * (st.graph.shape[0] + 1)))
    assert st.kth.shape[1] == len(KTH)
