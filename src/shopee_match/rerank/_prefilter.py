"""The reranker's pair prefilter: a cascade's cheap first stage.

Most candidate pairs are plainly wrong (a posting's 30th title neighbour, far from the
best one, proposed by no other modality). Featuring and scoring them with the full
stages costs most of a match. The prefilter is a small LightGBM model on features that
the candidate graphs' contexts already hold (each modality's similarity, the pair's
ranks, each side's best and 10th similarity and candidate count), read without the
expensive ones (shared neighbours, titles). Pairs it scores below a floor are never
featured or scored again: they leave the candidate pattern (probability 0, no entry in
the probability graphs, so the later stages' neighbourhood features see only kept
pairs, at fit and at predict time alike).

The floor is the one that keeps ``recall`` of the true pairs among the training
candidates, measured out of fold (each fold's pairs scored by a model fitted on the
other folds), so the recall is what unseen postings get, not what the model remembers.
Every feature is a symmetric function of the pair, so ``(i, j)`` and ``(j, i)`` are
kept or dropped together and the kept pattern stays symmetric.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._io import lightgbm
from .pair_features import DENSITY_RANKS, GraphContext

__all__ = ["PREFILTER_PARAMS", "fit_prefilter", "prefilter_features", "prefilter_names"]

#: LightGBM parameters of the prefilter: a few small trees (its prediction costs a
#: small share of the full stages')
PREFILTER_PARAMS: dict[str, Any] = {
    "objective": "binary", "num_leaves": 15, "learning_rate": 0.2,
    "min_data_in_leaf": 40, "lambda_l2": 1.0, "max_bin": 255,
    "deterministic": True, "force_row_wise": True, "num_threads": 1, "verbosity": -1,
}
#: boosting rounds of the prefilter
PREFILTER_ROUNDS = 30

_PER_MODALITY = ("sim", "rank_min", "rank_max", "top1_max", "top1_min",
                 f"s{DENSITY_RANKS[-1]}_max", f"s{DENSITY_RANKS[-1]}_min",
                 "deg_min", "deg_max")


def prefilter_names(modalities: Sequence[str]) -> list[str]:
    """Column names of :func:`prefilter_features` for these modalities (in this order).

    >>> prefilter_names(["tfidf"])[:3]
    ['tfidf__sim', 'tfidf__rank_min', 'tfidf__rank_max']
    """
    return [f"{m}__{f}" for m in modalities for f in _PER_MODALITY]


def prefilter_features(graphs: Sequence[GraphContext], rows: np.ndarray,
                       cols: np.ndarray) -> np.ndarray:
    """The prefilter's features of pairs ``(rows[p], cols[p])`` (float64, NaN =
    missing), one block of columns per modality context in ``graphs``: the larger of
    the two directions' similarities, the smaller and larger rank, each side's best and
    10th similarity and candidate count as (larger, smaller). All symmetric in the pair.
    """
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    out = np.empty((len(rows), len(_PER_MODALITY) * len(graphs)), dtype=np.float64)
    k = DENSITY_RANKS[-1]
    for m, g in enumerate(graphs):
        ij, ji = g.stored.at(rows, cols), g.stored.at(cols, rows)
        part = out[:, m * len(_PER_MODALITY):(m + 1) * len(_PER_MODALITY)]
        data = g.off_g.data
        part[:, 0] = np.fmax(ij(data), ji(data))
        r_ij, r_ji = ij(g.rank_data), ji(g.rank_data)
        part[:, 1], part[:, 2] = np.fmin(r_ij, r_ji), np.fmax(r_ij, r_ji)
        for col, arr in ((3, g.kth[1]), (5, g.kth[k]),
                         (7, g.deg.astype(np.float64))):
            a, b = arr[rows], arr[cols]
            part[:, col], part[:, col + 1] = np.fmax(a, b), np.fmin(a, b)
    return out


def _train(qs: Sequence[np.ndarray], ys: Sequence[np.ndarray], seed: int) -> Any:
    lgb = lightgbm()
    params = dict(PREFILTER_PARAMS, seed=seed)
    data = lgb.Dataset(list(qs), label=np.concatenate(ys),
                       params={"max_bin": params["max_bin"], "verbosity": -1})
    return lgb.train(params, data, num_boost_round=PREFILTER_ROUNDS)


def fit_prefilter(qs: Sequence[np.ndarray], ys: Sequence[np.ndarray], folds: Sequence[int],
                  recall: float, seed: int = 0, workers: int = 1
                  ) -> tuple[Any, float, float]:
    """The prefilter fitted on every block's features ``qs`` and labels ``ys``, and its
    floor: the largest probability that keeps ``recall`` of the true pairs, each block
    scored out of fold (by a model fitted on the blocks of the other ``folds``).

    Returns ``(booster, floor, out-of-fold share of all pairs kept)``.
    """
    fold_ids = sorted(set(folds))
    jobs = [[i for i, f in enumerate(folds) if f != fold] for fold in fold_ids]
    jobs = [j for j in jobs if j and sum(len(ys[i]) for i in j)]
    jobs.append(list(range(len(qs))))

    def train(idx: list[int]) -> Any:
        return _train([qs[i] for i in idx], [ys[i] for i in idx], seed)

    if workers > 1 and len(jobs) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            models = list(pool.map(train, jobs))
    else:
        models = [train(j) for j in jobs]
    final = models[-1]
    scored: list[np.ndarray | None] = [None] * len(qs)
    for job, model in zip(jobs[:-1], models[:-1]):
        for i in set(range(len(qs))) - set(job):
            scored[i] = predict(model, qs[i], 1)
    # a block no other fold's model saw (one fold only): in-sample, as a last resort
    oof = [predict(final, q, 1) if s is None else s for q, s in zip(qs, scored)]
    p = np.concatenate(oof) if oof else np.empty(0)
    y = np.concatenate(ys) if ys else np.empty(0, dtype=np.int8)
    pos = np.sort(p[y == 1])
    if len(pos) == 0:
        return final, 0.0, 1.0
    floor = float(pos[int(np.floor((1.0 - recall) * len(pos)))])
    return final, floor, float(np.mean(p >= floor)) if len(p) else 1.0


def predict(booster: Any, q: np.ndarray, n_jobs: int | None) -> np.ndarray:
    """The prefilter's P(match) of rows ``q`` (``n_jobs`` threads; ``None``: every core)."""
    if len(q) == 0:
        return np.empty(0)
    threads = 0 if n_jobs is None else int(n_jobs)
    return np.asarray(booster.predict(q, num_threads=threads), dtype=np.float64)
