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
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..neighbors.graph import mean_graph, n_added
from ._candidates import square
from ._exchange import fetch_rows, local_space, transpose_rows
from ._rerank_blocks import block_bounds, block_halo, block_view, n_rows, stack_scored
from ._selftrain import self_trained_edges, self_trains

__all__ = ["Local", "rerank_edges"]


@dataclass
class Local:
    """A partition's block: the features of its own rows' pairs, in a local index space."""

    space: np.ndarray  # sorted global ids; local id = position
    own: tuple[int, int]  # the partition's own global ids [lo, hi)
    rows: np.ndarray  # sorted global ids whose rows are held (own and halo)
    r: np.ndarray  # pairs (i, j) of own rows i, local ids
    c: np.ndarray
    x: np.ndarray  # their features: the pair features, then each earlier stage's


def _with_stats(out: dict[str, Any], name: str, g: sp.spmatrix, lo: int) -> dict[str, Any]:
    """``out`` with the rows ``g`` (first global id ``lo``) as a context reads them:
    ``name`` the rows without their diagonal, ``name:rank`` each entry's rank (a graph of
    the same pattern, so rows taken and stacked stay aligned), ``name:kth`` the rows'
    best and k-th similarities."""
    from ..rerank.pair_features import row_stats

    st = row_stats(g, lo)
    out[name] = st.graph
    out[f"{name}:rank"] = sp.csr_matrix((st.rank, st.graph.indices, st.graph.indptr),
                                        shape=st.graph.shape)
    out[f"{name}:kth"] = st.kth
    return out


def _table(tokens: Any, names: list[str], lo: int, *graphs: sp.csr_matrix) -> dict[str, Any]:
    """A partition's rows as the others fetch them: each candidate graph's with its
    row statistics (:func:`_with_stats`), and its titles' tokens."""
    out: dict[str, Any] = {}
    for n, g in zip(names, graphs):
        _with_stats(out, n, g, lo)
    if tokens is not None:
        out["_tokens"] = tokens
    return out


def _pattern(table: dict[str, Any], names: list[str]) -> sp.csr_matrix:
    g = sum((sp.csr_matrix(table[n], dtype=np.float32) for n in names[1:]),
            sp.csr_matrix(table[names[0]], dtype=np.float32))
    g = sp.csr_matrix(g)
    g.data[:] = 1.0
    return g


def _present(table: dict[str, Any], names: list[str]) -> dict[str, bool]:
    return {n: bool(table[n].nnz) for n in names}  # rows without their diagonal


def _ordered(own: Any, halo: Any, lo: int, halo_ids: np.ndarray) -> Any:
    """Own and halo rows stacked in global order (own ids are contiguous)."""
    cut = int(np.searchsorted(halo_ids, lo))
    if sp.issparse(own):
        return sp.vstack([halo[:cut], own, halo[cut:]], format="csr")
    if hasattr(own, "stack"):  # TitleTokens
        return own.stack([halo[:cut], own, halo[cut:]])
    return np.concatenate([halo[:cut], own, halo[cut:]])


def _context(stacked: dict[str, Any], name: str, rows: np.ndarray, space: np.ndarray) -> Any:
    """The :class:`~shopee_match.rerank.pair_features.GraphContext` of one graph over the
    local ``space``, from the stacked rows of ``rows`` and their statistics."""
    from ..rerank.pair_features import KTH, GraphContext, RowStats

    g, rank = stacked[name], stacked[f"{name}:rank"]
    if rank.nnz != g.nnz:
        raise RuntimeError(f"{name}: rows and their ranks are out of step "
                           f"({g.nnz} entries, {rank.nnz} ranks).")
    kth = np.full((len(space), len(KTH)), np.nan)
    kth[np.searchsorted(space, rows)] = stacked[f"{name}:kth"]
    # square() keeps each row's entries in order: the ranks stay aligned
    return GraphContext.from_stats(RowStats(square(g, rows, space), rank.data, kth))


