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
from .rerank import THRESHOLD_GRID
from .shift import add_profile

__all__ = ["CALIBRATION_GRID", "STRATA", "best_point", "calibrate", "calibrate_pairs",
           "calibration_curve", "estimated_f1", "pair_strata", "read_pair_labels",
           "self_trained_pairs"]

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
                      min_matches: tuple[int, ...] = (1, 2),
                      learnt: sp.csr_matrix | None = None) -> dict[int, np.ndarray]:
    """Mean F1 of the labelled ``rows`` at each grid threshold, per min-matches, of the
    cuts fitted pair model ``ens`` makes (the model itself is not changed); ``groups``
    gives every unlabelled row a group of its own. ``learnt``: pairs added to every cut
    (what self-training adds, from :func:`self_trained_pairs`)."""
    if not min_matches:
        raise ValueError("`min_matches` must name at least one value, e.g. (1, 2).")

    def cut(t: float, mm: int) -> sp.csr_matrix:
        g = ens.cut(proba, t, mm)
        return g if learnt is None else sp.csr_matrix(g + learnt)

    return {int(mm): np.array([graph_f1_scores(cut(float(t), int(mm)), groups)[rows]
                               .mean() for t in CALIBRATION_GRID])
            for mm in min_matches}


def self_trained_pairs(ens: Any, proba: sp.csr_matrix, titles: Any) -> sp.csr_matrix | None:
    """The candidate pairs self-training adds whatever the cut (they never depend on
    it but for the pairs the cut already keeps), or ``None`` where ``ens`` does not
    self-train or there are no titles."""
    if not getattr(ens, "self_train", False) or titles is None:
        return None
    n = proba.shape[0]
    return sp.csr_matrix(ens.self_trained(proba, titles, sp.identity(n, format="csr")))


def _self_train_options(learnt: sp.csr_matrix, lo: np.ndarray, hi: np.ndarray, y: np.ndarray,
                        w: np.ndarray, dropped: np.ndarray, ens: Any) -> list[bool]:
    """Whether the cut keeps self-training's pairs, from the reviewed ones among them
    that the cut in use drops (``dropped``: the reviewed pairs below it).

    They are chosen by their titles, and their probability is low by construction, so a
    map from probability to chance (the Platt map) undervalues them: the answers say.
    With at least :data:`MIN_EACH` of them reviewed, they stay if most were answered
    "same" (weighted), as self-training's own rule reads its curve; with fewer, as they
    were."""
    mark = (np.asarray(learnt[lo, hi]).ravel() != 0) & dropped  # (at least MIN_PAIRS)
    if int(mark.sum()) < MIN_EACH:
        return [bool(getattr(ens, "self_train_", True))]
    return [bool(np.average(y[mark], weights=w[mark]) >= 0.5)]


def best_point(curves: dict[Any, np.ndarray]) -> tuple[float, Any, float]:
    """(threshold, key, F1) at the best point of the 3-point-smoothed curves (keyed by
    min-matches, or by any setting tried beside the threshold): a few labelled groups
    make a jagged curve, and a lone spike is noise."""
    best: tuple[float, Any, float, float] | None = None
    for mm, f1 in curves.items():
        smooth = np.convolve(np.pad(f1, 1, mode="edge"), np.ones(3) / 3, mode="valid")
        i = int(np.argmax(smooth))
        if best is None or smooth[i] > best[3] + 1e-9:
            best = (float(CALIBRATION_GRID[i]), mm, float(f1[i]), float(smooth[i]))
    assert best is not None
    return best[0], best[1], best[2]


def calibrate(pipe: Any, labelled: Postings | None, context: Postings | None = None) -> Any:
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
    pipe.check_is_fitted()
    ens = pipe.combiner_
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
    learnt = self_trained_pairs(ens, proba, whole.titles if whole.has_titles else None)
    was = bool(getattr(ens, "self_train_", True)) and learnt is not None
    cut = ens.cut(proba, before_t)
    before = float(graph_f1_scores(cut + learnt if was else cut, scored)[:n_scored].mean())
    mms = tuple(sorted({1, int(ens.min_matches)}))
    rows = np.arange(n_scored)
    curves = {(mm, False): f for mm, f in calibration_curve(ens, proba, scored, rows, mms).items()}
    if learnt is not None:  # the labels also say whether self-training helps here
        curves.update({(mm, True): f for mm, f in calibration_curve(
            ens, proba, scored, rows, mms, learnt).items()})
    threshold, (mm, self_train), f1 = best_point(curves)
    ens.threshold_, ens.min_matches_ = threshold, mm
    if learnt is not None:
        ens.self_train_ = self_train
    floor = match_nothing_f1(groups)
    pipe.tuning_ = dict(getattr(pipe, "tuning_", {}))
    pipe.tuning_["calibration"] = {
        "labelled_postings": n_scored, "labelled_groups": len(sizes),
        "context_postings": len(whole) - n_scored, "threshold": threshold,
        "min_matches": mm, "f1": f1, "threshold_before": before_t,
        "min_matches_before": before_mm, "f1_before": before, "match_nothing": floor,
        "self_train": bool(getattr(ens, "self_train_", learnt is not None)),
    }
    add_profile(pipe, whole)  # a catalogue it is now cut for: the shift guard stands down
    logger.info("calibrated on %d labelled postings: threshold %.3f -> %.3f, F1 %.4f -> %.4f "
                "(in sample; match nothing %.4f)", n_scored, before_t, threshold, before, f1, floor)
    return pipe


