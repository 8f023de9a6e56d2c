"""Training internals of :class:`~shopee_match.rerank.PairReranker`.

Candidate pairs are held in blocks (one per candidate set, or per group fold of a single
set). Each fold's block is scored by a model fitted on the other folds; those
out-of-fold probability graphs tune the threshold and, as graph features, feed the next
stage of a stacked model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..data import group_kfold
from ..metrics import graph_f1_scores, match_nothing_f1
from ..neighbors.graph import symmetric_graph
from ._prefilter import prefilter_features
from .pair_features import PairContext, candidate_pairs, graph_features

__all__ = [
    "THRESHOLD_GRID",
    "Block",
    "as_lists",
    "pair_blocks",
    "split_folds",
    "stage_features",
    "stage_models",
    "thin_set",
    "tune_threshold",
    "with_thinned",
]

#: probability thresholds tried when tuning (and by ``calibration``)
THRESHOLD_GRID = np.round(np.arange(0.05, 0.951, 0.025), 3)

#: Candidate pairs of one block: ``(x, rows, cols, groups, fold id, is_twin)``. A twin
#: is its source block with the optional modalities emptied.
Block = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, bool]


def as_lists(cands: Any, groups: Any, titles: Any) -> tuple[list[Any], list[Any], list[Any]]:
    """``fit``'s arguments as lists of the same length, one entry per candidate set."""
    if isinstance(cands, Mapping):
        if not cands:
            raise ValueError("`cands` is empty: pass at least one modality's candidate graph.")
        return [cands], [groups], [titles]
    if not isinstance(cands, Sequence) or not cands or not all(isinstance(c, Mapping) for c in cands):
        raise TypeError(
            "`cands` must be a dict (modality name -> n x n candidate graph) or a non-empty "
            f"list of such dicts, got {type(cands).__name__}."
        )
    if not isinstance(groups, Sequence) or len(groups) != len(cands):
        raise ValueError(
            f"with a list of {len(cands)} candidate sets, `groups` must be a list of "
            f"{len(cands)} label arrays, one per set."
        )
    if titles is None:
        titles = [None] * len(cands)
    if len(titles) != len(cands):
        raise ValueError(f"`titles` must be a list of {len(cands)} title lists, one per set.")
    return list(cands), list(groups), list(titles)


def split_folds(x: np.ndarray, r: np.ndarray, c: np.ndarray, g: np.ndarray, twin: bool,
                cv: int, random_state: int | None, q: np.ndarray | None = None
                ) -> tuple[list[Block], list[np.ndarray | None]]:
    """One candidate set cut into ``cv`` group folds (pairs across folds dropped), and
    the rows of ``q`` (another per-pair array, e.g. the prefilter's features) of each."""
    _, codes = np.unique(g, return_inverse=True)
    fold_of_row = np.empty(len(g), dtype=np.intp)
    for f, (_, test) in enumerate(group_kfold(codes, cv, random_state)):
        fold_of_row[test] = f
    out: list[Block] = []
    extra: list[np.ndarray | None] = []
    for f in range(cv):
        keep = (fold_of_row[r] == f) & (fold_of_row[c] == f)
        rows = np.flatnonzero(fold_of_row == f)
        remap = np.full(len(g), -1, dtype=np.intp)
        remap[rows] = np.arange(len(rows))
        out.append((x[keep], remap[r[keep]], remap[c[keep]], g[rows], f, twin))
        extra.append(None if q is None else q[keep])
    return out, extra


