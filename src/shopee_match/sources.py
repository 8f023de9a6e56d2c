"""Catalogues pooled from several shops: each shop's pairs judged among its own postings.

A learned matcher reads a pair against its neighbourhoods (ranks, places between the best
and the tenth neighbour, shared neighbours) and against word rarity in the catalogue. Pool
shops of other sizes, languages and product types into one table, as an aggregator does,
and those neighbourhoods change for every shop: on the pooled Shopee + PriceRunner +
Amazon-Google catalogue the shipped model lost 0.06 F1 on Amazon-Google's postings
without a single wrong pair across shops (``benchmarks/RESULTS.md``, "Pooled
catalogues"). With a ``source`` column (the shop of each posting), the pipeline scores
pairs of one shop in that shop alone and pairs across shops in the pooled catalogue, then
makes one cut over all of them: a shop's own matches are those it gets alone, and offers
of one product in several shops still meet.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from ._memory import parse_memory
from .data import Postings

__all__ = ["MIN_SOURCE_POSTINGS", "combine_by_source", "one_per_source"]

#: A source with fewer postings is scored in the pool only: too few neighbourhoods alone
#: (the size below which ``shopee-match match`` does not use the shipped model either).
MIN_SOURCE_POSTINGS = 100


def _scores(pipe: Any, postings: Postings, graphs: dict[str, sp.csr_matrix] | None = None,
            memory: str | int | None = None, block_size: int | None = None,
            ) -> tuple[sp.csr_matrix, bool]:
    """Pair probabilities when the pipeline has a pair reranker (``True``), else its
    final match graph (``False``); pairs scored in blocks within ``memory``."""
    ens = pipe.combiner_
    graphs = pipe.step_graphs(postings) if graphs is None else graphs
    if not getattr(ens, "uses_candidates", False):
        return sp.csr_matrix(ens.combine(graphs)), False
    titles = postings.titles if postings.has_titles else None
    if hasattr(ens, "predict_proba_graph"):
        return sp.csr_matrix(ens.predict_proba_graph(graphs, titles, block_size=block_size,
                                                     memory=memory)), True
    return sp.csr_matrix(ens.combine(graphs, titles=titles, memory=memory,
                                     block_size=block_size)), False


def _within(g: sp.csr_matrix, codes: np.ndarray, alone: np.ndarray) -> sp.csr_matrix:
    """``g`` without its entries inside a source scored alone (``alone[code]``)."""
    c = g.tocoo()
    drop = (codes[c.row] == codes[c.col]) & alone[codes[c.row]]
    return sp.csr_matrix((c.data[~drop], (c.row[~drop], c.col[~drop])), shape=g.shape)


def one_per_source(g: sp.spmatrix, proba: sp.spmatrix, codes: np.ndarray) -> sp.csr_matrix:
    """``g`` with each posting matched to no posting of its own source and at most one of
    each other source: pairs taken greedily by ``proba`` (highest first; ties by
    position), a pair kept while neither side has a partner in the other's source yet
    (pyJedAI's unique mapping, for any number of sources). Symmetric, diagonal included.

    >>> g = sp.csr_matrix(np.ones((3, 3)))
    >>> p = sp.csr_matrix(np.array([[0, .9, .6], [.9, 0, .2], [.6, .2, 0]]))
    >>> one_per_source(g, p, np.array([0, 1, 1])).toarray().astype(int).tolist()
    [[1, 1, 0], [1, 1, 0], [0, 0, 1]]
    """
    n = g.shape[0]
    codes = np.asarray(codes, dtype=np.int64)
    both = sp.triu(sp.csr_matrix(g) + sp.csr_matrix(g).T, 1).tocoo()
    r, c = both.row.astype(np.int64), both.col.astype(np.int64)
    cross = codes[r] != codes[c]
    r, c = r[cross], c[cross]
    if len(r):  # (SciPy answers an empty gather with a sparse matrix)
        keep = _greedy_unique(r, c, np.asarray(sp.csr_matrix(proba)[r, c]).ravel(), codes)
        r, c = r[keep], c[keep]
    out = sp.csr_matrix((np.ones(2 * len(r), np.float32), (np.r_[r, c], np.r_[c, r])),
                        shape=(n, n))
    out.setdiag(1)
    return out


def _greedy_unique(r: np.ndarray, c: np.ndarray, p: np.ndarray,
                   codes: np.ndarray) -> np.ndarray:
    """Which pairs ``(r, c)`` the greedy pass by ``p`` keeps (each posting's slot in each
    other source filled once), in rounds over arrays: a pair ranked first among the
    pairs still open for both of its slots is kept (the greedy pass would reach it
    before any rival), the pairs whose slot it fills drop out; the same pairs as one
    pair at a time, in a few rounds."""
    order = np.lexsort((c, r, -p))
    rank = np.empty(len(r), dtype=np.int64)
    rank[order] = np.arange(len(r))
    width = int(codes.max()) + 1
    slots, slot = np.unique(np.r_[r * width + codes[c], c * width + codes[r]],
                            return_inverse=True)
    sa, sb = slot[:len(r)], slot[len(r):]
    keep = np.zeros(len(r), dtype=bool)
    filled = np.zeros(len(slots), dtype=bool)
    open_ = np.arange(len(r))
    while len(open_):
        first = np.full(len(slots), len(r), dtype=np.int64)
        np.minimum.at(first, sa[open_], rank[open_])
        np.minimum.at(first, sb[open_], rank[open_])
        won = open_[(first[sa[open_]] == rank[open_]) & (first[sb[open_]] == rank[open_])]
        keep[won] = True
        filled[sa[won]] = filled[sb[won]] = True
        open_ = open_[~(filled[sa[open_]] | filled[sb[open_]])]
    return keep


def combine_by_source(pipe: Any, graphs: dict[str, sp.csr_matrix], postings: Postings,
                      min_postings: int = MIN_SOURCE_POSTINGS,
                      exclusive: bool | str = False, *, memory: str | int | None = None,
                      block_size: int | None = None) -> sp.csr_matrix:
    """The match graph of a fitted pipeline over a catalogue with a ``source`` column,
    from its steps' graphs over the whole catalogue (``graphs``).

    Pairs inside a source of at least ``min_postings`` postings are scored with that
    source alone; pairs across sources (and inside smaller sources) in the whole
    catalogue. With a pair reranker the probabilities are merged and cut once (the
    fitted threshold, min-matches fallback and growth); otherwise the match graphs are.
    ``memory`` and ``block_size`` as for :meth:`~shopee_match.Pipeline.predict`.

    ``exclusive=True`` says each source lists a product at most once (shop feeds on a
    price-comparison site): pairs inside a source are then never kept, and only the
    pooled catalogue is scored. PriceRunner is such a catalogue (no two offers of one
    product from one merchant): 0.819 -> 0.832 F1 for the shipped model on its held-out
    third with ``merchant_id`` as the source (``benchmarks/RESULTS.md``, "Pooled
    catalogues"). ``exclusive="one"`` also matches each posting to at most one posting
    of each other source (:func:`one_per_source`, by pair probability): linking two
    catalogues that each list a product once.

    >>> import pandas as pd
    >>> from shopee_match import Pipeline, make_catalog
    >>> cat = make_catalog(n_groups=30, images=False, seed=1)
    >>> cat.df["source"] = ["a", "b"] * (len(cat) // 2) + ["a"] * (len(cat) % 2)
    >>> pipe = Pipeline.default(images=False, rerank=False).fit(cat)
    >>> g = combine_by_source(pipe, pipe.step_graphs(cat), cat, min_postings=10)
    >>> g.shape == (len(cat), len(cat))
    True
    >>> g = combine_by_source(pipe, pipe.step_graphs(cat), cat, exclusive=True)
    >>> src = cat.sources()
    >>> bool((src[g.tocoo().row] == src[g.tocoo().col]).sum() == len(cat))  # itself only
    True
    """
    if exclusive not in (False, True, "one"):
        raise ValueError(f"`exclusive` (exclusive_sources) must be False, True or 'one', "
                         f"got {exclusive!r}.")
    memory = parse_memory(memory)  # None: the default budget, as predict reads it
    codes = postings.sources()
    sizes = np.bincount(codes)
    alone = sizes >= min_postings
    pooled, is_proba = _scores(pipe, postings, graphs, memory, block_size)
    ens = pipe.combiner_
    if len(sizes) < 2:
        return ens.matches(pooled, postings.titles if postings.has_titles else None) \
            if is_proba else pooled
    if exclusive:
        alone = np.ones(len(sizes), dtype=bool)
    parts = [_within(pooled, codes, alone)]
    shops = []
    for s in np.flatnonzero(alone) if not exclusive else []:
        rows = np.flatnonzero(codes == s)
        shop = postings.subset(rows)
        g, _ = _scores(pipe, shop, None, memory, block_size)
        shops.append((rows, shop, g))
        c = g.tocoo()
        parts.append(sp.csr_matrix((c.data, (rows[c.row], rows[c.col])), shape=pooled.shape))
    merged = sp.csr_matrix(sum(parts[1:], parts[0]))
    proba = merged
    if is_proba:
        merged = sp.csr_matrix(ens.select(merged))
        for rows, shop, g in shops if getattr(ens, "self_train", False) else []:
            # each shop teaches its own cut (self-training) from its own pairs
            if shop.has_titles:
                add = ens.self_trained(g, shop.titles, merged[rows][:, rows]).tocoo()
                merged = sp.csr_matrix(merged + sp.csr_matrix(
                    (add.data, (rows[add.row], rows[add.col])), shape=merged.shape))
    if exclusive:  # growth by shared matches may have joined two offers of one shop
        merged = _within(merged, codes, alone)
    if exclusive == "one" and is_proba:
        return one_per_source(merged, proba, codes)
    merged.setdiag(1)
    return merged