# --- from reviewed pairs -----------------------------------------------------------------
#: strata of candidate pairs by probability around the cut ``t``: what the review queue
#: samples from (calibration reports, per stratum, candidate pairs and answered ones)
STRATA = ("unlikely", "below", "near", "above")
#: half-width of the ``near`` stratum around the cut, and the ``unlikely`` ceiling
NEAR_BAND, UNLIKELY = 0.15, 0.02
#: fewest labelled pairs, and of each answer, that can move the cut
MIN_PAIRS, MIN_EACH = 20, 5


def pair_strata(proba: np.ndarray, threshold: float) -> np.ndarray:
    """The stratum (index into :data:`STRATA`) of pairs with probabilities ``proba``
    when the cut is at ``threshold``.

    >>> pair_strata(np.array([0.01, 0.2, 0.45, 0.9]), 0.5).tolist()
    [0, 1, 2, 3]
    """
    p = np.asarray(proba, dtype=np.float64)
    out = np.where(p < UNLIKELY, 0, np.where(p < threshold - NEAR_BAND, 1, 3))
    out[np.abs(p - threshold) <= NEAR_BAND] = 2
    return out.astype(np.intp)


def read_pair_labels(path: str | Any) -> pd.DataFrame:
    """A ``labels.csv`` of reviewed pairs (``left_id,right_id,same`` with 1/0, as the
    review page exports; an optional ``weight`` column overrides the stratum weights).

    >>> import io
    >>> read_pair_labels(io.StringIO("left_id,right_id,same\\na,b,1\\n")).same.tolist()
    [1]
    """
    try:
        df = pd.read_csv(path, dtype={"left_id": str, "right_id": str}, keep_default_na=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file; pass the labels.csv the review page "
                                "exported.") from None
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as exc:
        raise ValueError(f"{path}: not a readable labels CSV ({exc}); expected a header "
                         "`left_id,right_id,same`.") from None
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in ("left_id", "right_id", "same") if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; a labels CSV has "
                         f"`left_id,right_id,same` (1 = same product, 0 = different).")
    same = df["same"].astype(str).str.strip().str.lower().map(
        {"1": 1, "0": 0, "true": 1, "false": 0, "same": 1, "different": 0, "1.0": 1, "0.0": 0})
    if same.isna().any():
        row = int(np.flatnonzero(same.isna().to_numpy())[0])
        raise ValueError(f"{path}: row {row + 2}: `same` is {df['same'].iloc[row]!r}; "
                         "write 1 (same product) or 0 (different).")
    df["same"] = same.astype(np.int8)
    df.attrs["source"] = str(path)
    return df


