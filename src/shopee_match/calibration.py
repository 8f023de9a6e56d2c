"""Calibrate a fitted pair model to a catalogue from a few labelled groups.

A pair model's trees rank pairs well across shops, but where to cut depends on the
catalogue: where most products have one offer (a nearest neighbour is usually another
product), the cut must be strict; where titles of one product differ a lot, loose. The
shipped model's one threshold is a compromise (see ``docs/transfer.md``). With a few
labelled groups of *your* catalogue, :func:`calibrate` re-chooses only that cut (the
probability threshold and the min-matches fallback) and leaves the trees alone: no
refit, seconds of work, nothing learnt that a few hundred labels could overfit.

Label whole groups (every offer of each labelled product) and, for the best result, pass
the rest of the catalogue unlabelled as ``context``: candidates are then built among all
postings, as they will be when you match, and only the labelled rows are scored (a match
to an unlabelled posting counts as wrong, since a labelled group is complete).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .data import Postings
from .metrics import graph_f1_scores, match_nothing_f1
from .rerank._fit import THRESHOLD_GRID

__all__ = ["CALIBRATION_GRID", "best_point", "calibrate", "calibration_curve"]

logger = logging.getLogger(__name__)

#: probability thresholds tried (the reranker's own tuning grid)
CALIBRATION_GRID = THRESHOLD_GRID
#: below this many labelled groups a warning says the cut may be noisy
FEW_GROUPS = 20


#: the columns a pipeline reads (besides ``posting_id``)
_READ = ("title", "image", "image_phash")


def _whole(labelled: Postings, context: Postings | None) -> tuple[Postings, int]:
    """Labelled rows first, then context rows not among them; only the columns a
    pipeline reads, labels dropped. Both must carry the same such columns."""
    cols = ["posting_id", *(c for c in _READ if c in labelled.df.columns)]
    frames = [labelled.df[cols]]
    image_dir, source = labelled.image_dir, labelled.source
    if context is not None:
        if not isinstance(context, Postings):
            raise TypeError(f"`context` must be Postings (see read_postings) or None, got "
                            f"{type(context).__name__}.")
        theirs = {c for c in _READ if c in context.df.columns}
        if theirs != set(cols[1:]):
            raise ValueError(
                f"{labelled.source} has columns {sorted(cols[1:])} and {context.source} has "
                f"{sorted(theirs)}; the labelled groups and the rest of the catalogue must "
                "carry the same title / image / image_phash columns (the cut is chosen with "
                "the candidates the model will see when matching)."
            )
        ctx = context.df[~context.df["posting_id"].isin(set(labelled.df["posting_id"]))]
        frames.append(ctx[cols])
        image_dir = image_dir or context.image_dir
        source = f"{labelled.source} + {context.source}"
    df = pd.concat(frames, ignore_index=True)
    return Postings(df, image_dir, source=source), len(labelled)


def _scored_groups(labelled: Postings, n_whole: int) -> np.ndarray:
    """Label codes for the labelled rows; each context row a group of its own."""
    g = labelled.groups()
    extra = np.arange(n_whole - len(g)) + (int(g.max()) + 1 if len(g) else 0)
    return np.concatenate([g, extra]).astype(np.intp)


def calibration_curve(ens: Any, proba: sp.csr_matrix, groups: np.ndarray, rows: np.ndarray,
                      min_matches: tuple[int, ...] = (1, 2)) -> dict[int, np.ndarray]:
    """Mean F1 of the labelled ``rows`` at each grid threshold, per min-matches, of the
    cuts fitted pair model ``ens`` makes (the model itself is not changed); ``groups``
    gives every unlabelled row a group of its own."""
    if not min_matches:
        raise ValueError("`min_matches` must name at least one value, e.g. (1, 2).")
    return {int(mm): np.array([graph_f1_scores(ens._select(proba, float(t), int(mm)), groups)[rows]
                               .mean() for t in CALIBRATION_GRID])
            for mm in min_matches}


def best_point(curves: dict[int, np.ndarray]) -> tuple[float, int, float]:
    """(threshold, min_matches, F1) at the best point of the 3-point-smoothed curves: a
    few labelled groups make a jagged curve, and a lone spike is noise."""
    best: tuple[float, int, float, float] | None = None
    for mm, f1 in curves.items():
        smooth = np.convolve(np.pad(f1, 1, mode="edge"), np.ones(3) / 3, mode="valid")
        i = int(np.argmax(smooth))
        if best is None or smooth[i] > best[3] + 1e-9:
            best = (float(CALIBRATION_GRID[i]), mm, float(f1[i]), float(smooth[i]))
    assert best is not None
    return best[0], best[1], best[2]


def calibrate(pipe: Any, labelled: Postings, context: Postings | None = None) -> Any:
    """Re-choose ``pipe``'s pair-model threshold and min-matches on labelled groups.

    ``pipe`` is a fitted :class:`~shopee_match.Pipeline` whose combiner is a learned pair
    model (:class:`~shopee_match.PairReranker`), such as :meth:`Pipeline.pretrained`.
    ``labelled`` holds complete label groups of the catalogue to match; ``context``
    (optional) the rest of it, unlabelled. Returns ``pipe``, changed in place; the
    choice and the F1 before and after on ``labelled`` are in
    ``pipe.tuning_["calibration"]``.

    >>> from shopee_match import Pipeline, make_catalog
    >>> cat = make_catalog(n_groups=60, per_group=(1, 3), images=False, seed=1)
    >>> pipe = Pipeline.pretrained().calibrate(cat)
    >>> sorted(pipe.tuning_["calibration"])[:3]
    ['context_postings', 'f1', 'f1_before']
    """
    pipe._check_fitted()
    ens = pipe._combiner()
    if not hasattr(ens, "predict_proba_graph"):
        raise ValueError(
            "calibrate re-chooses a learned pair model's threshold, but this pipeline "
            f"combines its steps with {type(ens).__name__}; fit it on labelled postings "
            "instead (`Pipeline.fit`, `shopee-match fit`)."
        )
    if not isinstance(labelled, Postings):
        raise TypeError(f"`labelled` must be Postings (see read_postings), got "
                        f"{type(labelled).__name__}.")
    if len(labelled) == 0:
        raise ValueError(f"{labelled.source}: no labelled postings to calibrate on.")
    groups = labelled.groups()  # fails clearly without label_group
    _, sizes = np.unique(groups, return_counts=True)
    if len(sizes) < FEW_GROUPS:
        warnings.warn(
            f"{labelled.source}: only {len(sizes)} labelled group(s); the chosen threshold "
            f"may be noisy (label at least {FEW_GROUPS} products, whole groups).",
            UserWarning, stacklevel=3,
        )
    whole, n_scored = _whole(labelled, context)
    graphs = pipe.step_graphs(whole)
    proba = ens.predict_proba_graph(graphs, whole.titles if whole.has_titles else None)
    scored = _scored_groups(labelled, len(whole))
    before_t = float(getattr(ens, "threshold_", ens.threshold))
    before_mm = int(getattr(ens, "min_matches_", ens.min_matches))
    before = float(graph_f1_scores(ens._select(proba, before_t), scored)[:n_scored].mean())
    mms = tuple(sorted({1, int(ens.min_matches)}))
    threshold, mm, f1 = best_point(calibration_curve(ens, proba, scored, np.arange(n_scored), mms))
    ens.threshold_, ens.min_matches_ = threshold, mm
    floor = match_nothing_f1(groups)
    pipe.tuning_ = dict(getattr(pipe, "tuning_", {}))
    pipe.tuning_["calibration"] = {
        "labelled_postings": n_scored, "labelled_groups": len(sizes),
        "context_postings": len(whole) - n_scored, "threshold": threshold,
        "min_matches": mm, "f1": f1, "threshold_before": before_t,
        "min_matches_before": before_mm, "f1_before": before, "match_nothing": floor,
    }
    logger.info("calibrated on %d labelled postings: threshold %.3f -> %.3f, F1 %.4f -> %.4f "
                "(in sample; match nothing %.4f)", n_scored, before_t, threshold, before, f1, floor)
    return pipe