def pair_blocks(
    cands: list[Mapping[str, Any]],
    groups: list[np.ndarray],
    titles: list[list[str] | None],
    fold_of: list[int],
    optional: list[str],
    cv: int,
    random_state: int | None,
    n_jobs: int | None,
    prefilter: Callable[[list[np.ndarray], list[np.ndarray], list[int]], list[np.ndarray]]
    | None = None,
) -> tuple[list[Block], list[np.ndarray], list[str]]:
    """The training blocks of candidate sets, their labels and the feature names.

    Several sets: one block each (in fold ``fold_of[b]``); one set: cut into its ``cv``
    group folds. With ``optional`` modalities each block gets a twin without them.
    ``prefilter(qs, ys, folds)``, given every block's prefilter features and labels,
    returns which pairs each block keeps: only those are featured (each candidate set
    read once, :class:`~shopee_match.rerank.pair_features.PairContext`).
    """
    sources: list[tuple[PairContext, np.ndarray, np.ndarray]] = []
    pending: list[tuple[int, np.ndarray, Block]] = []  # (source, pair ids, block sans x)
    qs: list[np.ndarray] = []
    for b, (c, g, tt) in enumerate(zip(cands, groups, titles)):
        n = g.shape[0]
        variants = [(c, False)]
        if optional:
            empty = sp.csr_matrix((n, n), dtype=np.float32)
            variants.append(({m: (empty if m in optional else gm) for m, gm in c.items()},
                             True))
        for cv_, twin in variants:
            r, cc = candidate_pairs(cv_)
            ctx = PairContext(cv_, tt, n_jobs)
            q = prefilter_features(ctx.graphs, r, cc) if prefilter is not None else None
            sources.append((ctx, r, cc))
            ids = np.arange(len(r))
            if len(cands) > 1:
                # blocks are disjoint postings: any b -> fold map is honest; cv folds
                # keep the out-of-fold fits at cv however many catalogues there are
                parts = [(ids, r, cc, g, fold_of[b], twin)]
                q_parts: list[np.ndarray | None] = [q]
            else:
                parts, q_parts = split_folds(ids, r, cc, g, twin, cv, random_state, q)
            for part, q_part in zip(parts, q_parts):
                pending.append((len(sources) - 1, part[0], part))
                if q_part is not None:
                    qs.append(q_part)
    ys = [(p[3][p[1]] == p[3][p[2]]).astype(np.int8) for _, _, p in pending]
    if sum(int(y.sum()) for y in ys) == 0 or all(int(y.min(initial=1)) == 1 for y in ys):
        raise ValueError(
            "The candidate pairs are all of one class (no true match or no non-match "
            "among them); fit needs labelled postings whose groups have 2+ members and "
            "candidates that include some wrong pairs (e.g. a larger k)."
        )
    keeps: list[np.ndarray | None] = [None] * len(pending)
    if prefilter is not None:
        keeps = list(prefilter(qs, ys, [p[4] for _, _, p in pending]))
    del qs
    sets: list[Block] = []
    names: list[str] = []
    for i, ((src, ids, p), keep) in enumerate(zip(pending, keeps)):
        ctx, r, cc = sources[src]
        if keep is not None:
            ids, p, ys[i] = ids[keep], (p[0], p[1][keep], p[2][keep], *p[3:]), ys[i][keep]
        x, names = ctx.features(r[ids], cc[ids])
        sets.append((x, *p[1:]))
    return sets, ys, names


def fold_sets(cands: Mapping[str, Any], groups: np.ndarray, titles: Any, cv: int,
              random_state: int | None) -> list[tuple[dict[str, Any], np.ndarray, Any]]:
    """One candidate set cut into ``cv`` group folds, each a candidate set of its own."""
    _, codes = np.unique(groups, return_inverse=True)
    out = []
    for _, rows in group_kfold(codes, cv, random_state):
        rows = np.sort(rows)
        out.append(_subset(cands, groups, titles, rows))
    return out


def _subset(cands: Mapping[str, Any], groups: np.ndarray, titles: Any,
            rows: np.ndarray) -> tuple[dict[str, Any], np.ndarray, Any]:
    sub = {m: sp.csr_matrix(g)[rows][:, rows] for m, g in cands.items()}
    return sub, np.asarray(groups)[rows], (None if titles is None else [titles[i] for i in rows])


def thin_set(cands: Mapping[str, Any], groups: np.ndarray, titles: Any, keep: float,
             seed: int) -> tuple[dict[str, Any], np.ndarray, Any]:
    """The candidate set as if the catalogue had fewer offers per product: every group
    keeps one posting, each other posting stays with probability ``keep``. Neighbour lists
    lose the removed postings (as a search of the smaller catalogue would, up to the
    neighbours past k it would have found instead)."""
    g = np.asarray(groups)
    rng = np.random.default_rng(seed)
    first = np.zeros(len(g), dtype=bool)
    first[np.unique(g, return_index=True)[1]] = True
    rows = np.flatnonzero(first | (rng.random(len(g)) < keep))
    return _subset(cands, g, titles, rows)


def with_thinned(cands: list[Any], groups: list[Any], titles: list[Any], fold_of: list[int],
                 keep: float, cv: int, random_state: int | None
                 ) -> tuple[list[Any], list[Any], list[Any], list[int]]:
    """The candidate sets plus a thinned copy of each (:func:`thin_set`), in its source's
    fold; one set is first cut into its group folds, so no posting is on both sides."""
    if len(cands) == 1:
        parts = fold_sets(cands[0], np.asarray(groups[0]), titles[0], cv, random_state)
        cands, groups, titles = ([p[i] for p in parts] for i in range(3))
        fold_of = list(range(len(parts)))
    seed = 0 if random_state is None else int(random_state)
    extra = [thin_set(c, np.asarray(g), t, keep, seed + b)
             for b, (c, g, t) in enumerate(zip(cands, groups, titles))]
    return (cands + [e[0] for e in extra], groups + [e[1] for e in extra],
            titles + [e[2] for e in extra], fold_of + fold_of)


