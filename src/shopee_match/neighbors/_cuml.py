"""RAPIDS cuML ``NearestNeighbors`` on the GPU (the seed's backend); imported lazily."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._topk import empty_result

__all__ = ["CumlBackend"]


class CumlBackend:
    """Brute-force cosine top-k with ``cuml.neighbors.NearestNeighbors``.

    Needs an NVIDIA GPU and ``pip install 'shopee_match[gpu]'``.

    >>> import numpy as np  # doctest: +SKIP
    >>> x = np.eye(3, dtype=np.float32)  # doctest: +SKIP
    >>> CumlBackend().fit(x).search(x, 1)[1].ravel().tolist()  # doctest: +SKIP
    [0, 1, 2]
    """

    name = "cuml"
    exact = True

    def fit(self, ref: Any) -> CumlBackend:
        from cuml.neighbors import NearestNeighbors

        self.n_ref_ = ref.shape[0]
        self.nn_ = NearestNeighbors(metric="cosine", algorithm="brute", output_type="numpy")
        if self.n_ref_:
            self.nn_.fit(np.ascontiguousarray(ref, dtype=np.float32))
        return self

    def search(
        self, query: Any, k: int, threshold: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` by cosine (inner product on normalised rows); host arrays."""
        k = min(k, self.n_ref_)
        if query.shape[0] == 0 or k == 0:
            return empty_result(query.shape[0], k)
        q = np.ascontiguousarray(query, dtype=np.float32)
        dist, idx = self.nn_.kneighbors(q, n_neighbors=k)
        sims = (1.0 - np.asarray(dist)).astype(np.float32)
        idx = np.asarray(idx).astype(np.int64)
        if threshold is not None:
            below = sims < threshold
            sims[below] = -np.inf
            idx[below] = -1
        return sims, idx
