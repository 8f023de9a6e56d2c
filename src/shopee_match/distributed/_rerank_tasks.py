"""What a rerank task computes on a worker (:mod:`._rerank` schedules them): a block's
pairs featured over its own and halo rows (:func:`build_block`), a stage's graph
features appended (:func:`add_block`), a stage's probabilities of a block's pairs
(:func:`stage_rows`), or all of it at once without holding the features
(:func:`score_block`)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from ._candidates import square
from ._exchange import local_space
from ._rerank_blocks import block_halo, block_view, n_rows

__all__ = [
    "Local",
    "add_block",
    "build_block",
    "nnz_of",
    "pair_count",
    "pair_rows",
    "proposed",
    "row_table",
    "score_block",
    "stage_rows",
    "stage_table",
]


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


def row_table(tokens: Any, names: list[str], lo: int, *graphs: sp.csr_matrix) -> dict[str, Any]:
    """A partition's rows as the others fetch them: each candidate graph's with its
    row statistics (:func:`_with_stats`), and its titles' tokens."""
    out: dict[str, Any] = {}
    for n, g in zip(names, graphs):
        _with_stats(out, n, g, lo)
    if tokens is not None:
        out["_tokens"] = tokens
    return out


def pair_rows(table: dict[str, Any], names: list[str]) -> sp.csr_matrix:
    g = sum((sp.csr_matrix(table[n], dtype=np.float32) for n in names[1:]),
            sp.csr_matrix(table[names[0]], dtype=np.float32))
    g = sp.csr_matrix(g)
    g.data[:] = 1.0
    return g


def proposed(table: dict[str, Any], names: list[str]) -> dict[str, bool]:
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


def pair_count(pattern: sp.csr_matrix, incoming: sp.csr_matrix, lo: int) -> int:
    """The pairs a partition's own rows have in the symmetric candidate pattern (its
    :func:`pair_rows` and the rows naming its own, ``incoming``): what it scores, before
    any prefilter."""
    g = sp.csr_matrix(pattern + sp.csr_matrix(incoming, dtype=np.float32))
    rows = np.repeat(np.arange(g.shape[0], dtype=np.int64), np.diff(g.indptr))
    return int(np.count_nonzero(g.indices != rows + lo))


def nnz_of(rows: sp.csr_matrix) -> int:
    return int(rows.nnz)
