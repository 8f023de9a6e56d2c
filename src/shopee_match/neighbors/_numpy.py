"""Exact dense top-k: blocked float32 matrix products (BLAS) with a top-k per block."""

from __future__ import annotations

import numpy as np

from ._base import chunk_rows, topk_sorted

__all__ = ["NumpyBackend"]


class NumpyBackend:
    """Exact inner-product top-k with NumPy; memory is one block plus the (n, k) result.

    >>> import numpy as np
    >>> x = np.eye(3, dtype=np.float32)
    >>> s, i = NumpyBackend().fit(x).search(x, 1)
    >>> i.ravel().tolist()
    [0, 1, 2]
    """

    name = "numpy"
    exact = True

    def __init__(self, working_memory: float | None = None) -> None:
        self.working_memory = working_memory

    def fit(self, ref: np.ndarray) -> NumpyBackend:
        self.ref_ = np.ascontiguousarray(ref, dtype=np.float32)
        return self

    def search(
        self, query: np.ndarray, k: int, threshold: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        query = np.ascontiguousarray(query, dtype=np.float32)
        n_ref = self.ref_.shape[0]
        k = min(k, n_ref)
        sims = np.empty((query.shape[0], k), dtype=np.float32)
        idx = np.empty((query.shape[0], k), dtype=np.int64)
        step = chunk_rows(n_ref, self.working_memory)
        ref_t = self.ref_.T
        for start in range(0, query.shape[0], step):
            block = query[start:start + step] @ ref_t
            s, i = topk_sorted(block, k)
            sims[start:start + step] = s
            idx[start:start + step] = i
        return sims, idx
