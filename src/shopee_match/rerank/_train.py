"""How a :class:`~shopee_match.rerank.reranker.PairReranker` learns: its parameters
checked, the pair blocks built, each stage's trees trained, the prefilter fitted and the
cut tuned on out-of-fold probabilities. The estimator's methods call these."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from .._validation import check_scalar
from ..neighbors import effective_n_jobs
from . import _gbm, _prefilter
from ._fit import Block
from ._fit import as_lists as _as_lists
from ._fit import pair_blocks as _pair_blocks
from ._fit import stage_features as _stage_features
from ._fit import stage_models as _stage_models
from ._fit import tune_threshold as _tune_threshold
from ._fit import with_thinned as _with_thinned

if TYPE_CHECKING:
    from .reranker import PairReranker

__all__ = ["fit", "fit_prefilter", "tune", "validate"]

logger = logging.getLogger("shopee_match.rerank.reranker")

Cands = Mapping[str, sp.spmatrix]


def validate(rr: PairReranker) -> None:
    """Check ``rr``'s parameters (as scikit-learn does, when it is used, not built)."""
    check_scalar(rr.threshold, "threshold", (int, float), min_val=0.0, max_val=1.0)
    check_scalar(rr.min_matches, "min_matches", (int, np.integer), min_val=1)
    check_scalar(rr.min_proba, "min_proba", (int, float), min_val=0.0, max_val=1.0)
    if rr.grow_rounds is not None:
        check_scalar(rr.grow_rounds, "grow_rounds", (int, np.integer), min_val=1)
    check_scalar(rr.cv, "cv", (int, np.integer), min_val=2)
    if rr.tune_for not in ("mean", "robust"):
        raise ValueError(f"`tune_for` must be 'mean' or 'robust', got {rr.tune_for!r}.")
    if rr.thin is not None:
        check_scalar(rr.thin, "thin", (int, float), min_val=0.0, max_val=1.0)
    if rr.prefilter_recall is not None:
        check_scalar(rr.prefilter_recall, "prefilter_recall", (int, float), min_val=0.0,
                     max_val=1.0, include_min=False)
    check_scalar(rr.max_iter, "max_iter", (int, np.integer), min_val=1)
    check_scalar(rr.n_stages, "n_stages", (int, np.integer), min_val=1, max_val=3)
    if rr.n_jobs is not None:
        check_scalar(rr.n_jobs, "n_jobs", (int, np.integer), min_val=1)
    check_scalar(rr.learning_rate, "learning_rate", (int, float), min_val=0.0,
                 include_min=False)


def workers(rr: PairReranker) -> int:
    """Tree models trained side by side (``n_jobs``, or every core this process may
    use)."""
    return effective_n_jobs(rr.n_jobs)


