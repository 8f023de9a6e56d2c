"""The pair reranker on Dask: a shuffle by posting, so each pair sees both neighbourhoods.

A pair's features compare it with *both* postings' candidate lists (ranks both ways,
each side's best and k-th similarity, shared neighbours, each side's title) and, in a
stacked model, with both postings' rows of the previous stage's probability graph. So
each partition gathers the rows of its *halo*: every posting paired with one of its own,
whichever side proposed the pair (its own rows' columns, and the postings whose rows
name its own: the transposed graph). Then, in a local index space that keeps the
global order (ties break as on one machine), it runs the single-machine code on that
subgraph: :func:`~shopee_match.rerank.pair_features.pair_features` for the pairs
touching its own postings, in both directions, the reranker's trees, the symmetric
probability graph; each further stage first fetches the halo's rows of the previous
stage's graph. The kept pairs are the reranker's own selection of its own rows, and
``grow`` (shared-match closure) fetches the match sets it compares.

Two facts are catalogue-wide and are given to every partition: whether each modality
proposed any pair (a feature), and the title tokens' document counts (rarity).
Memory per partition: its rows and its halo's (about ``k`` times its own rows), and the
features of its pairs (recomputed at each stage rather than held between stages).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from ._candidates import square
from ._exchange import fetch_rows, local_space, transpose_rows

__all__ = ["Local", "rerank_edges"]


@dataclass
class Local:
    """A partition's subgraph: its own rows, its halo's rows, in a local index space."""

    space: np.ndarray  # sorted global ids; local id = position
    own: tuple[int, int]  # the partition's own global ids [lo, hi)
    rows: np.ndarray  # sorted global ids whose rows are held (own and halo)
    cands: dict[str, sp.csr_matrix]  # square over ``space``
    titles: list[str] | None  # titles of ``rows``
    r: np.ndarray  # pairs touching own rows, local ids
    c: np.ndarray
    stages: list[tuple[np.ndarray, sp.csr_matrix]] = field(default_factory=list)


def _table(titles: np.ndarray | None, names: list[str], *graphs: sp.csr_matrix) -> dict[str, Any]:
    out: dict[str, Any] = dict(zip(names, graphs))
    if titles is not None:
        out["_titles"] = np.asarray(titles, dtype=object)
    return out


def _pattern(table: dict[str, Any], names: list[str]) -> sp.csr_matrix:
    g = sum((sp.csr_matrix(table[n], dtype=np.float32) for n in names[1:]),
            sp.csr_matrix(table[names[0]], dtype=np.float32))
    g = sp.csr_matrix(g)
    g.data[:] = 1.0
    return g


def _halo(table: dict[str, Any], names: list[str], incoming: sp.csr_matrix, lo: int,
          hi: int) -> np.ndarray:
    ids = local_space(*[table[n].indices for n in names], incoming.indices)
    return ids[(ids < lo) | (ids >= hi)]


def _present(table: dict[str, Any], names: list[str], lo: int) -> dict[str, bool]:
    out = {}
    for n in names:
        coo = sp.coo_matrix(table[n])
        out[n] = bool((coo.row.astype(np.int64) + lo != coo.col).any())
    return out


def _ordered(own: Any, halo: Any, lo: int, halo_ids: np.ndarray) -> Any:
    """Own and halo rows stacked in global order (own ids are contiguous)."""
    cut = int(np.searchsorted(halo_ids, lo))
    if sp.issparse(own):
        return sp.vstack([halo[:cut], own, halo[cut:]], format="csr")
    return np.concatenate([halo[:cut], own, halo[cut:]])


def build_local(table: dict[str, Any], halo: dict[str, Any], halo_ids: np.ndarray,
                lo: int, names: list[str]) -> Local:
    """A partition's :class:`Local` subgraph and the pairs touching its own rows."""
    from ..rerank.pair_features import candidate_pairs

    n_own = table[names[0]].shape[0]
    rows = np.union1d(np.arange(lo, lo + n_own, dtype=np.int64), halo_ids)
    stacked = {n: _ordered(table[n], halo[n], lo, halo_ids) for n in names}
    space = local_space(rows, *[g.indices for g in stacked.values()])
    cands = {n: square(g, rows, space) for n, g in stacked.items()}
    titles = None
    if "_titles" in table:
        titles = [str(t) for t in _ordered(table["_titles"], halo["_titles"], lo, halo_ids)]
    # the pairs touching own rows: own rows' entries and the halo's entries naming them
    a, b = np.searchsorted(space, [lo, lo + n_own])
    touching = {}
    for n, g in cands.items():
        coo = g.tocoo()
        keep = ((coo.row >= a) & (coo.row < b)) | ((coo.col >= a) & (coo.col < b))
        touching[n] = sp.csr_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])),
                                    shape=g.shape)
    r, c = candidate_pairs(touching)
    return Local(space, (lo, lo + n_own), rows, cands, titles, r, c)


