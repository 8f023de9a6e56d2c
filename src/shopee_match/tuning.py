"""Threshold search on labelled data, with group-aware cross-validation.

Each fold holds out whole label groups. Embedders are refitted on the other folds (so a
vocabulary or model never sees the groups it is scored on), candidates are searched
*within* the held-out fold (as they will be at predict time), and thresholds are picked
by coordinate ascent on the mean F1 of the combined match sets over the folds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from ._sweep import UnionSweep
from .data import Postings, group_kfold
from .metrics import graph_f1_scores
from .neighbors.blend import BlendMatcher
from .neighbors.hamming import HashMatcher
from .neighbors.matcher import NeighborMatcher, shared_searches
from .protocols import ClassRegistry

__all__ = ["TUNING", "Fold", "Tuning", "collect_folds", "general_folds", "loosest_candidates",
           "threshold_grid", "tune_thresholds"]

logger = logging.getLogger(__name__)

#: Loosest Hamming radius searched when tuning a :class:`HashMatcher`.
MAX_TUNED_RADIUS = 10
#: A similarity threshold no pair reaches: the step keeps only self-matches.
OFF = 1.01


@dataclass
class Fold:
    """One held-out fold: each step's candidate graph over the fold, and its groups."""

    cands: dict[str, sp.csr_matrix]
    groups: np.ndarray
    titles: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Tuning:
    """How tuning treats a matcher class: the similarity thresholds it tries
    (``grid(matcher)``) and the candidate graph they are tried on
    (``loosest(matcher, emb)``: every pair the loosest of them could keep)."""

    grid: Callable[[Any], np.ndarray]
    loosest: Callable[[Any, Any], sp.csr_matrix]


def _cosine_grid(matcher: Any) -> np.ndarray:
    # OFF (above any cosine) lets tuning switch off a step that only hurts the union
    return np.r_[np.round(np.arange(0.10, 0.99, 0.01), 4), 0.99, 0.995, 0.999, OFF]


def _radius_grid(matcher: Any) -> np.ndarray:
    return np.array([1.0 - r / 32.0 for r in range(MAX_TUNED_RADIUS + 1)])


#: cosine thresholds on the matcher's own candidates: what a matcher not registered gets
COSINE = Tuning(grid=_cosine_grid, loosest=lambda matcher, emb: matcher.candidates(emb))
#: per matcher class (subclasses inherit); register yours with ``TUNING.register(cls, Tuning(...))``
TUNING: ClassRegistry[Tuning] = ClassRegistry("threshold tuning", inherit=True)
TUNING.register(NeighborMatcher, COSINE)
TUNING.register(BlendMatcher, COSINE)
TUNING.register(HashMatcher, Tuning(
    grid=_radius_grid,
    loosest=lambda matcher, emb: matcher.candidates(emb, max_distance=MAX_TUNED_RADIUS)))


def threshold_grid(matcher: Any) -> np.ndarray:
    """Similarity thresholds to try for ``matcher`` (Hamming radii for a HashMatcher).

    >>> from shopee_match import HashMatcher
    >>> threshold_grid(HashMatcher())[:2].tolist()
    [1.0, 0.96875]
    """
    return (TUNING.lookup(matcher) or COSINE).grid(matcher)


def loosest_candidates(matcher: Any, emb: Any) -> sp.csr_matrix:
    """The matcher's candidate graph at its loosest tunable setting."""
    return (TUNING.lookup(matcher) or COSINE).loosest(matcher, emb)


def collect_folds(
    steps: Sequence[tuple[str, Any, Any]],
    postings: Postings,
    n_splits: int = 3,
    *,
    refit: bool = True,
    random_state: int | None = 0,
    verbose: bool = False,
) -> list[Fold]:
    """Embed and search each held-out fold of ``postings`` for every step.

    With ``refit=True`` each embedder is cloned and fitted on the other folds; with
    ``refit=False`` the (already fitted) embedders are used as they are, which is faster
    for deep models but lets the scored groups leak into training.
    """
    from sklearn.base import clone

    groups = postings.groups()
    folds: list[Fold] = []
    splits = list(group_kfold(groups, n_splits, random_state))
    bar = tqdm(total=len(splits) * len(steps), desc="cross-validation", disable=not verbose)
    for train_rows, test_rows in splits:
        train, test = postings.subset(train_rows), postings.subset(test_rows)
        cands = {}
        embedded: dict[int, Any] = {}  # steps sharing one embedder embed once
        with shared_searches():  # ... and search once where their k and backend agree
            for name, embedder, matcher in steps:
                if id(embedder) not in embedded:
                    emb_model = clone(embedder, safe=False).fit(train) if refit else embedder
                    embedded[id(embedder)] = emb_model.embed(test)
                cands[name] = loosest_candidates(matcher, embedded[id(embedder)])
                bar.update(1)
        folds.append(Fold(cands=cands, groups=groups[test_rows],
                          titles=test.titles if test.has_titles else []))
    bar.close()
    return folds


