"""RAPIDS cuML ``NearestNeighbors`` on the GPU (the seed's backend); imported lazily."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["CumlBackend"]


class CumlBackend:
    """Brute-force cosine top-k with ``cuml.neighbors.NearestNeighbors``.

    Needs an NVIDIA GPU and ``pip install 'shopee_match[gpu]'``.
    """

    name = "cuml"
    exact = True

    def fit(self, ref: Any) -> CumlBackend:
        from cuml.neighbors import NearestNeighbors

        self.n_ref_ = ref.shape[0]
        self.nn_ = NearestNeighbors(metric="cosine", algorithm="brute", output_type="numpy")
        self.nn_.fit(np.ascontiguousarray(ref, dtype=np.float32))
        return self

    def search(
        self, query: Any, k: int, threshold: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, self.n_ref_)
        dist, idx = self.nn_.kneighbors(np.ascontiguousarray(query, dtype=np.float32), n_neighbors=k)
        return (1.0 - np.asarray(dist)).astype(np.float32), np.asarray(idx).astype(np.int64)
