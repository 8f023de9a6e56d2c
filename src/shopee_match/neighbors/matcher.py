"""``NeighborMatcher``: k nearest neighbours by cosine, kept above a threshold."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator

from .._registry import register
from .._validation import check_embeddings, check_scalar
from ._base import get_backend
from .graph import graph_from_knn, graph_to_sets, select

__all__ = ["NeighborMatcher"]

logger = logging.getLogger(__name__)


@register()
class NeighborMatcher(BaseEstimator):  # type: ignore[misc]
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
    ) -> None:
        self.threshold = threshold
        self.k = k
        self.min_matches = min_matches
        self.min_threshold = min_threshold
        self.backend = backend
        self.working_memory = working_memory

    def _validate(self) -> None:
        check_scalar(self.threshold, "threshold", (int, float), min_val=-1.0, max_val=1.0)
        check_scalar(self.k, "k", (int, np.integer), min_val=1)
        check_scalar(self.min_matches, "min_matches", (int, np.integer), min_val=1)
        if self.min_threshold is not None:
            check_scalar(self.min_threshold, "min_threshold", (int, float), min_val=-1.0, max_val=1.0)

    def neighbors(self, emb: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(indices, similarities)`` of each row's k nearest rows (itself included),
        each of shape ``(n, min(k, n))``, rows sorted by falling cosine similarity."""
        self._validate()
        emb = check_embeddings(emb)
        n = emb.shape[0]
        if n == 0:
            return np.empty((0, 0), dtype=np.int64), np.empty((0, 0), dtype=np.float32)
        kwargs = {} if self.working_memory is None else {"working_memory": self.working_memory}
        backend = get_backend(self.backend, emb, **kwargs)
        backend.fit(emb)
        sims, idx = backend.search(emb, self.k)
        return idx, sims

    def candidates(self, emb: Any) -> sp.csr_matrix:
        """The k-NN graph: every searched pair with its similarity (before thresholding)."""
        idx, sims = self.neighbors(emb)
        return graph_from_knn(sims, idx, n=emb.shape[0])

    def similarity_threshold(self) -> float:
        return float(self.threshold)

    def set_similarity_threshold(self, value: float) -> NeighborMatcher:
        self.threshold = float(value)
        return self

    def select(self, cand: sp.csr_matrix, threshold: float | None = None) -> sp.csr_matrix:
        """Thresholded match graph from a candidate graph (diagonal always kept)."""
        self._validate()
        t = self.threshold if threshold is None else threshold
        return select(cand, t, int(self.min_matches), self.min_threshold)

    def match_graph(self, emb: Any) -> sp.csr_matrix:
        return self.select(self.candidates(emb))

    def match(self, emb: Any) -> list[np.ndarray]:
        """For each row, the sorted indices of the rows it matches (itself included)."""
        return graph_to_sets(self.match_graph(emb))
