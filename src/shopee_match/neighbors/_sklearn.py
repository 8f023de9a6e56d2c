"""scikit-learn ``NearestNeighbors`` (brute-force cosine) as a backend, for comparison."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["SklearnBackend"]


class SklearnBackend:
    """Exact cosine top-k through ``sklearn.neighbors.NearestNeighbors``."""

    name = "sklearn"
    exact = True

    def __init__(self, n_jobs: int | None = None) -> None:
        self.n_jobs = n_jobs

    def fit(self, ref: Any) -> SklearnBackend:
        from sklearn.neighbors import NearestNeighbors

        self.n_ref_ = ref.shape[0]
        self.nn_ = NearestNeighbors(metric="cosine", algorithm="brute", n_jobs=self.n_jobs).fit(ref)
        return self

    def search(
        self, query: Any, k: int, threshold: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, self.n_ref_)
        dist, idx = self.nn_.kneighbors(query, n_neighbors=k)
        return (1.0 - dist).astype(np.float32), idx.astype(np.int64)