def stage_models(
    xs: list[np.ndarray],
    sets: list[Block],
    ys: list[np.ndarray],
    fit: Callable[[list[np.ndarray], list[np.ndarray]], Any],
    proba: Callable[[Any, np.ndarray], np.ndarray],
    out_of_fold: bool,
    workers: int = 1,
) -> tuple[list[sp.csr_matrix], Any]:
    """One stage's models: the final one on every block and, with ``out_of_fold``, one per
    fold on the other folds, whose probability graphs of their own fold are returned.

    ``fit(xs, ys)`` fits a classifier on the listed blocks' rows; ``proba(clf, x)`` is its
    P(match) of rows ``x``. The models are independent, so up to ``workers`` of them train
    side by side in threads (each model as it would alone: the same trees whatever
    ``workers`` is).
    """
    folds = sorted({s[4] for s in sets}) if out_of_fold else []
    jobs = [[i for i, s in enumerate(sets) if s[4] != f] for f in folds]
    jobs.append(list(range(len(sets))))

    def train(idx: list[int]) -> Any:
        return fit([xs[i] for i in idx], [ys[i] for i in idx])

    if workers > 1 and len(jobs) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            models = list(pool.map(train, jobs))
    else:
        models = [train(idx) for idx in jobs]
    out: list[sp.csr_matrix] = [sp.csr_matrix((0, 0))] * len(sets) if folds else []
    for fold, clf in zip(folds, models):
        for i, s in enumerate(sets):
            if s[4] == fold:
                n = len(s[3])
                p = sp.coo_matrix((proba(clf, xs[i]), (s[1], s[2])), shape=(n, n))
                out[i] = symmetric_graph(p)
    return out, models[-1]


def tune_threshold(
    oof: list[sp.csr_matrix],
    sets: list[Block],
    select: Callable[[sp.csr_matrix, float], sp.csr_matrix],
    objective: str = "mean",
) -> tuple[float, float, float]:
    """Threshold maximising the out-of-fold F1 of the blocks as given (not twins).

    ``select(proba, threshold)`` makes a match graph. ``objective="mean"``: mean F1 over
    every posting; ``"robust"``: the smallest margin of any block's mean F1 over matching
    nothing (each posting alone, F1 = 2/(|group|+1)), so no kind of catalogue among the
    training blocks (e.g. one of mostly one-offer products) is sacrificed to the others.
    Returns ``(threshold, mean F1, objective value)``.
    """
    grid = THRESHOLD_GRID
    real = [(proba, s) for proba, s in zip(oof, sets) if not s[5]]
    f1 = np.zeros((len(real), len(grid)))
    sizes = np.array([len(s[3]) for _, s in real], dtype=np.float64)
    floors = np.array([match_nothing_f1(s[3]) for _, s in real])
    for b, (proba, s) in enumerate(real):
        for t, thr in enumerate(grid):
            f1[b, t] = _f1_sum(select(proba, float(thr)), s[3]) / max(len(s[3]), 1)
    mean = (f1 * sizes[:, None]).sum(axis=0) / max(sizes.sum(), 1.0)
    if objective == "robust":
        value = (f1 - floors[:, None]).min(axis=0)
    elif objective == "mean":
        value = mean
    else:
        raise ValueError(f"`objective` must be 'mean' or 'robust', got {objective!r}.")
    best = int(np.argmax(value))
    return float(grid[best]), float(mean[best]), float(value[best])


def stage_features(
    proba: sp.csr_matrix, r: np.ndarray, c: np.ndarray, stage: int
) -> tuple[np.ndarray, list[str]]:
    """Features of an earlier stage's probability graph, as of any modality's graph."""
    feats = graph_features(proba, r, c, prefix=f"stage{stage + 1}__")
    names = list(feats)
    return np.column_stack([feats[k] for k in names]), names


def _f1_sum(pred: sp.csr_matrix, groups: np.ndarray) -> float:
    """Sum over rows of per-posting F1 of a match graph (diagonal included)."""
    return float(graph_f1_scores(pred, groups).sum())