def fit(rr: PairReranker, cands: Cands | Sequence[Cands],
        groups: np.ndarray | Sequence[np.ndarray],
        titles: Sequence[str] | Sequence[Sequence[str]] | None) -> PairReranker:
    """Learn P(same product) of candidate pairs from labelled postings.

    ``cands`` maps modality name to an n x n candidate graph (values: similarity);
    ``groups`` is one label code per row. Pass lists of each (one entry per group fold)
    to train on candidates built fold by fold.
    """
    validate(rr)
    cand_list, group_list, title_list = _as_lists(cands, groups, titles)
    names = sorted(cand_list[0])
    for i, c in enumerate(cand_list):
        if sorted(c) != names:
            raise ValueError(
                f"candidate set {i} has modalities {sorted(c)}, set 0 has {names}; every "
                "set needs the same modality names."
            )
    rr.modalities_ = names
    rr.uses_titles_ = rr.use_titles and title_list[0] is not None
    missing = [m for m in rr.optional_modalities if m not in names]
    if missing:
        raise ValueError(f"`optional_modalities` {missing} are not among the candidate "
                         f"graphs' modalities {names}.")
    fold_of = [b % int(rr.cv) for b in range(len(cand_list))]
    if rr.thin is not None:
        cand_list, group_list, title_list, fold_of = _with_thinned(
            cand_list, group_list, title_list, fold_of, float(rr.thin), int(rr.cv),
            rr.random_state)
    tts = []
    for c, g, t in zip(cand_list, group_list, title_list):
        n = next(iter(c.values())).shape[0]
        if np.asarray(g).shape != (n,):
            raise ValueError(
                f"`groups` must have one label per candidate-graph row ({n}), got shape "
                f"{np.asarray(g).shape}."
            )
        tts.append(rr._titles_for(t, n, fitting=True) if rr.uses_titles_ else None)
    rr.prefilter_ = None
    # (x, rows, cols, groups, fold id, is_twin) of the pairs kept; a twin is its source
    # block with the optional modalities emptied (the regime without them)
    sets, ys, feat_names = _pair_blocks(
        cand_list, [np.asarray(g) for g in group_list], tts, fold_of,
        list(rr.optional_modalities), int(rr.cv), rr.random_state, rr.n_jobs,
        partial(fit_prefilter, rr) if rr.prefilter_recall is not None else None)
    xs = [s[0] for s in sets]
    rr.min_matches_ = int(rr.min_matches)
    real = [y for y, s in zip(ys, sets) if not s[5]]
    rr.train_prior_ = float(np.concatenate(real).mean()) if real else 0.0
    boosters: list[Any] = []
    rr.boosters_ = boosters
    _gbm.lightgbm()  # imported here, once, before any training thread asks for it
    for stage in range(rr.n_stages):
        last = stage == rr.n_stages - 1
        oof, booster = _stage_models(xs, sets, ys, rr._fit_gbm, rr._proba,
                                     rr.tune_threshold or not last, workers(rr))
        if last:
            rr.threshold_ = tune(rr, oof, sets) if rr.tune_threshold else float(
                rr.threshold)
        rr.boosters_.append(booster)
        if not last:
            xs = [np.hstack([x, _stage_features(pg, s[1], s[2], stage)[0]])
                  for x, pg, s in zip(xs, oof, sets)]
            feat_names = feat_names + _stage_features(oof[0], sets[0][1][:1],
                                                      sets[0][2][:1], stage)[1]
    rr.feature_names_ = feat_names
    logger.info("PairReranker: %d pairs, %d features, %d stage(s), threshold %.3f",
                sum(len(y) for y in ys), len(feat_names), rr.n_stages, rr.threshold_)
    return rr


def fit_prefilter(rr: PairReranker, qs: list[np.ndarray], ys: list[np.ndarray],
                  folds: list[int]) -> list[np.ndarray]:
    """Fit ``prefilter_`` and its floor on the blocks' prefilter features ``qs``;
    which pairs of each block it keeps."""
    seed = 0 if rr.random_state is None else int(rr.random_state)
    recall = float(rr.prefilter_recall or 1.0)
    booster, floor, oof_kept = _prefilter.fit_prefilter(
        qs, ys, folds, recall, seed, workers(rr))
    rr.prefilter_ = booster
    rr.prefilter_floor_ = floor
    rr.prefilter_names_ = _prefilter.prefilter_names(rr.modalities_)
    keeps = [_prefilter.predict(booster, q, rr.n_jobs) >= floor for q in qs]
    n_all = sum(len(y) for y in ys)
    n_kept = sum(int(k.sum()) for k in keeps)
    n_pos = sum(int(y.sum()) for y in ys)
    n_pos_kept = sum(int(y[k].sum()) for y, k in zip(ys, keeps))
    rr.prefilter_kept_ = n_kept / max(n_all, 1)
    logger.info("PairReranker: prefilter keeps %d of %d training pairs (%.1f %%; out of "
                "fold %.1f %%), %d of %d true pairs, floor %.3g", n_kept, n_all,
                100 * rr.prefilter_kept_, 100 * oof_kept, n_pos_kept, n_pos, floor)
    return keeps


def tune(rr: PairReranker, oof: list[sp.csr_matrix], sets: list[Block]) -> float:
    """Threshold maximising the mean out-of-fold F1 of the blocks as given (not twins)."""
    if rr.adapt_prior:
        oof = [rr._adapted(g) for g in oof]
    best = None
    for mm in sorted({1, int(rr.min_matches)}):
        t, f1, value = _tune_threshold(oof, sets, partial(rr.cut, min_matches=mm),
                                       rr.tune_for)
        if best is None or value > best[2] + 1e-9:
            best = (t, f1, value, mm)
    assert best is not None
    threshold, rr.cv_f1_, _, rr.min_matches_ = best
    logger.info("PairReranker: tuned threshold %.3f (out-of-fold F1 %.4f)",
                threshold, rr.cv_f1_)
    return threshold