def prefiltered(pipe: Any, loc: Local) -> Local:
    """``loc`` with only the pairs the reranker's prefilter keeps (as on one machine:
    its features read the local graphs' rows, which hold both postings' candidates)."""
    from ..rerank.pair_features import PairContext

    rr = pipe.combiner_
    if getattr(rr, "prefilter_", None) is None:
        return loc
    keep = rr.keep_pairs(PairContext(loc.cands, None, 1).graphs, loc.r, loc.c)
    if keep is None:
        return loc
    out = copy.copy(loc)
    out.r, out.c = loc.r[keep], loc.c[keep]
    return out


def _features(rr: Any, loc: Local, cat: Any, present: dict[str, bool]) -> np.ndarray:
    """The reranker's feature rows of the local pairs (as ``predict_proba_graph``)."""
    from ..rerank import stage_features
    from ..rerank.pair_features import pair_features
    from ..rerank.title_features import TITLE_FEATURES, title_features

    x, names = pair_features(loc.cands, loc.r, loc.c, None, n_jobs=1)  # one task, one thread
    for n, flag in present.items():  # catalogue-wide, not this subgraph's
        x[:, names.index(f"{n}__present")] = float(flag)
    cols = [x]
    if getattr(rr, "uses_titles_", False) and rr.use_titles:
        if loc.titles is None:
            raise ValueError("This PairReranker was fitted with titles; the postings "
                             "have none.")
        ri = np.searchsorted(loc.rows, loc.space[loc.r])
        ci = np.searchsorted(loc.rows, loc.space[loc.c])
        tf = title_features(loc.titles, ri, ci, catalogue_df=cat)
        cols.append(np.column_stack([tf[k] for k in TITLE_FEATURES]))
        names = names + list(TITLE_FEATURES)
    if list(rr.feature_names_[:len(names)]) != names:
        raise ValueError(
            "This PairReranker was fitted on other pair features than this shopee_match "
            "computes (a model saved by another version); refit it with this version.")
    for t, (space_t, g_t) in enumerate(loc.stages):
        rt = np.searchsorted(space_t, loc.space[loc.r])
        ct = np.searchsorted(space_t, loc.space[loc.c])
        cols.append(stage_features(g_t, rt, ct, t)[0])
    return np.hstack(cols) if len(cols) > 1 else x


def _own_rows(g: sp.csr_matrix, space: np.ndarray, own: tuple[int, int],
              n_total: int) -> sp.csr_matrix:
    """Rows of the own postings of a square local graph, columns as global ids."""
    lo, hi = own
    a, b = np.searchsorted(space, [lo, hi])
    rows = sp.csr_matrix(g[a:b])
    return sp.csr_matrix((rows.data, space[rows.indices], rows.indptr),
                         shape=(hi - lo, n_total))


def stage_proba(pipe: Any, loc: Local, cat: Any, present: dict[str, bool], stage: int,
                n_total: int) -> sp.csr_matrix:
    """Own rows ``(n_own x N)`` of stage ``stage``'s symmetric probability graph."""
    from ..rerank import symmetric_graph

    rr = pipe.combiner_
    x = _features(rr, loc, cat, present)
    p = rr.stage_proba(stage, x)
    g = symmetric_graph(p, loc.r, loc.c, len(loc.space))
    return _own_rows(g, loc.space, loc.own, n_total)


def add_stage(loc: Local, own_proba: sp.csr_matrix, halo: dict[str, Any]) -> Local:
    """``loc`` with the previous stage's probability rows of its own and halo postings."""
    halo_ids = loc.rows[(loc.rows < loc.own[0]) | (loc.rows >= loc.own[1])]
    g = _ordered(own_proba, halo["p"], loc.own[0], halo_ids)
    space = local_space(loc.rows, g.indices)
    out = copy.copy(loc)
    out.stages = [*loc.stages, (space, square(g, loc.rows, space))]
    return out


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
           min_share: float) -> tuple[np.ndarray, np.ndarray]:
    """Own rows of :func:`~shopee_match.neighbors.graph.grow` over the fetched match
    sets (every set that shares a posting with an own one): ``(local rows, global ids)``."""
    from ..neighbors.graph import grow

    s = sp.csr_matrix(fetched["s"])
    space = local_space(ids, s.indices)
    g = grow(square(s, ids, space), min_share)
    rows = _own_rows(g, space, (lo, lo + n_own), int(space[-1]) + 1).tocoo()
    return rows.row.astype(np.int64), rows.col.astype(np.int64)


