"""``NeighborMatcher``: k nearest neighbours by cosine, kept above a threshold."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import scipy.sparse as sp

from .._params import BaseEstimator
from .._registry import register
from .._validation import check_embeddings, check_scalar
from ._base import get_backend
from .graph import graph_from_knn, graph_to_sets, select, select_keeps

__all__ = ["NeighborMatcher", "shared_searches"]

logger = logging.getLogger(__name__)

_SHARED = threading.local()


@contextmanager
def shared_searches() -> Iterator[None]:
    """Within this block (in this thread), a k-NN search repeated on the same embeddings
    object with the same ``k``, backend and options is answered by the first one.

    Steps that share an embedder search its rows with equal settings (the TF-IDF
    candidates and the first search of a :class:`~shopee_match.BlendMatcher`): one
    search serves both. The block holds the embeddings it saw, so an object id is never
    reused inside it; embeddings must not be modified in place inside it.
    """
    prev = getattr(_SHARED, "store", None)
    _SHARED.store = {}
    try:
        yield
    finally:
        _SHARED.store = prev


@register()
class NeighborMatcher(BaseEstimator):
    """Match each posting to its ``k`` nearest neighbours with cosine >= ``threshold``.

    Embeddings must have L2-normalised rows (every embedder's contract), so the inner
    product is the cosine similarity. Memory is O(n*k) plus one block of the backend.

    Parameters
    ----------
    threshold : cosine similarity a neighbour needs, in [-1, 1].
    k : neighbours searched per posting (capped at n).
    min_matches : smallest match-set size (itself included); ``2`` keeps the best
        neighbour when none passes, if its similarity is at least ``min_threshold``.
    min_threshold : floor for those fallback matches (``None``: no floor).
    backend : ``"auto"``, ``"numpy"``, ``"sparse"``, ``"sklearn"``, ``"faiss"``, ...
    working_memory : MiB for one block of similarities (default 256).
    backend_kwargs : more options for the backend, e.g. ``{"kernel": "numpy", "n_jobs": 1}``
        for the exact CPU backends (options a backend does not take are ignored).

    >>> import numpy as np
    >>> emb = np.array([[1, 0], [0.99, 0.14], [0, 1]], dtype=np.float32)
    >>> emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    >>> [m.tolist() for m in NeighborMatcher(threshold=0.9, k=3).match(emb)]
    [[0, 1], [0, 1], [2]]
    """

    def __init__(
        self,
        threshold: float = 0.5,
        k: int = 50,
        min_matches: int = 1,
        min_threshold: float | None = None,
        backend: str = "auto",
        working_memory: float | None = None,
        backend_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.threshold = threshold
        self.k = k
        self.min_matches = min_matches
        self.min_threshold = min_threshold
        self.backend = backend
        self.working_memory = working_memory
        self.backend_kwargs = backend_kwargs

    def backend_options(self) -> dict[str, Any]:
        """The keyword arguments the backend is built with.

        >>> NeighborMatcher(working_memory=64, backend_kwargs={"n_jobs": 1}).backend_options()
        {'n_jobs': 1, 'working_memory': 64}
        """
        if self.backend_kwargs is not None and not isinstance(self.backend_kwargs, dict):
            raise TypeError(
                f"backend_kwargs must be a dict or None, got {type(self.backend_kwargs).__name__}"
            )
        opts = dict(self.backend_kwargs or {})
        if self.working_memory is not None:
            opts["working_memory"] = self.working_memory
        return opts

    def validate(self) -> NeighborMatcher:
        """Check the parameters (a ValueError names a bad one); returns ``self``.

        >>> NeighborMatcher(k=0).validate()
        Traceback (most recent call last):
        ...
        ValueError: `k` must be >= 1, got 0.
        """
        # up to 1.01: a threshold above every cosine switches the step off (tuning uses it)
        check_scalar(self.threshold, "threshold", (int, float), min_val=-1.0, max_val=1.01)
        check_scalar(self.k, "k", (int, np.integer), min_val=1)
        check_scalar(self.min_matches, "min_matches", (int, np.integer), min_val=1)
        if self.min_threshold is not None:
            check_scalar(
                self.min_threshold, "min_threshold", (int, float), min_val=-1.0, max_val=1.0
            )
        return self

    def neighbors(self, emb: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(indices, similarities)`` of each row's k nearest rows (itself included),
        each of shape ``(n, min(k, n))``, rows sorted by falling cosine similarity.

        >>> idx, sims = NeighborMatcher(k=1).neighbors(np.eye(2, dtype=np.float32))
        >>> idx.tolist()
        [[0], [1]]
        """
        self.validate()
        store = getattr(_SHARED, "store", None)
        if store is None:
            return self.search(check_embeddings(emb))
        key = (id(emb), int(self.k), str(self.backend), repr(sorted(self.backend_options().items())))
        if key not in store:
            store[key] = (emb, self.search(check_embeddings(emb)))
        idx, sims = store[key][1]
        return idx.copy(), sims.copy()

    def search(self, emb: Any, floor: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(indices, similarities)`` of each row's ``k`` nearest rows of ``emb`` as given,
        with the matcher's backend: no sharing with other steps, no blending (a
        :class:`~shopee_match.BlendMatcher` searches its blended rows in :meth:`neighbors`).
        ``floor``: neighbours below it need not be found or sorted.

        >>> idx, sims = NeighborMatcher(k=2).search(np.eye(2, dtype=np.float32))
        >>> idx[:, 0].tolist(), sims[:, 0].tolist()
        ([0, 1], [1.0, 1.0])
        """
        n = emb.shape[0]
        if n == 0:
            return np.empty((0, 0), dtype=np.int64), np.empty((0, 0), dtype=np.float32)
        backend = get_backend(self.backend, emb, **self.backend_options())
        backend.fit(emb)
        sims, idx = backend.search(emb, int(self.k), threshold=floor)
        return idx, sims

    def candidates(self, emb: Any) -> sp.csr_matrix:
        """The k-NN graph: every searched pair with its similarity (before thresholding).

        >>> emb = np.eye(2, dtype=np.float32)
        >>> NeighborMatcher(k=2).candidates(emb).toarray().tolist()
        [[1.0, 0.0], [0.0, 1.0]]
        """
        idx, sims = self.neighbors(emb)
        return graph_from_knn(sims, idx, n=emb.shape[0])

    def similarity_threshold(self) -> float:
        """The cosine threshold in use: the tuned ``threshold_`` once :meth:`fit_threshold`
        set it (``Pipeline.fit`` does), else the ``threshold`` parameter.

        >>> NeighborMatcher(threshold=0.7).similarity_threshold()
        0.7
        >>> NeighborMatcher(threshold=0.7).fit_threshold(0.8).similarity_threshold()
        0.8
        """
        fitted = getattr(self, "threshold_", None)
        return float(self.threshold if fitted is None else fitted)

    def fit_threshold(self, value: float | None) -> NeighborMatcher:
        """Keep ``value`` (a cosine, as threshold tuning picks it) as the fitted
        ``threshold_``; the ``threshold`` parameter is left as given. ``None`` forgets it.

        >>> m = NeighborMatcher(threshold=0.5).fit_threshold(0.8)
        >>> m.threshold, m.threshold_
        (0.5, 0.8)
        """
        if value is None:
            self.__dict__.pop("threshold_", None)
        else:
            check_scalar(value, "threshold", (int, float, np.floating), min_val=-1.0, max_val=1.01)
            self.threshold_ = float(value)
        return self

    def set_similarity_threshold(self, value: float) -> NeighborMatcher:
        """Set the ``threshold`` parameter (and forget a tuned ``threshold_``); returns ``self``.

        >>> NeighborMatcher().set_similarity_threshold(0.8).threshold
        0.8
        """
        self.threshold = float(value)
        self.__dict__.pop("threshold_", None)
        return self

    def set_params(self, **params: Any) -> NeighborMatcher:
        """As scikit-learn's; setting ``threshold`` also forgets a tuned ``threshold_``
        (a threshold set by hand after fit is the one meant).

        >>> NeighborMatcher().fit_threshold(0.8).set_params(threshold=0.6).similarity_threshold()
        0.6
        """
        super().set_params(**params)
        if "threshold" in params:
            self.__dict__.pop("threshold_", None)
        return self

    def search_floor(self) -> float | None:
        """The lowest similarity :meth:`select` can keep (``None``: any), so searches
        may skip pairs below it.

        >>> NeighborMatcher(threshold=0.6, min_matches=2, min_threshold=0.3).search_floor()
        0.3
        """
        t = self.similarity_threshold()
        if int(self.min_matches) <= 1:
            return t
        low = self.min_threshold
        return None if low is None else min(t, float(low))

    def keeps(self, sims: np.ndarray, threshold: float) -> np.ndarray | None:
        """Which off-diagonal candidate similarities ``threshold`` keeps, as :meth:`select`
        keeps them; ``None`` when that also depends on the rest of the row
        (``min_matches > 1``).

        >>> NeighborMatcher().keeps(np.array([0.4, 0.6], dtype=np.float32), 0.5).tolist()
        [False, True]
        """
        if int(self.min_matches) > 1:
            return None
        return np.asarray(select_keeps(sims, threshold))

    def select(self, cand: sp.csr_matrix, threshold: float | None = None) -> sp.csr_matrix:
        """Thresholded match graph from a candidate graph (diagonal always kept).

        >>> m = NeighborMatcher(threshold=0.5)
        >>> m.select(m.candidates(np.eye(2, dtype=np.float32)), threshold=0.9).nnz
        2
        """
        self.validate()
        t = self.similarity_threshold() if threshold is None else threshold
        return select(cand, t, int(self.min_matches), self.min_threshold)

    def match_graph(self, emb: Any) -> sp.csr_matrix:
        """The thresholded match graph, searched threshold-aware: neighbours below the
        lowest similarity that :meth:`select` can keep are never sorted.

        >>> emb = np.eye(2, dtype=np.float32)
        >>> NeighborMatcher(threshold=0.5).match_graph(emb).nnz
        2
        """
        self.validate()
        emb = check_embeddings(emb)
        idx, sims = self.search(emb, self.search_floor())
        return self.select(graph_from_knn(sims, idx, n=emb.shape[0]))

    def match(self, emb: Any) -> list[np.ndarray]:
        """For each row, the sorted indices of the rows it matches (itself included)."""
        return graph_to_sets(self.match_graph(emb))
