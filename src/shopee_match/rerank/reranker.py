"""``PairReranker``: a second-stage classifier over candidate pairs (2nd/3rd place recipe).

The first stage proposes pairs (each modality's top-k neighbours, phash pairs within a
Hamming radius). A gradient-boosted tree model scores every pair from
:func:`~shopee_match.rerank.pair_features.pair_features` (similarities, ranks both ways,
neighbourhood density, shared numbers) and a threshold on its probability, tuned by
group-aware cross-validation on the training postings, makes the match graph.

The trees are LightGBM's: trained and evaluated by its native multi-threaded code, stored
in its text model format (``.txt`` + JSON state; no pickle), which loads back exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from .._memory import block_pairs, parse_memory
from .._params import BaseEstimator
from .._registry import register
from .._validation import NotFittedError
from ..neighbors.graph import grow as grow_graph
from ..neighbors.graph import select as select_graph
from . import _gbm, _prefilter, _train
from ._blocks import BYTES_PER_PAIR, score_blocks
from ._io import read_state, write_state
from ._prior import adapt_to_prior
from ._selftrain import self_train

__all__ = ["PairReranker"]

logger = logging.getLogger(__name__)

Cands = Mapping[str, sp.spmatrix]


@register()
class PairReranker(BaseEstimator):
    """Score candidate pairs with gradient-boosted trees; keep pairs above a threshold.

    Parameters
    ----------
    threshold : probability a pair needs; replaced by the tuned ``threshold_`` when
        ``tune_threshold`` is true.
    min_matches : smallest match-set size (itself included); ``2`` keeps each posting's
        most probable partner when none passes, if its probability is >= ``min_proba``.
    min_proba : floor for those fallback partners.
    tune_threshold : pick ``threshold_`` maximising mean F1 of out-of-fold predictions;
        also picks ``min_matches_`` between ``1`` and ``min_matches`` (forcing a partner
        on every posting hurts catalogues of mostly one-offer products).
    cv : group folds for that tuning when ``fit`` gets one graph per modality.
    use_titles : add title features (shared numbers, word overlap, lengths) when titles
        are given.
    max_iter, learning_rate, max_leaf_nodes, min_samples_leaf, l2_regularization :
        LightGBM's ``num_iterations``, ``learning_rate``, ``num_leaves``,
        ``min_data_in_leaf`` and ``lambda_l2`` (binary objective, 255 bins, NaN as missing,
        ``deterministic=True``: the same data and seed give the same trees).
    n_stages : ``2`` stacks a second model that also sees the first one's out-of-fold
        probabilities as a graph (each pair's rank and neighbourhood among probabilities).
    optional_modalities : modalities that may be missing at predict time (e.g.
        ``["phash"]`` for catalogues without images): training adds a copy of every
        candidate set with their graphs emptied, so a missing modality is not read as
        "far apart". Costs a second copy of the training pairs.
    adapt_prior : re-estimate, on each catalogue matched, its share of true pairs among
        the candidates (EM without labels, :mod:`~shopee_match.rerank._prior`) and correct
        the probabilities to it before the threshold: a catalogue of mostly one-offer
        products then keeps fewer pairs than the training shops would. The threshold is
        tuned on probabilities corrected the same way, fold by fold.
    grow : ``None``, or let match sets grow past the k neighbours searched: pairs sharing
        at least this share of their smaller match set are added
        (:func:`~shopee_match.neighbors.graph.grow`), for products with more offers than k.
    grow_rounds : rounds of that growth (``None``: until a round adds nothing, so a
        product with hundreds of offers closes up).
    tune_for : ``"mean"`` picks the threshold with the best mean out-of-fold F1;
        ``"robust"`` the one whose worst fold beats matching nothing by the most (for a
        model meant for catalogues unlike its training ones, fitted on several kinds).
    thin : ``None``, or also learn from a thinned copy of every candidate set (each
        product keeps one offer, each other offer stays with this probability), scored
        with the others when tuning the cut: a model fitted on a catalogue where every
        product has several offers then does not learn to force a partner on every
        posting, which fails catalogues of mostly one-offer products. A single candidate
        set is then first cut into its ``cv`` group folds, each a set of its own (pair
        features computed within the fold, as for the folds ``Pipeline.fit`` passes).
    prefilter_recall : ``None``, or a cascade: fit a small first model on features the
        candidate graphs already hold (each modality's similarity, ranks, best and 10th
        similarity, candidate counts; :mod:`~shopee_match.rerank._prefilter`) and a floor
        on its probability that keeps this share of the true training pairs, measured out
        of fold. Pairs below the floor are never featured or scored by the full stages
        (probability 0, absent from every stage's graph, at fit and at predict time), which
        cuts the time of both to the pairs kept. ``Pipeline.default`` uses ``0.995``.
    self_train : after the cut, learn from the catalogue matched how alike titles must be
        there (:meth:`matches`, :mod:`~shopee_match.rerank._selftrain`): its pairs whose
        model codes or sizes agree or conflict show how often a given similarity of the
        rest of the titles is one product; dropped candidate pairs with nothing in
        conflict, alike enough that agreement outweighs conflict, are added. For models
        meant for catalogues they never saw (the shipped model sets it); needs titles.
        Calibration on labels (:func:`~shopee_match.calibration.calibrate`) also tries the
        cut without it and keeps the better, as the fitted ``self_train_``.
    n_jobs : threads (``None``: every core) for the pair features and the trees.
        Fitting trains a stage's independent tree models (one per fold and the final one)
        side by side, one thread each, so the trees do not depend on ``n_jobs``;
        prediction gives LightGBM ``n_jobs`` threads (``num_threads``, which LightGBM also
        keeps as its process-wide default).
    random_state : seed for the folds and the trees.

    Notes
    -----
    ``fit`` takes either one candidate set (a dict of graphs over the same n postings) or
    a list of them, e.g. one per group fold of the training set built at the size the
    model will see at predict time; then the folds are the tuning folds.

    >>> from shopee_match.datasets import make_catalog
    >>> from shopee_match import TfidfEmbedder, NeighborMatcher
    >>> p = make_catalog(n_groups=60, images=False, seed=0)
    >>> cands = {"tfidf": NeighborMatcher(k=10).candidates(TfidfEmbedder().fit_embed(p))}
    >>> rr = PairReranker(max_iter=20, n_jobs=1).fit(cands, p.groups(), p.titles)
    >>> rr.select(rr.predict_proba_graph(cands, p.titles)).shape == (len(p), len(p))
    True
    """

    # fitted attributes, set by :func:`~shopee_match.rerank._train.fit`
    modalities_: list[str]
    uses_titles_: bool
    boosters_: list[Any]
    feature_names_: list[str]
    threshold_: float
    min_matches_: int
    cv_f1_: float
    train_prior_: float
    prefilter_: Any
    prefilter_floor_: float
    prefilter_names_: list[str]
    prefilter_kept_: float

    def __init__(
        self,
        threshold: float = 0.5,
        min_matches: int = 2,
        min_proba: float = 0.1,
        tune_threshold: bool = True,
        cv: int = 3,
        use_titles: bool = True,
        max_iter: int = 150,
        learning_rate: float = 0.1,
        max_leaf_nodes: int = 31,
        min_samples_leaf: int = 40,
        l2_regularization: float = 1.0,
        n_stages: int = 2,
        optional_modalities: Sequence[str] = (),
        adapt_prior: bool = False,
        grow: float | None = None,
        grow_rounds: int | None = 1,
        tune_for: str = "mean",
        thin: float | None = None,
        prefilter_recall: float | None = None,
        self_train: bool = False,
        n_jobs: int | None = None,
        random_state: int | None = 0,
    ) -> None:
        self.adapt_prior = adapt_prior
        self.grow = grow
        self.grow_rounds = grow_rounds
        self.tune_for = tune_for
        self.thin = thin
        self.prefilter_recall = prefilter_recall
        self.self_train = self_train
        self.threshold = threshold
        self.min_matches = min_matches
        self.min_proba = min_proba
        self.tune_threshold = tune_threshold
        self.cv = cv
        self.use_titles = use_titles
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.n_stages = n_stages
        self.optional_modalities = optional_modalities
        self.n_jobs = n_jobs
        self.random_state = random_state

    def _validate(self) -> None:
        _train.validate(self)

    def _fit_gbm(self, xs: list[np.ndarray], ys: list[np.ndarray]) -> Any:
        return _gbm.fit(self, xs, ys)

    def _proba(self, booster: Any, x: np.ndarray) -> np.ndarray:
        return _gbm.proba(self, booster, x)

    def stage_proba(self, stage: int, x: np.ndarray) -> np.ndarray:
        """P(match) of pair feature rows ``x`` by stage ``stage``'s trees (columns: the
        pair features, then each earlier stage's graph features, as fitted)."""
        return self._proba(self.boosters_[stage], x)

    def _titles_for(self, titles: Sequence[str] | None, n: int, fitting: bool) -> list[str] | None:
        if not self.use_titles:
            return None
        if titles is None:
            if fitting:
                return None
            if getattr(self, "uses_titles_", False):
                raise ValueError(
                    "This PairReranker was fitted with titles, so predict_proba_graph needs "
                    "`titles` too (one per posting, in the graphs' row order)."
                )
            return None
        if isinstance(titles, str) or len(titles) != n:
            raise ValueError(
                f"`titles` must be a list of {n} strings (one per candidate-graph row), got "
                f"{'a string' if isinstance(titles, str) else len(titles)}."
            )
        return [str(t) for t in titles]

    # --- fitting --------------------------------------------------------------------
    # --- fitting (:mod:`~shopee_match.rerank._train`) ----------------------------------
    def fit(
        self,
        cands: Cands | Sequence[Cands],
        groups: np.ndarray | Sequence[np.ndarray],
        titles: Sequence[str] | Sequence[Sequence[str]] | None = None,
    ) -> PairReranker:
        """Learn P(same product) of candidate pairs from labelled postings.

        ``cands`` maps modality name to an n x n candidate graph (values: similarity);
        ``groups`` is one label code per row. Pass lists of each (one entry per group fold)
        to train on candidates built fold by fold.
        """
        return _train.fit(self, cands, groups, titles)

    def keep_pairs(self, graphs: Sequence[Any], rows: np.ndarray,
                   cols: np.ndarray) -> np.ndarray | None:
        """Whether the prefilter keeps pairs ``(rows[p], cols[p])`` (``graphs``: each
        modality's :class:`~shopee_match.rerank.pair_features.GraphContext`, in the
        fitted modality order); ``None`` when this model has no prefilter.

        >>> from shopee_match import Pipeline, make_catalog
        >>> from shopee_match.rerank.pair_features import PairContext, candidate_pairs
        >>> p = make_catalog(n_groups=80, images=False, seed=0)
        >>> cands = Pipeline.pretrained().step_graphs(p)
        >>> rr = PairReranker(prefilter_recall=0.99, max_iter=10, n_jobs=1).fit(
        ...     cands, p.groups(), p.titles)
        >>> r, c = candidate_pairs(cands)
        >>> keep = rr.keep_pairs(PairContext(cands).graphs, r, c)
        >>> bool(keep.any() and keep.mean() < 1)
        True
        """
        booster = getattr(self, "prefilter_", None)
        if booster is None:
            return None
        q = _prefilter.prefilter_features(graphs, rows, cols)
        return _prefilter.predict(booster, q, self.n_jobs) >= float(self.prefilter_floor_)

    # --- prediction -----------------------------------------------------------------
    def predict_proba_graph(self, cands: Cands, titles: Sequence[str] | None = None, *,
                            block_size: int | None = None,
                            max_pairs: int | Callable[[], int] | None = None,
                            memory: str | int | None = None,
                            verbose: bool = False) -> sp.csr_matrix:
        """P(same product) of every candidate pair (symmetric), as an n x n graph with
        the same sparsity as the union of the candidate graphs (diagonal excluded).

        Pairs are scored a block of rows at a time (at most ``block_size`` rows and
        ``max_pairs`` pairs; ``None``: all at once, unless ``memory``, a budget as for
        :meth:`combine`, sizes the blocks), so memory holds one block's features rather
        than every pair's; the result does not depend on the blocks.
        """
        if not self.is_fitted_:
            raise NotFittedError(
                "This PairReranker instance is not fitted yet. Call 'fit' with appropriate "
                "arguments before using this estimator."
            )
        if not isinstance(cands, Mapping):
            raise TypeError("`cands` must be a dict: modality name -> n x n candidate graph.")
        if sorted(cands) != self.modalities_:
            raise ValueError(
                f"candidate graphs for modalities {sorted(cands)} given, but this PairReranker "
                f"was fitted on {self.modalities_}; pass the same modality names."
            )
        n = next(iter(cands.values())).shape[0]
        tt = self._titles_for(titles, n, fitting=False) if self.uses_titles_ else None
        if max_pairs is None and memory is not None:
            max_pairs = _pair_budget(memory)
        keep = self.keep_pairs if getattr(self, "prefilter_", None) is not None else None
        proba = score_blocks(cands, tt, self.boosters_, self._proba, self.feature_names_,
                             block_rows=block_size, max_pairs=max_pairs, n_jobs=self.n_jobs,
                             verbose=verbose, keep=keep)
        return self._adapted(proba) if self.adapt_prior else proba

    def _adapted(self, proba: sp.csr_matrix) -> sp.csr_matrix:
        """``proba`` corrected to the share of true pairs EM finds in it."""
        out = sp.csr_matrix(proba, dtype=np.float32, copy=True)
        q, _ = adapt_to_prior(out.data, getattr(self, "train_prior_", 0.0))
        out.data = q.astype(np.float32)
        return out

    # --- as a Pipeline ensemble: learns from the tuning folds' candidate graphs -------
    #: :class:`~shopee_match.Pipeline` passes candidate graphs, not thresholded matches.
    uses_candidates = True

    def fit_folds(self, folds: Sequence[Any]) -> PairReranker:
        """Fit on :class:`~shopee_match.tuning.Fold` objects (one candidate set per fold)."""
        titles = [f.titles for f in folds] if all(f.titles for f in folds) else None
        return self.fit([f.cands for f in folds], [f.groups for f in folds], titles)

    @property
    def is_fitted_(self) -> bool:
        # a fit that failed part way leaves no trees of the last stage
        return bool(getattr(self, "boosters_", None)) and hasattr(self, "feature_names_")

    def combine(self, cands: Cands, titles: Sequence[str] | None = None, *,
                memory: str | int | None = None, block_size: int | None = None,
                verbose: bool = False) -> sp.csr_matrix:
        """The final match graph from each step's candidate graph. Pairs are scored a
        block of postings at a time (at most ``block_size``), each block sized to what
        ``memory`` (``"4GB"``, bytes; ``None``: the default budget,
        :func:`~shopee_match._memory.default_budget`) leaves above the process's memory."""
        max_pairs = _pair_budget(memory)
        return self.matches(self.predict_proba_graph(cands, titles, block_size=block_size,
                                                     max_pairs=max_pairs, verbose=verbose),
                            titles)

    def cut(self, proba: sp.csr_matrix, threshold: float,
            min_matches: int | None = None) -> sp.csr_matrix:
        """Kept pairs of a probability graph at ``threshold`` and ``min_matches`` (default:
        the fitted ``min_matches_``), then grown where ``grow`` says so: what
        :meth:`select` does at a given cut, for tuning and calibration to try cuts."""
        mm = int(getattr(self, "min_matches_", self.min_matches)
                 if min_matches is None else min_matches)
        g = select_graph(proba, threshold, mm, float(self.min_proba))
        if self.grow is None:
            return g
        return grow_graph(g, float(self.grow), self.grow_rounds)

    def select(self, proba_graph: sp.spmatrix, threshold: float | None = None) -> sp.csr_matrix:
        """Kept pairs (diagonal included): probability >= threshold, plus min-matches
        fallbacks. ``threshold`` defaults to the fitted ``threshold_``."""
        self._validate()
        t = getattr(self, "threshold_", self.threshold) if threshold is None else threshold
        return self.cut(sp.csr_matrix(proba_graph), float(t))

    def matches(self, proba_graph: sp.spmatrix, titles: Sequence[str] | None = None,
                ) -> sp.csr_matrix:
        """The match graph of a probability graph: :meth:`select`, then, with
        ``self_train`` and ``titles``, the dropped pairs the catalogue's own code
        agreements vouch for (data: their probabilities).

        >>> from shopee_match import Pipeline, make_catalog
        >>> p = make_catalog(n_groups=20, images=False, seed=0)
        >>> pipe = Pipeline.pretrained()
        >>> rr = pipe.combiner_
        >>> proba = rr.predict_proba_graph(pipe.step_graphs(p), p.titles)
        >>> rr.matches(proba, p.titles).nnz >= rr.select(proba).nnz
        True
        """
        g = self.select(proba_graph)
        # calibration with labels may have found that self-training does not help here
        if not (self.self_train and getattr(self, "self_train_", True)) or titles is None:
            return g
        return sp.csr_matrix(g + self.self_trained(proba_graph, titles, g))

    def self_trained(self, proba_graph: sp.spmatrix, titles: Sequence[str],
                     kept: sp.spmatrix) -> sp.csr_matrix:
        """The candidate pairs of ``proba_graph`` outside ``kept`` that self-training
        on these titles adds (see ``self_train``), with their probabilities; whether or
        not ``self_train`` is set."""
        proba = sp.csr_matrix(proba_graph)
        learnt = self_train(titles, proba, kept)
        if learnt.point is None:
            logger.info("PairReranker: self-training found too little code evidence "
                        "(%d pairs); the cut stands", learnt.evidence)
        else:
            logger.info("PairReranker: self-training added %d pairs (similarity >= %.3f, "
                        "from %d evidence pairs)", learnt.added.nnz // 2, learnt.point,
                        learnt.evidence)
        return sp.csr_matrix(proba.multiply(learnt.added), dtype=np.float32)

    # --- persistence (JSON + LightGBM text models, no pickle) -------------------------
    def save_state(self, path: Path) -> None:
        """Write each stage's trees (``reranker_model_{stage}.txt``, LightGBM's text model
        format) and the state (``reranker.json``)."""
        if not self.is_fitted_:
            raise NotFittedError("This PairReranker instance is not fitted yet; nothing to save.")
        write_state(self, Path(path))

    def load_state(self, path: Path) -> None:
        """Restore what :meth:`save_state` wrote (LightGBM parses its own text format)."""
        read_state(self, Path(path))


def _pair_budget(memory: str | int | None) -> Callable[[], int]:
    """Pairs a block may hold under budget ``memory`` (read now, so a bad size fails at
    once), asked once the candidate graphs' contexts are in memory."""
    budget = parse_memory(memory)
    return lambda: block_pairs(budget, BYTES_PER_PAIR, what="candidate pairs")