def _edges(rows: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    coo = rows.tocoo()
    return coo.row.astype(np.int64), coo.col.astype(np.int64)


def rerank_edges(client: Any, pipe: Any, rr: Any, cands: dict[str, list[Any]],
                 titles: list[Any] | None, offsets: np.ndarray, cat: Any,
                 stats: dict[str, Any]) -> list[Any]:
    """For each partition, a future of its final edges ``(local rows, global ids)``.

    ``pipe``: the scattered pipeline (its combiner is the fitted reranker, sent once per
    worker); ``rr``: that reranker, here (for its settings); ``cands``: each step's
    candidate rows per partition; ``titles``: futures of each partition's titles;
    ``cat``: a future of the title tokens' catalogue counts.
    """
    if getattr(rr, "adapt_prior", False):
        raise NotImplementedError(
            "Distributed reranking with adapt_prior=True (a catalogue-wide EM) is not "
            "supported; use pipeline.predict on Postings, or set adapt_prior=False.")
    n_parts, n_total = len(offsets) - 1, int(offsets[-1])
    names = sorted(cands)
    lo = [int(o) for o in offsets[:-1]]
    tables = [client.submit(_table, None if titles is None else titles[a], names,
                            *[cands[n][a] for n in names], pure=False)
              for a in range(n_parts)]
    flags = client.gather([client.submit(_present, t, names, lo[a], pure=False)
                           for a, t in enumerate(tables)])
    present = {n: any(f[n] for f in flags) for n in names}
    incoming = transpose_rows(
        client, [client.submit(_pattern, t, names, pure=False) for t in tables], offsets)
    halo_ids = [client.submit(_halo, tables[a], names, incoming[a], lo[a], int(offsets[a + 1]),
                              pure=False) for a in range(n_parts)]
    stats["halo_rows"] = int(sum(client.gather(
        [client.submit(len, h, pure=False) for h in halo_ids])))
    halos = fetch_rows(client, tables, offsets, halo_ids)
    locs = [client.submit(build_local, tables[a], halos[a], halo_ids[a], lo[a], names,
                          pure=False) for a in range(n_parts)]
    del tables, halos, incoming
    if getattr(rr, "prefilter_", None) is not None:
        locs = [client.submit(prefiltered, pipe, loc, pure=False) for loc in locs]
    n_stages = int(rr.n_stages)
    for stage in range(n_stages):
        proba = [client.submit(stage_proba, pipe, loc, cat, present, stage, n_total,
                               pure=False) for loc in locs]
        if stage == n_stages - 1:
            break
        fetched = fetch_rows(client, [client.submit(dict, p=p, pure=False) for p in proba],
                             offsets, halo_ids)
        locs = [client.submit(add_stage, loc, p, f, pure=False)
                for loc, p, f in zip(locs, proba, fetched)]
    stats["pairs_scored"] = int(sum(client.gather(
        [client.submit(_n_pairs, loc, pure=False) for loc in locs])))
    del locs
    kept = [client.submit(select_own, pipe, p, lo[a], pure=False) for a, p in enumerate(proba)]
    if rr.grow is None:
        return [client.submit(_edges, k, pure=False) for k in kept]
    # grow: i and j compared through every match set holding a posting of i's set
    sets = [client.submit(dict, s=k, pure=False) for k in kept]
    holders = [client.submit(dict, s=t, pure=False) for t in transpose_rows(client, kept, offsets)]
    cols = [client.submit(_cols, k, pure=False) for k in kept]
    who = [client.submit(_cols_of, f, pure=False)
           for f in fetch_rows(client, holders, offsets, cols)]
    fetched = fetch_rows(client, sets, offsets, who)
    return [client.submit(_grown, f, w, lo[a], int(offsets[a + 1] - offsets[a]),
                          float(rr.grow), pure=False)
            for a, (f, w) in enumerate(zip(fetched, who))]


def _cols_of(table: dict[str, Any]) -> np.ndarray:
    return _cols(sp.csr_matrix(table["s"]))


def _n_pairs(loc: Local) -> int:
    return len(loc.r)
