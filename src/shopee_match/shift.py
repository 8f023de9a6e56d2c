"""Is this catalogue like the ones a model learnt from? A label-free profile and a check.

A pair model fitted on one shop learns how far two offers of one product may differ
there. Shopee's offers are worded differently and rarely differ by a model code; on
PriceRunner or Amazon-Google near-identical titles that differ by a code or a number are
other products, and a Shopee-fitted model keeps them (it falls below matching nothing
there: ``benchmarks/RESULTS.md``, "Transfer"). The profile reads that property of a
catalogue without labels: among near-duplicate titles (TF-IDF cosine >= 0.5 among each
title's nearest neighbours), the share of pairs whose model codes, sizes or numbers
conflict. :meth:`Pipeline.fit <shopee_match.Pipeline.fit>` stores the profile of its
training catalogues in ``tuning_["profile"]``; :func:`check_shift` compares a catalogue
to be matched with it and warns when it is far from all of them.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .data import Postings

__all__ = ["PROFILE_MAX", "SHIFT_FACTOR", "add_profile", "catalogue_profile", "check_shift",
           "profile_rows", "shift_factor"]

#: :func:`check_shift` warns when the conflict share differs by more than this factor
#: from every training catalogue's.
SHIFT_FACTOR = 2.0
#: a catalogue larger than this is profiled on a seeded random sample of this many postings
PROFILE_MAX = 20_000
#: added to both shares before their ratio, so that two near-zero shares are alike
_SMOOTH = 0.02


def profile_rows(n: int, max_postings: int | None = PROFILE_MAX) -> np.ndarray:
    """The rows of an ``n``-posting catalogue that :func:`catalogue_profile` reads, sorted:
    every row, or a seeded random ``max_postings`` of them (a runtime that holds the
    catalogue in parts fetches these titles only, and gets the same profile).

    >>> profile_rows(5).tolist(), len(profile_rows(50_000, 100))
    ([0, 1, 2, 3, 4], 100)
    """
    if max_postings is not None and n > max_postings:
        return np.sort(np.random.default_rng(0).choice(n, max_postings, replace=False))
    return np.arange(n)


def catalogue_profile(postings: Postings, k: int = 10, min_cosine: float = 0.5,
                      max_postings: int | None = PROFILE_MAX) -> dict[str, float]:
    """Label-free statistics of a catalogue's near-duplicate titles.

    ``near_pairs``: pairs among each title's ``k`` nearest TF-IDF neighbours with cosine
    >= ``min_cosine``; ``conflict_share``: of those, the share whose model codes, sizes or
    numbers conflict; ``code_share``: the share where either title carries a model code.
    A catalogue larger than ``max_postings`` is profiled on a random sample of that many
    (seeded: the same catalogue gives the same profile).

    >>> import pandas as pd
    >>> coded = Postings(pd.DataFrame({"posting_id": list("abcd"), "title": [
    ...     "Panasonic phone KX-TS108W", "Panasonic phone KX-TS600W",
    ...     "Acme kettle 1.5 l steel", "Acme kettle 1.7 l steel"]}))
    >>> p = catalogue_profile(coded, k=3)
    >>> p["near_pairs"] >= 1, p["conflict_share"]
    (True, 1.0)
    """
    from .neighbors.matcher import NeighborMatcher
    from .rerank.title_features import title_features
    from .text.tfidf import TfidfEmbedder

    if max_postings is not None and len(postings) > max_postings:
        postings = postings.subset(profile_rows(len(postings), max_postings))
    titles = postings.titles
    n = len(titles)
    unknown = {"near_pairs": 0.0, "conflict_share": float("nan"), "code_share": float("nan")}
    if n < 2:
        return unknown
    try:
        x = TfidfEmbedder().fit(postings).embed(postings)
    except ValueError:  # no word in any title: nothing to read
        return unknown
    idx, sim = NeighborMatcher(threshold=min_cosine, k=min(k + 1, n)).neighbors(x)
    rows = np.repeat(np.arange(n), idx.shape[1])
    cols, s = idx.ravel(), sim.ravel()
    keep = (cols >= 0) & (rows != cols) & (s >= min_cosine)
    lo, hi = np.minimum(rows[keep], cols[keep]), np.maximum(rows[keep], cols[keep])
    pairs = np.unique(lo.astype(np.int64) * n + hi)
    if len(pairs) == 0:
        return unknown
    f = title_features(titles, pairs // n, pairs % n)
    conflict = (f["code_conflict"] + f["core_conflict"] + f["qty_conflict"] + f["num_conflict"]) > 0
    code = (f["code_shared"] + f["code_conflict"] + f["code_onesided"]) > 0
    return {"near_pairs": float(len(pairs)), "conflict_share": float(conflict.mean()),
            "code_share": float(code.mean())}


def shift_factor(trained: Sequence[Mapping[str, float]], profile: Mapping[str, float]) -> float:
    """How far ``profile`` is from the nearest of the ``trained`` profiles: the ratio of
    their conflict shares (smoothed, >= 1; ``nan`` when either is unknown).

    >>> shift_factor([{"conflict_share": 0.05}], {"conflict_share": 0.28})
    4.285714285714286
    """
    b = float(profile.get("conflict_share", np.nan)) + _SMOOTH
    ratios = [max(a, b) / min(a, b) for a in
              (float(t.get("conflict_share", np.nan)) + _SMOOTH for t in trained)
              if np.isfinite(a) and np.isfinite(b)]
    return min(ratios) if ratios else float("nan")


def check_shift(pipe: Any, postings: Postings, factor: float = SHIFT_FACTOR, *,
                guarded: bool = False) -> float:
    """Warn when ``postings`` look unlike every catalogue ``pipe`` was fitted on.

    Returns the :func:`shift_factor` (``nan`` for a model without a stored profile, such
    as the shipped one, which learnt from several kinds of shop). The warning suggests
    the shipped model or a calibration on a few labelled groups instead; with
    ``guarded`` (what :class:`~shopee_match.Pipeline`'s ``shift_guard`` does) it says that
    only the pairs the shipped model also keeps are kept.

    >>> from shopee_match import Pipeline, make_catalog
    >>> check_shift(Pipeline.pretrained(), make_catalog(n_groups=5, images=False))
    nan
    """
    trained = getattr(pipe, "tuning_", {}).get("profile")
    if not trained:
        return float("nan")
    got = shift_factor(trained, catalogue_profile(postings))
    if np.isfinite(got) and got > factor:
        advice = ("keeping only the pairs the shipped general model also keeps "
                  "(Pipeline shift_guard=False, or `shopee-match match --no-shift-guard`, "
                  "keeps this model's own)" if guarded else
                  "consider Pipeline.pretrained() (`shopee-match match` without --model) or "
                  "calibrating on a few labelled groups (`shopee-match calibrate`)")
        warnings.warn(
            f"{postings.source}: its near-duplicate titles conflict on codes, sizes or "
            f"numbers {got:.1f}x as often (or as rarely) as in the catalogues this model was "
            f"fitted on, so its cut may not carry over; {advice}.", UserWarning,
            stacklevel=3 if guarded else 2)
    return got


def add_profile(pipe: Any, postings: Postings) -> None:
    """Count ``postings`` among the catalogues ``pipe`` knows (after a calibration on
    them), so :func:`check_shift` and the pipeline's ``shift_guard`` treat a catalogue
    like them as familiar. A model without stored profiles (the shipped one) is left as
    it is.

    >>> from shopee_match import Pipeline, make_catalog
    >>> cat = make_catalog(n_groups=40, images=False, seed=2)
    >>> pipe = Pipeline.default(phash=False).fit(cat)
    >>> add_profile(pipe, cat); len(pipe.tuning_["profile"])
    2
    """
    tuning = getattr(pipe, "tuning_", None)
    if isinstance(tuning, dict) and tuning.get("profile") and postings.has_titles:
        tuning["profile"] = [*tuning["profile"], catalogue_profile(postings)]