def general_folds(
    steps: Sequence[tuple[str, Any, Any]],
    n_postings: int,
    n_splits: int = 3,
    *,
    refit: bool = True,
    random_state: int | None = 0,
    verbose: bool = False,
) -> list[Fold]:
    """The folds of generated general catalogues of about ``n_postings`` titles in all
    (:func:`~shopee_match._generate.general_catalogues`), searched as
    :func:`collect_folds` searches the user's. They have titles only: a step that needs
    images or hashes finds none there (its graph is empty, silently).
    """
    import warnings

    from ._generate import general_catalogues

    seed = 0 if random_state is None else int(random_state)
    folds: list[Fold] = []
    with warnings.catch_warnings():  # "no image_phash column": expected, titles only
        warnings.simplefilter("ignore", UserWarning)
        for cat in general_catalogues(n_postings, seed=seed):
            folds += collect_folds(steps, cat, n_splits, refit=refit,
                                   random_state=random_state, verbose=verbose)
    return folds


def tune_thresholds(
    steps: Sequence[tuple[str, Any, Any]],
    folds: Sequence[Fold],
    combine: Callable[[Mapping[str, sp.csr_matrix]], sp.csr_matrix],
    n_rounds: int = 2,
    fixed: Sequence[str] = (),
) -> tuple[dict[str, float], float, dict[str, dict[str, list[float]]]]:
    """Pick each step's similarity threshold to maximise the combined mean F1 over folds.

    Steps named in ``fixed`` keep their matcher's current threshold.

    Returns ``(thresholds, best_f1, curves)``: the chosen threshold per step, the mean F1
    they reach, and per step the F1 of that step alone at each grid threshold (for
    threshold-F1 plots).
    """
    names = [name for name, _, _ in steps]
    matchers = {name: m for name, _, m in steps}
    grids = {name: threshold_grid(matchers[name]) for name in names}
    cache: dict[tuple[str, float, int], sp.csr_matrix] = {}

    def selected(name: str, t: float, f: int) -> sp.csr_matrix:
        key = (name, float(t), f)
        if key not in cache:
            cache[key] = matchers[name].select(folds[f].cands[name], threshold=float(t))
        return cache[key]

    def score(th: Mapping[str, float], only: str | None = None) -> float:
        total = 0.0
        for f, fold in enumerate(folds):
            if only is not None:
                g = selected(only, th[only], f)
            else:
                g = combine({n: selected(n, th[n], f) for n in names})
            total += float(graph_f1_scores(g, fold.groups).mean())
        return total / len(folds)

    fast = UnionSweep.build(matchers, folds, grids, combine)
    if fast is not None:  # the same scores, a whole grid at a time
        return _tune_sweeping(fast, names, matchers, grids, n_rounds, fixed, len(folds))
    curves: dict[str, dict[str, list[float]]] = {}
    best: dict[str, float] = {}
    for name in names:
        f1s = [score({name: t}, only=name) for t in grids[name]]
        curves[name] = {"threshold": [float(t) for t in grids[name]], "f1": f1s}
        best[name] = float(grids[name][int(np.argmax(f1s))])
        if name in fixed:
            best[name] = float(matchers[name].similarity_threshold())
        cache.clear()
    best_score = score(best)
    if len(names) > 1:
        for _ in range(n_rounds):
            improved = False
            for name in (n for n in names if n not in fixed):
                for t in grids[name]:
                    trial = {**best, name: float(t)}
                    s = score(trial)
                    if s > best_score + 1e-9:
                        best, best_score, improved = trial, s, True
                cache = {k: v for k, v in cache.items() if k[0] != name or k[1] == best[name]}
            if not improved:
                break
    logger.info("tuned thresholds %s: mean F1 %.4f over %d folds", best, best_score, len(folds))
    return best, best_score, curves


def _tune_sweeping(
    sweep: UnionSweep, names: list[str], matchers: Mapping[str, Any],
    grids: Mapping[str, np.ndarray], n_rounds: int, fixed: Sequence[str], n_folds: int,
) -> tuple[dict[str, float], float, dict[str, dict[str, list[float]]]]:
    """:func:`tune_thresholds`' search, each step's grid scored in one sweep."""
    curves: dict[str, dict[str, list[float]]] = {}
    best: dict[str, float] = {}
    for name in names:
        f1s = sweep.sweep({}, name, alone=True)
        curves[name] = {"threshold": [float(t) for t in grids[name]], "f1": f1s}
        best[name] = float(grids[name][int(np.argmax(f1s))])
        if name in fixed:
            best[name] = float(matchers[name].similarity_threshold())
    best_score = sweep.score(best)
    if len(names) > 1:
        for _ in range(n_rounds):
            improved = False
            for name in (n for n in names if n not in fixed):
                for t, s in zip(grids[name], sweep.sweep(best, name)):
                    if s > best_score + 1e-9:
                        best, best_score, improved = {**best, name: float(t)}, s, True
            if not improved:
                break
    logger.info("tuned thresholds %s: mean F1 %.4f over %d folds", best, best_score, n_folds)
    return best, best_score, curves