def _local_tokens(held: Any, rows: np.ndarray, space: np.ndarray) -> Any:
    """The held titles' tokens over the local ``space`` (a posting named only as a halo
    row's column is never featured: no tokens, length 0)."""
    from ..rerank.title_features import TitleTokens

    counts = np.zeros(len(space), dtype=np.int64)
    lengths = np.zeros(len(space))
    at = np.searchsorted(space, rows)
    counts[at] = np.diff(held.indptr)
    lengths[at] = held.lengths
    return TitleTokens(held.tokens, np.r_[0, np.cumsum(counts)].astype(np.int64), lengths)


def build_local(pipe: Any, table: dict[str, Any], halo: dict[str, Any], halo_ids: np.ndarray,
                lo: int, names: list[str], cat: Any, present: dict[str, bool]) -> Local:
    """A partition's :class:`Local` block: its own rows' pairs and their pair features,
    from a :class:`~shopee_match.rerank.pair_features.PairContext` of its own and halo
    rows (whole rows, with the statistics their owners computed: the single-machine
    values), built once and dropped."""
    from ..rerank.pair_features import PairContext, pair_pattern
    from ..rerank.title_features import TitleContext

    rr = pipe.combiner_
    n_own = table[names[0]].shape[0]
    rows = np.union1d(np.arange(lo, lo + n_own, dtype=np.int64), halo_ids)
    stacked = {k: _ordered(v, halo[k], lo, halo_ids) for k, v in table.items()}
    space = local_space(rows, *[stacked[n].indices for n in names])
    graphs = {n: _context(stacked, n, rows, space) for n in names}
    titles = None
    if getattr(rr, "uses_titles_", False) and rr.use_titles:
        if "_tokens" not in stacked:
            raise ValueError("This PairReranker was fitted with titles; the postings "
                             "have none.")
        titles = TitleContext.from_tokens(_local_tokens(stacked["_tokens"], rows, space), cat)
    del stacked
    # own rows of the pair pattern (both directions: the halo's rows that name them too)
    pattern = pair_pattern({n: ctx.off_g for n, ctx in graphs.items()})
    a, b = (int(v) for v in np.searchsorted(space, [lo, lo + n_own]))
    r = np.repeat(np.arange(a, b, dtype=np.int64), np.diff(pattern.indptr[a:b + 1]))
    c = pattern.indices[pattern.indptr[a]:pattern.indptr[b]].astype(np.int64)
    ctx = PairContext.from_contexts(graphs, titles, n_jobs=1)  # one task, one thread
    keep = rr.keep_pairs(ctx.graphs, r, c)  # the prefilter, as on one machine (whole rows)
    if keep is not None:
        r, c = r[keep], c[keep]
    x, feat_names = ctx.features(r, c)
    for n, flag in present.items():  # catalogue-wide, not this subgraph's
        x[:, feat_names.index(f"{n}__present")] = float(flag)
    if list(rr.feature_names_[:len(feat_names)]) != feat_names:
        raise ValueError(
            "This PairReranker was fitted on other pair features than this shopee_match "
            "computes (a model saved by another version); refit it with this version.")
    return Local(space, (lo, lo + n_own), rows, r, c, x)


def build_block(pipe: Any, table: dict[str, Any], halo: dict[str, Any],
                halo_ids: np.ndarray, incoming: sp.csr_matrix, lo: int, a: int, b: int,
                names: list[str], cat: Any, present: dict[str, bool]) -> Local:
    """:func:`build_local` for own rows ``a .. b - 1`` of a partition (global ids from
    ``lo``): its pairs featured as a partition of exactly those rows would feature them."""
    if a == 0 and b == n_rows(table):
        return build_local(pipe, table, halo, halo_ids, lo, names, cat, present)
    need = block_halo(table, names, incoming, lo, a, b)
    own, rows = block_view(table, halo, halo_ids, lo, a, b, need)
    return build_local(pipe, own, rows, need, lo + a, names, cat, present)


