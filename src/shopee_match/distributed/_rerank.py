"""The pair reranker on Dask: the single-machine block engine, one block per partition.

A pair's features compare it with *both* postings' candidate lists (ranks both ways,
each side's best and k-th similarity, shared neighbours, each side's title) and, in a
stacked model, with both postings' rows of the previous stage's probability graph. So
each partition gathers the rows of its *halo*: every posting paired with one of its own,
whichever side proposed the pair (its own rows' columns, and the postings whose rows
name its own: the transposed graph). In a local index space that keeps the global order
(ties break as on one machine) it builds the engine's
:class:`~shopee_match.rerank.pair_features.PairContext` over those whole rows and
features the pairs of its own rows, ``(i, j)`` for ``i`` its own: the block
:func:`~shopee_match.rerank._blocks.score_blocks` would score for those rows, every pair
once across the partitions, scored, and dropped (:func:`score_block`). A stage's
probabilities ``P(i, j)`` go to ``j``'s owner (a transpose), which makes its own rows of
the symmetric graph ``(P + P.T) / 2`` as one machine does; each further stage fetches the
halo's candidate rows again and the halo's rows of the earlier stages' graphs, rebuilds
its blocks' pair features and appends their graph features. Between stages only the
candidate rows and each stage's graph rows live (a few KB a posting); holding the
features instead cost 67 KB a posting (200k postings: 13 GB spilled, and workers of
4 GB lost to memory). The kept pairs are the
reranker's own selection of its own rows, and ``grow`` (shared-match closure) fetches
the match sets it compares; then self-training adds what the catalogue's code agreements
vouch for (:mod:`._selftrain`, a reduction over the partitions).

What a pair's features read of each posting is computed once, by the posting's owner,
and sent with its rows: each candidate graph's row without its diagonal, with each
entry's rank and the row's best and k-th similarities
(:func:`~shopee_match.rerank.pair_features.row_stats`), likewise each stage's
probability rows, and the title's tokens (from the counting pass). A partition's
contexts are stacked from those rows
(:meth:`~shopee_match.rerank.pair_features.GraphContext.from_stats`,
:meth:`~shopee_match.rerank.title_features.TitleContext.from_tokens`), never recomputed
for its halo: with few partitions the halo is most of the catalogue.

Two facts are catalogue-wide and are given to every partition: whether each modality
proposed any pair (a feature), and the title tokens' document counts (rarity).
Memory per task: one block of own rows, the halo rows it reads
(:mod:`._rerank_blocks`) and its pairs' features.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..neighbors.graph import mean_graph, n_added
from ._candidates import square
from ._exchange import fetch_rows, local_space, transpose_rows
from ._rerank_blocks import block_bounds, block_halo, stack_scored
from ._rerank_tasks import (
    add_block,
    build_block,
    nnz_of,
    pair_count,
    pair_rows,
    proposed,
    row_table,
    score_block,
    stage_rows,
    stage_table,
)
from ._selftrain import self_trained_edges, self_trains

__all__ = ["HOLD_SHARE", "holds_features", "rerank_edges"]

#: pair features are held between stages when they take at most this share of the
#: workers' memory (else each stage rebuilds them)
HOLD_SHARE = 0.25


def _own_rows(g: sp.csr_matrix, space: np.ndarray, own: tuple[int, int],
              n_total: int) -> sp.csr_matrix:
    """Rows of the own postings of a square local graph, columns as global ids."""
    lo, hi = own
    a, b = np.searchsorted(space, [lo, hi])
    rows = sp.csr_matrix(g[a:b])
    return sp.csr_matrix((rows.data, space[rows.indices], rows.indptr),
                         shape=(hi - lo, n_total))


def select_own(pipe: Any, own_proba: sp.csr_matrix, lo: int) -> sp.csr_matrix:
    """The reranker's kept pairs of the own rows (threshold and min-matches fallback;
    ``grow`` is applied across partitions afterwards), columns as global ids."""
    rr = copy.copy(pipe.combiner_)
    rr.grow = None
    own = np.arange(lo, lo + own_proba.shape[0], dtype=np.int64)
    space = local_space(own, own_proba.indices)
    g = rr.select(square(own_proba, own, space))
    return _own_rows(g, space, (lo, lo + len(own)), own_proba.shape[1])


def _cols(rows: sp.csr_matrix) -> np.ndarray:
    return np.unique(rows.indices.astype(np.int64))


def _grown(fetched: dict[str, Any], ids: np.ndarray, lo: int, n_own: int,
           min_share: float, n_total: int) -> sp.csr_matrix:
    """Own rows of one round of :func:`~shopee_match.neighbors.graph.grow` over the
    fetched match sets (every set that shares a posting with an own one), columns as
    global ids."""
    from ..neighbors.graph import grow_rows

    s = sp.csr_matrix(fetched["s"])
    space = local_space(ids, s.indices)
    a, b = np.searchsorted(space, [lo, lo + n_own])
    rows = grow_rows(square(s, ids, space), np.arange(a, b), min_share)
    return sp.csr_matrix((rows.data, space[rows.indices], rows.indptr), shape=(n_own, n_total))


def _edges(rows: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    coo = rows.tocoo()
    return coo.row.astype(np.int64), coo.col.astype(np.int64)


def rerank_edges(client: Any, pipe: Any, rr: Any, cands: dict[str, list[Any]],
                 titles: list[Any] | None, offsets: np.ndarray, cat: Any,
                 stats: dict[str, Any], raw_titles: list[Any] | None = None,
                 block_rows: int | None = None,
                 hold_features: bool | None = None) -> list[Any]:
    """For each partition, a future of its final edges ``(local rows, global ids)``.

    ``pipe``: the scattered pipeline (its combiner is the fitted reranker, sent once per
    worker); ``rr``: that reranker, here (for its settings); ``cands``: each step's
    candidate rows per partition; ``titles``: futures of each partition's title tokens
    (:class:`~shopee_match.rerank.title_features.TitleTokens`);
    ``cat``: a future of the title tokens' catalogue counts; ``raw_titles``: futures of
    each partition's titles, for self-training; ``block_rows``: own rows a rerank task
    features at once (:func:`._rerank_blocks.block_bounds`; ``None``: as many as keep
    its own and halo rows near ``LOCAL_ROWS``); ``hold_features``: keep each block's
    pair features between stages instead of rebuilding them (``None``: when
    :func:`holds_features`).
    """
    if getattr(rr, "adapt_prior", False):
        raise NotImplementedError(
            "Distributed reranking with adapt_prior=True (a catalogue-wide EM) is not "
            "supported; use pipeline.predict on Postings, or set adapt_prior=False.")
    n_parts, n_total = len(offsets) - 1, int(offsets[-1])
    names = sorted(cands)
    lo = [int(o) for o in offsets[:-1]]
    tables = [client.submit(row_table, None if titles is None else titles[a], names, lo[a],
                            *[cands[n][a] for n in names], pure=False)
              for a in range(n_parts)]
    flags = client.gather([client.submit(proposed, t, names, pure=False) for t in tables])
    present = {n: any(f[n] for f in flags) for n in names}
    patterns = [client.submit(pair_rows, t, names, pure=False) for t in tables]
    incoming = transpose_rows(client, patterns, offsets)
    halo_ids = [client.submit(block_halo, tables[a], names, incoming[a], lo[a], 0,
                              int(offsets[a + 1] - offsets[a]), pure=False)
                for a in range(n_parts)]
    halo_n = client.gather([client.submit(len, h, pure=False) for h in halo_ids])
    stats["halo_rows"] = int(sum(halo_n))
    # each partition's pairs featured a block of own rows at a time (bounded memory)
    bounds = [block_bounds(int(offsets[a + 1] - offsets[a]), halo_n[a], block_rows)
              for a in range(n_parts)]
    stats["rerank_blocks"] = sum(len(b) for b in bounds)
    hold = hold_features
    if hold is None:  # a one-stage model has nothing to hold
        hold = int(rr.n_stages) > 1 and holds_features(client, rr, sum(client.gather(
            [client.submit(pair_count, patterns[a], incoming[a], lo[a], pure=False)
             for a in range(n_parts)])))
    stats["rerank_features_held"] = bool(hold)
    parts = [(tables[a], halo_ids[a], incoming[a], lo[a], bounds[a]) for a in range(n_parts)]
    del tables, incoming, patterns
    fixed = (pipe, names, cat, present, n_total)
    locs: list[list[Any]] = []  # held features (hold): each partition's blocks
    earlier: list[list[Any]] = [[] for _ in range(n_parts)]  # own rows of each stage's graph
    n_stages = int(rr.n_stages)
    for stage in range(n_stages):
        if hold:
            locs = _held_locs(client, parts, offsets, fixed, locs, earlier)
            blocks = [[client.submit(stage_rows, pipe, loc, stage, n_total, pure=False)
                       for loc in ls] for ls in locs]
        else:
            blocks = _rebuilt_blocks(client, parts, offsets, fixed, earlier)
        scored = [client.submit(stack_scored, *bs, pure=False) for bs in blocks]
        del blocks
        if stage == 0:
            stats["pairs_scored"] = int(sum(client.gather(
                [client.submit(nnz_of, p, pure=False) for p in scored])))
        back = transpose_rows(client, scored, offsets)  # P(j, i) to i's owner
        proba = [client.submit(mean_graph, p, t, pure=False)
                 for p, t in zip(scored, back)]
        del scored, back
        if stage < n_stages - 1:
            for a, p in enumerate(proba):
                earlier[a].append(client.submit(stage_table, p, lo[a], pure=False))
    del parts, locs, earlier
    kept = [client.submit(select_own, pipe, p, lo[a], pure=False) for a, p in enumerate(proba)]
    if rr.grow is not None:
        kept = _grow(client, kept, offsets, rr, stats)
    edges = [client.submit(_edges, k, pure=False) for k in kept]
    if self_trains(rr):  # after the cut and grow, as on one machine
        edges = self_trained_edges(client, proba, edges, raw_titles, offsets, cat, stats)
    return edges


def holds_features(client: Any, rr: Any, n_pairs: int, share: float = HOLD_SHARE) -> bool:
    """Whether ``n_pairs`` pairs' features (float64, all of ``rr``'s features) take at
    most ``share`` of the workers' memory limits together (of the machine's memory where
    a worker has none): then they are held between stages, else rebuilt each stage."""
    if int(rr.n_stages) < 2:
        return False
    workers = client.scheduler_info()["workers"].values()
    limits = [int(w.get("memory_limit") or 0) for w in workers]
    if not limits or min(limits) <= 0:
        import psutil

        limits = [int(psutil.virtual_memory().total)]
    return n_pairs * len(rr.feature_names_) * 8 <= share * sum(limits)


def _held_locs(client: Any, parts: list[tuple[Any, ...]], offsets: np.ndarray,
               fixed: tuple[Any, ...], locs: list[list[Any]],
               earlier: list[list[Any]]) -> list[list[Any]]:
    """Each partition's blocks with their features for the next stage: built from the
    fetched halo (the first stage), else ``locs`` with the last stage's graph features
    appended."""
    pipe, names, cat, present, _ = fixed
    tables, halo_ids = [q[0] for q in parts], [q[1] for q in parts]
    if not locs:
        halos = fetch_rows(client, tables, offsets, halo_ids)
        return [[client.submit(build_block, pipe, t, halos[a], h, inc, lo, x, y, names, cat,
                               present, pure=False) for x, y in bounds]
                for a, (t, h, inc, lo, bounds) in enumerate(parts)]
    stage = len(earlier[0]) - 1
    fetched = fetch_rows(client, [e[stage] for e in earlier], offsets, halo_ids)
    return [[client.submit(add_block, loc, earlier[a][stage], fetched[a], parts[a][1],
                           parts[a][3], stage, pure=False) for loc in locs[a]]
            for a in range(len(parts))]


def _rebuilt_blocks(client: Any, parts: list[tuple[Any, ...]], offsets: np.ndarray,
                    fixed: tuple[Any, ...], earlier: list[list[Any]]) -> list[list[Any]]:
    """Each partition's blocks' rows of the next stage's probabilities, their features
    rebuilt (:func:`score_block`) from the halo fetched again and every earlier stage's
    graph rows."""
    pipe, names, cat, present, n_total = fixed
    tables, halo_ids = [q[0] for q in parts], [q[1] for q in parts]
    halos = fetch_rows(client, tables, offsets, halo_ids)
    fetched = [fetch_rows(client, [e[t] for e in earlier], offsets, halo_ids)
               for t in range(len(earlier[0]))]
    return [[client.submit(score_block, pipe, t, halos[a], h, inc, lo, x, y, names, cat,
                           present, n_total,
                           *[v for s, f in enumerate(fetched) for v in (earlier[a][s], f[a])],
                           pure=False) for x, y in bounds]
            for a, (t, h, inc, lo, bounds) in enumerate(parts)]


def _grow(client: Any, kept: list[Any], offsets: np.ndarray, rr: Any,
          stats: dict[str, Any]) -> list[Any]:
    """Own rows of ``grow`` (``rr.grow_rounds`` rounds, ``None``: until a round adds
    nothing anywhere): in each round i and j are compared through every match set
    holding a posting of i's set, as on one machine."""
    lo = [int(o) for o in offsets[:-1]]
    rounds, done = rr.grow_rounds, 0
    while rounds is None or done < int(rounds):
        done += 1
        sets = [client.submit(dict, s=k, pure=False) for k in kept]
        holders = [client.submit(dict, s=t, pure=False)
                   for t in transpose_rows(client, kept, offsets)]
        cols = [client.submit(_cols, k, pure=False) for k in kept]
        who = [client.submit(_cols_of, f, pure=False)
               for f in fetch_rows(client, holders, offsets, cols)]
        fetched = fetch_rows(client, sets, offsets, who)
        grown = [client.submit(_grown, f, w, lo[a], int(offsets[a + 1] - offsets[a]),
                               float(rr.grow), int(offsets[-1]), pure=False)
                 for a, (f, w) in enumerate(zip(fetched, who))]
        added = sum(client.gather([client.submit(n_added, k, g, pure=False)
                                   for k, g in zip(kept, grown)]))
        kept = grown
        if added == 0:
            break
    stats["grow_rounds"] = done
    return kept


def _cols_of(table: dict[str, Any]) -> np.ndarray:
    return _cols(sp.csr_matrix(table["s"]))