def _pair_rows(labels: pd.DataFrame, catalogue: Postings
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Row positions of each labelled pair in ``catalogue``, their answers and which
    label rows were kept (a repeated pair once); one-line errors for unknown ids,
    self-pairs and a pair labelled both ways."""
    source = labels.attrs.get("source", "labels")
    pos = pd.Series(np.arange(len(catalogue)), index=catalogue.df["posting_id"].astype(str))
    left = labels["left_id"].astype(str).str.strip()
    right = labels["right_id"].astype(str).str.strip()
    for side in (left, right):
        unknown = ~side.isin(pos.index)
        if unknown.any():
            row = int(np.flatnonzero(unknown.to_numpy())[0])
            raise ValueError(f"{source}: row {row + 2}: posting id {side.iloc[row]!r} is not "
                             f"in the catalogue {catalogue.source} ({int(unknown.sum())} such "
                             "row(s)); label pairs of the catalogue you calibrate with.")
    a, b = pos[left].to_numpy(), pos[right].to_numpy()
    if (a == b).any():
        row = int(np.flatnonzero(a == b)[0])
        raise ValueError(f"{source}: row {row + 2}: posting {left.iloc[row]!r} is paired "
                         "with itself; a label is about two different postings.")
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    same = labels["same"].to_numpy().astype(np.int8)
    frame = pd.DataFrame({"lo": lo, "hi": hi, "same": same})
    answers = frame.groupby(["lo", "hi"])["same"].nunique()
    if (answers > 1).any():
        lo0, hi0 = answers[answers > 1].index[0]
        ids = catalogue.posting_id
        raise ValueError(f"{source}: the pair {ids[lo0]} / {ids[hi0]} is labelled both same "
                         "and different; keep one answer per pair.")
    keep = ~frame.duplicated(["lo", "hi"]).to_numpy()
    return lo[keep], hi[keep], same[keep], keep


def _platt(p: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """``(a, b)`` of P(same) = sigmoid(a logit(p) + b), fitted by weighted log-loss with
    a unit pull towards the model's own probabilities (a = 1, b = 0)."""
    from scipy.optimize import minimize

    z = np.log(np.clip(p, 1e-4, 1 - 1e-4) / (1 - np.clip(p, 1e-4, 1 - 1e-4)))
    w = w * (len(w) / w.sum())

    def loss(ab: np.ndarray) -> float:
        s = ab[0] * z + ab[1]
        ll = np.sum(w * (np.logaddexp(0, s) - y * s))
        return float(ll + 0.5 * ((ab[0] - 1) ** 2 + ab[1] ** 2))

    res = minimize(loss, np.array([1.0, 0.0]), method="Nelder-Mead",
                   options={"xatol": 1e-5, "fatol": 1e-8, "maxiter": 2000})
    return float(res.x[0]), float(res.x[1])


def estimated_f1(selected: sp.csr_matrix, q: sp.csr_matrix) -> float:
    """F1 of match sets ``selected`` (diagonal included) estimated from ``q``, each
    candidate pair's chance of being the same product (upper triangle, no diagonal):
    the pooled posting F1 ``(n + 2 TP) / (n + 2 TP + FP + FN)``, every posting's match
    with itself counted, with TP, FP, FN the expected pair counts.

    >>> q = sp.csr_matrix(np.array([[0, .9, .1], [0, 0, 0], [0, 0, 0]]))
    >>> round(estimated_f1(sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1]])), q), 3)
    0.96
    """
    n = selected.shape[0]
    kept = sp.triu(sp.csr_matrix(selected), k=1).tocsr()
    kept.data[:] = 1.0
    tp = float(kept.multiply(q).sum())
    fp = kept.nnz - tp
    fn = float(q.sum()) - tp
    return (n + 2 * tp) / max(n + 2 * tp + fp + fn, 1e-12)


def calibrate_pairs(pipe: Any, labels: pd.DataFrame | str, catalogue: Postings | None) -> Any:
    """Re-choose ``pipe``'s pair-model cut from reviewed pairs of ``catalogue``.

    ``labels``: ``left_id, right_id, same`` (a DataFrame or the review page's
    ``labels.csv``; an optional ``weight`` column weights the fit). The review queue
    samples pairs by their probability alone (:func:`pair_strata`), so the answered
    pairs estimate P(same | probability) as they are: a Platt map of the model's
    probabilities, fitted on them. The F1 that map predicts is then summed over *every*
    candidate pair of the catalogue (:func:`estimated_f1`; answered pairs as answered),
    so the queue's over-sampling near the cut does not tilt the choice: each stratum
    counts with its share of the catalogue. The threshold and min-matches maximising it
    are kept (``pipe`` changed in place;
    the details in ``pipe.tuning_["calibration"]``).

    >>> from shopee_match import Pipeline, make_catalog
    >>> cat = make_catalog(n_groups=60, per_group=(1, 3), images=False, seed=1)
    >>> pipe = Pipeline.pretrained()
    >>> g = cat.df.set_index("posting_id")["label_group"]
    >>> ids = cat.df["posting_id"].tolist()
    >>> pairs = pd.DataFrame([(a, b, int(g[a] == g[b])) for a, b in zip(ids[:-1], ids[1:])],
    ...                      columns=["left_id", "right_id", "same"])
    >>> pipe = calibrate_pairs(pipe, pairs, cat)
    >>> pipe.tuning_["calibration"]["labelled_pairs"] == len(pairs)
    True
    """
    pipe.check_is_fitted()
    ens: Any = getattr(pipe, "combiner_", None)
    if not hasattr(ens, "predict_proba_graph"):
        raise ValueError(
            "calibrate re-chooses a learned pair model's threshold, but this pipeline "
            f"combines its steps with {type(ens).__name__}; fit it on labelled postings "
            "instead (`Pipeline.fit`, `shopee-match fit`).")
    if not isinstance(catalogue, Postings):
        raise TypeError("calibrate with pairs needs the catalogue they were reviewed in as "
                        f"Postings (`context`), got {type(catalogue).__name__}.")
    if not isinstance(labels, pd.DataFrame):
        labels = read_pair_labels(labels)
    lo, hi, y, keep = _pair_rows(labels, catalogue)
    source = labels.attrs.get("source", "labels")
    n_same = int(y.sum())
    if len(y) < MIN_PAIRS or n_same < MIN_EACH or len(y) - n_same < MIN_EACH:
        raise ValueError(
            f"{source}: too few labels to move the cut: {len(y)} pairs ({n_same} same, "
            f"{len(y) - n_same} different); label at least {MIN_PAIRS}, with at least "
            f"{MIN_EACH} of each answer (the review page's queue gives a good mix).")
    graphs = pipe.step_graphs(catalogue)
    proba = ens.predict_proba_graph(graphs, catalogue.titles if catalogue.has_titles else None)
    proba = sp.csr_matrix(proba, dtype=np.float64)
    before_t = float(getattr(ens, "threshold_", ens.threshold))
    before_mm = int(getattr(ens, "min_matches_", ens.min_matches))
    p_lab = np.asarray(proba[lo, hi]).ravel()
    cands = sp.triu(proba, k=1).tocsr()
    pop = np.bincount(pair_strata(cands.data, before_t), minlength=len(STRATA))
    lab_s = pair_strata(p_lab, before_t)
    seen = np.bincount(lab_s, minlength=len(STRATA))
    if "weight" in labels.columns:  # the caller's own sampling weights
        w = pd.to_numeric(labels["weight"], errors="coerce").to_numpy()[keep]
        w = np.where(np.isfinite(w) & (w > 0), w, 1.0)
    else:  # the queue samples by probability alone: P(same | p) needs no weights
        w = np.ones(len(y))
    a, b = _platt(p_lab, y.astype(np.float64), w.astype(np.float64))
    q = cands.copy()  # each candidate pair's chance, the labelled ones as answered
    z = np.log(np.clip(q.data, 1e-4, 1 - 1e-4) / (1 - np.clip(q.data, 1e-4, 1 - 1e-4)))
    q.data = 1 / (1 + np.exp(-(a * z + b)))
    q = q.tolil()
    q[lo, hi] = y.astype(np.float64)
    q = q.tocsr()
    mms = tuple(sorted({1, int(ens.min_matches)}))
    learnt = self_trained_pairs(ens, proba, catalogue.titles if catalogue.has_titles else None)
    options = [False] if learnt is None else _self_train_options(
        learnt, lo, hi, y, w, p_lab < before_t, ens)

    def cut(t: float, mm: int, with_learnt: bool) -> sp.csr_matrix:
        g = ens.cut(proba, t, mm)
        return sp.csr_matrix(g + learnt) if with_learnt and learnt is not None else g

    curves = {(mm, st): np.array([estimated_f1(cut(float(t), mm, st), q)
                                  for t in CALIBRATION_GRID]) for mm in mms for st in options}
    threshold, (mm, self_train), f1 = best_point(curves)
    was = bool(getattr(ens, "self_train_", True)) and learnt is not None
    before = estimated_f1(cut(before_t, before_mm, was), q)
    ens.threshold_, ens.min_matches_ = threshold, mm
    if learnt is not None:
        ens.self_train_ = self_train
    pipe.tuning_ = dict(getattr(pipe, "tuning_", {}))
    pipe.tuning_["calibration"] = {
        "method": "pairs", "labelled_pairs": len(y), "same_pairs": n_same,
        "context_postings": len(catalogue), "threshold": threshold, "min_matches": mm,
        "f1": f1, "threshold_before": before_t, "min_matches_before": before_mm,
        "f1_before": before, "platt": [a, b], "self_train": bool(self_train),
        "strata": {s: [int(pop[i]), int(seen[i])] for i, s in enumerate(STRATA)},
    }
    add_profile(pipe, catalogue)
    logger.info("calibrated on %d reviewed pairs: threshold %.3f -> %.3f, min matches %d -> "
                "%d (expected F1 %.4f -> %.4f)", len(y), before_t, threshold, before_mm, mm,
                before, f1)
    return pipe
