"""scikit-learn ``NearestNeighbors`` (brute-force cosine) as a backend, for comparison."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._topk import empty_result

__all__ = ["SklearnBackend"]


class SklearnBackend:
    """Exact cosine top-k through ``sklearn.neighbors.NearestNeighbors``.

    >>> import numpy as np
    >>> x = np.eye(3, dtype=np.float32)
    >>> SklearnBackend().fit(x).search(x, 1)[1].ravel().tolist()
    [0, 1, 2]
    """

    name = "sklearn"
    exact = True

    def __init__(self, n_jobs: int | None = None) -> None:
        self.n_jobs = n_jobs

    def fit(self, ref: Any) -> SklearnBackend:
        from sklearn.neighbors import NearestNeighbors

        self.n_ref_ = ref.shape[0]
        self.nn_ = NearestNeighbors(metric="cosine", algorithm="brute", n_jobs=self.n_jobs)
        if self.n_ref_:
            self.nn_.fit(ref)
        return self

    def search(
        self, query: Any, k: int, threshold: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` by cosine similarity (``1 -`` scikit-learn's cosine distance)."""
        k = min(k, self.n_ref_)
        if query.shape[0] == 0 or k == 0:
            return empty_result(query.shape[0], k)
        dist, idx = self.nn_.kneighbors(query, n_neighbors=k)
        sims = (1.0 - dist).astype(np.float32)
        idx = idx.astype(np.int64)
        if threshold is not None:
            below = sims < threshold
            sims[below] = -np.inf
            idx[below] = -1
        return sims, idx