def stage_rows(pipe: Any, loc: Local, stage: int, n_total: int) -> sp.csr_matrix:
    """Own rows ``(n_own x N)`` of stage ``stage``'s probabilities ``P(i, j)`` (float64,
    columns as global ids; not yet symmetric)."""
    p = np.asarray(pipe.combiner_.stage_proba(stage, loc.x), dtype=np.float64)
    lo, hi = loc.own
    a = int(np.searchsorted(loc.space, lo))
    return sp.csr_matrix((p, (loc.r - a, loc.space[loc.c])), shape=(hi - lo, n_total))


def stage_table(p: sp.csr_matrix, lo: int) -> dict[str, Any]:
    """Own rows of a stage's symmetric graph with their row statistics, as the other
    partitions fetch them (:func:`_with_stats`)."""
    return _with_stats({}, "p", p, lo)


def add_stage(loc: Local, own: dict[str, Any], halo: dict[str, Any], stage: int) -> Local:
    """``loc`` with stage ``stage``'s graph features of its pairs appended (from the
    symmetric graph's rows of its own and halo postings, :func:`stage_table`: whole
    rows)."""
    halo_ids = loc.rows[(loc.rows < loc.own[0]) | (loc.rows >= loc.own[1])]
    stacked = {k: _ordered(v, halo[k], loc.own[0], halo_ids) for k, v in own.items()}
    space = local_space(loc.rows, stacked["p"].indices)
    ctx = _context(stacked, "p", loc.rows, space)
    del stacked
    rt = np.searchsorted(space, loc.space[loc.r])
    ct = np.searchsorted(space, loc.space[loc.c])
    feats = ctx.matrix(rt, ct, prefix=f"stage{stage + 1}__")[0]
    out = copy.copy(loc)
    out.x = np.hstack([loc.x, feats])
    return out


def add_block(loc: Local, own: dict[str, Any], halo: dict[str, Any], halo_ids: np.ndarray,
              lo: int, stage: int) -> Local:
    """:func:`add_stage` for one block ``loc`` of a partition (first global id ``lo``),
    from the partition's stage rows ``own`` and fetched ``halo`` (rows of ``halo_ids``)."""
    b0, b1 = loc.own
    if b0 == lo and b1 == lo + n_rows(own):
        return add_stage(loc, own, halo, stage)
    need = loc.rows[(loc.rows < b0) | (loc.rows >= b1)]
    mine, rows = block_view(own, halo, halo_ids, lo, b0 - lo, b1 - lo, need)
    return add_stage(loc, mine, rows, stage)


