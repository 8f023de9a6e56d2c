"""What :meth:`Pipeline.fit <shopee_match.Pipeline.fit>` does: fit the embedders, tune
each step's threshold on group folds, fit a learned combiner on the same folds (and on
generated general catalogues), and keep the catalogues' label-free profiles.

Tuned thresholds are fitted attributes (``matcher.fit_threshold``, ``tuning_``), never
written into the steps' constructor parameters.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from ._pipeline_guard import store_profiles
from .data import Postings, concat_postings
from .ensemble import Ensemble
from .tuning import collect_folds, general_folds, tune_thresholds

if TYPE_CHECKING:
    from .pipeline import Pipeline

__all__ = ["GENERAL_MAX", "GENERAL_MIN", "catalogues", "fit_embedders", "fit_pipeline"]

logger = logging.getLogger(__name__)

Step = tuple[str, Any, Any]

#: a learned ensemble fitted on n labelled postings also learns from about n / 3 generated
#: ones (``general=True``), at most this many
GENERAL_MAX = 6000
#: fewest generated postings worth adding: fits of fewer than 3 x this many skip them
GENERAL_MIN = 60


def fit_pipeline(pipe: Pipeline, postings: Postings | Sequence[Postings]) -> None:
    """Fit ``pipe`` in place (see :meth:`Pipeline.fit <shopee_match.Pipeline.fit>`):
    its embedders, ``tuning_``, ``combiner_`` and ``n_postings_fit_``. Warnings point at
    the caller of ``Pipeline.fit``."""
    steps = pipe.validated_steps()
    cats = catalogues(postings)
    whole = concat_postings(cats)
    tuned_cats = []
    for cat in cats:
        n_groups = len(np.unique(cat.groups())) if pipe.tune else 0
        if pipe.tune and n_groups >= max(2, pipe.n_splits):
            tuned_cats.append(cat)
        elif pipe.tune:
            warnings.warn(
                f"{cat.source}: only {n_groups} label group(s), too few for "
                f"{pipe.n_splits}-fold tuning: "
                + ("this catalogue is left out of tuning." if len(cats) > 1 else
                   "thresholds left as set (add labelled groups or lower n_splits to "
                   "tune them)."), UserWarning, stacklevel=3,
            )
    ens = pipe.ensemble if pipe.ensemble is not None else Ensemble()
    for _, _, matcher in steps:  # tuned thresholds are fitted attributes: start afresh
        matcher.fit_threshold(None)
    pipe.tuning_ = {}
    explained = False  # whether a fallback from a learned ensemble was warned about
    fitted_first = False
    if not pipe.refit_cv:  # folds are embedded by the final, fitted embedders
        fit_embedders(steps, whole, pipe.verbose)
        fitted_first = True
    if tuned_cats:
        explained = _tune(pipe, steps, cats, tuned_cats, ens, len(whole))
    if not fitted_first:
        fit_embedders(steps, whole, pipe.verbose)
    pipe.combiner_ = ens
    if getattr(ens, "uses_candidates", False) and not getattr(ens, "is_fitted_", False):
        if not explained:
            warnings.warn(
                f"{type(ens).__name__} learns from labelled tuning folds (tune=True and at "
                f"least {pipe.n_splits} label groups); using the union of the steps instead.",
                UserWarning, stacklevel=3,
            )
        pipe.combiner_ = Ensemble()
    pipe.n_postings_fit_ = len(whole)
    store_profiles(pipe, cats)


def _tune(pipe: Pipeline, steps: list[Step], cats: list[Postings], tuned_cats: list[Postings],
          ens: Any, n_postings: int) -> bool:
    """Tune the steps' thresholds (and fit a learned ``ens``) on the group folds of
    ``tuned_cats``; whether a fallback from the learned ensemble was warned about."""
    folds = [
        fold for cat in tuned_cats
        for fold in collect_folds(
            steps, cat, pipe.n_splits, refit=pipe.refit_cv,
            random_state=pipe.random_state, verbose=pipe.verbose,
        )
    ]
    # per-step thresholds are tuned for the union even when a learned ensemble
    # makes the final call: they give each step's own matches and curves
    th, cv_f1, curves = tune_thresholds(
        steps, folds, Ensemble().combine, fixed=pipe.fixed_steps or ()
    )
    for name, _, matcher in steps:
        matcher.fit_threshold(th[name])
    pipe.tuning_ = {"thresholds": th, "cv_f1": cv_f1, "curves": curves}
    if getattr(ens, "uses_candidates", False):
        extra = _general_folds(pipe, steps, cats, n_postings)
        pipe.tuning_["general_postings"] = int(sum(len(f.groups) for f in extra))
        try:
            ens.fit_folds(folds + extra)
            pipe.tuning_["union_cv_f1"] = cv_f1
            pipe.tuning_["cv_f1"] = float(getattr(ens, "cv_f1_", np.nan))
        except ValueError as exc:
            warnings.warn(
                f"{type(ens).__name__} could not learn from these postings ({exc}); "
                "using the tuned union of the steps instead.", UserWarning, stacklevel=4,
            )
            return True
    elif not isinstance(ens, Ensemble) or ens.how != "union":
        th, cv_f1, _ = tune_thresholds(steps, folds, ens.combine, fixed=pipe.fixed_steps or ())
        for name, _, matcher in steps:
            matcher.fit_threshold(th[name])
        pipe.tuning_.update({"thresholds": th, "cv_f1": cv_f1})
    return False


def _general_folds(pipe: Pipeline, steps: list[Step], cats: list[Postings], n: int) -> list[Any]:
    """Folds of generated general catalogues for a learned ensemble (``general``)."""
    size = min(n // 3, GENERAL_MAX)
    if not pipe.general or size < GENERAL_MIN or not all(c.has_titles for c in cats):
        return []
    try:
        return general_folds(steps, size, pipe.n_splits, refit=pipe.refit_cv,
                             random_state=pipe.random_state, verbose=pipe.verbose)
    except (ValueError, TypeError, KeyError, OSError) as exc:  # e.g. a step needing images
        warnings.warn(f"general catalogues left out of fit ({exc}); the model learns from "
                      "the given catalogues only (general=False says so).",
                      UserWarning, stacklevel=5)
        return []


def fit_embedders(steps: list[Step], postings: Postings, verbose: bool = False) -> None:
    """Fit each step's embedder on ``postings``; an embedder shared by steps once."""
    done: set[int] = set()
    for name, emb, _ in tqdm(steps, desc="fit", unit="step", disable=not verbose):
        if id(emb) not in done:
            logger.info("fitting step %s", name)
            emb.fit(postings)
            done.add(id(emb))


def catalogues(postings: Any) -> list[Postings]:
    """``fit``'s input as a non-empty list of non-empty Postings."""
    cats = [postings] if isinstance(postings, Postings) else postings
    if isinstance(cats, (str, bytes)) or not isinstance(cats, Sequence) or not cats:
        raise TypeError(
            "fit expects Postings (see read_postings) or a non-empty list of them, got "
            f"{type(postings).__name__}."
        )
    for i, cat in enumerate(cats):
        if not isinstance(cat, Postings):
            raise TypeError(f"fit: catalogue {i} is a {type(cat).__name__}, not Postings "
                            "(see read_postings).")
        if len(cat) == 0:
            raise ValueError(f"{cat.source}: no postings to fit on; fit needs labelled "
                             "postings (posting_id,title,label_group), at least one row.")
    return list(cats)