def score_block(pipe: Any, table: dict[str, Any], halo: dict[str, Any],
                halo_ids: np.ndarray, incoming: sp.csr_matrix, lo: int, a: int, b: int,
                names: list[str], cat: Any, present: dict[str, bool], n_total: int,
                *earlier: dict[str, Any]) -> sp.csr_matrix:
    """Own rows ``a .. b - 1``'s rows of stage ``len(earlier) // 2``'s probabilities
    (:func:`stage_rows`): the block's pairs featured (:func:`build_block`), each earlier
    stage's graph features appended from ``earlier`` (the partition's own rows of that
    stage's graph and its fetched halo rows, in turn: :func:`add_block`), scored, and the
    features dropped."""
    loc = build_block(pipe, table, halo, halo_ids, incoming, lo, a, b, names, cat, present)
    for t in range(len(earlier) // 2):
        loc = add_block(loc, earlier[2 * t], earlier[2 * t + 1], halo_ids, lo, t)
    return stage_rows(pipe, loc, len(earlier) // 2, n_total)


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
                 block_rows: int | None = None) -> list[Any]:
    """For each partition, a future of its final edges ``(local rows, global ids)``.

    ``pipe``: the scattered pipeline (its combiner is the fitted reranker, sent once per
    worker); ``rr``: that reranker, here (for its settings); ``cands``: each step's
    candidate rows per partition; ``titles``: futures of each partition's title tokens
    (:class:`~shopee_match.rerank.title_features.TitleTokens`);
    ``cat``: a future of the title tokens' catalogue counts; ``raw_titles``: futures of
    each partition's titles, for self-training; ``block_rows``: own rows a rerank task
    features at once (:func:`._rerank_blocks.block_bounds`; ``None``: as many as keep
    its own and halo rows near ``LOCAL_ROWS``).
    """
    if getattr(rr, "adapt_prior", False):
        raise NotImplementedError(
            "Distributed reranking with adapt_prior=True (a catalogue-wide EM) is not "
            "supported; use pipeline.predict on Postings, or set adapt_prior=False.")
    n_parts, n_total = len(offsets) - 1, int(offsets[-1])
    names = sorted(cands)
    lo = [int(o) for o in offsets[:-1]]
    tables = [client.submit(_table, None if titles is None else titles[a], names, lo[a],
                            *[cands[n][a] for n in names], pure=False)
              for a in range(n_parts)]
    flags = client.gather([client.submit(_present, t, names, pure=False) for t in tables])
    present = {n: any(f[n] for f in flags) for n in names}
    incoming = transpose_rows(
        client, [client.submit(_pattern, t, names, pure=False) for t in tables], offsets)
    halo_ids = [client.submit(block_halo, tables[a], names, incoming[a], lo[a], 0,
                              int(offsets[a + 1] - offsets[a]), pure=False)
                for a in range(n_parts)]
    halo_n = client.gather([client.submit(len, h, pure=False) for h in halo_ids])
    stats["halo_rows"] = int(sum(halo_n))
    halos = fetch_rows(client, tables, offsets, halo_ids)
    # each partition's pairs featured a block of own rows at a time (bounded memory)
    bounds = [block_bounds(int(offsets[a + 1] - offsets[a]), halo_n[a], block_rows)
              for a in range(n_parts)]
    stats["rerank_blocks"] = sum(len(b) for b in bounds)
    n_stages = int(rr.n_stages)
    earlier: list[list[Any]] = [[] for _ in range(n_parts)]  # own rows of each stage's graph
    for stage in range(n_stages):
        # features are never held between stages: each stage fetches the halo again and
        # rebuilds its blocks' features (as one machine does with more than one block)
        if stage:
            halos = fetch_rows(client, tables, offsets, halo_ids)
        fetched = [fetch_rows(client, [e[t] for e in earlier], offsets, halo_ids)
                   for t in range(stage)]
        scored = [client.submit(stack_scored, *[
            client.submit(score_block, pipe, tables[a], halos[a], halo_ids[a], incoming[a],
                          lo[a], x, y, names, cat, present, n_total,
                          *[v for t in range(stage) for v in (earlier[a][t], fetched[t][a])],
                          pure=False)
            for x, y in bounds[a]], pure=False) for a in range(n_parts)]
        del halos, fetched
        if stage == 0:
            stats["pairs_scored"] = int(sum(client.gather(
                [client.submit(_nnz, p, pure=False) for p in scored])))
        back = transpose_rows(client, scored, offsets)  # P(j, i) to i's owner
        proba = [client.submit(mean_graph, p, t, pure=False)
                 for p, t in zip(scored, back)]
        del scored, back
        if stage < n_stages - 1:
            for a, p in enumerate(proba):
                earlier[a].append(client.submit(stage_table, p, lo[a], pure=False))
    del tables, incoming, earlier
    kept = [client.submit(select_own, pipe, p, lo[a], pure=False) for a, p in enumerate(proba)]
    if rr.grow is not None:
        kept = _grow(client, kept, offsets, rr, stats)
    edges = [client.submit(_edges, k, pure=False) for k in kept]
    if self_trains(rr):  # after the cut and grow, as on one machine
        edges = self_trained_edges(client, proba, edges, raw_titles, offsets, cat, stats)
    return edges


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


def _nnz(rows: sp.csr_matrix) -> int:
    return int(rows.nnz)
