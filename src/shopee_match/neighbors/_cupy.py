"""Exact top-k on an NVIDIA GPU with CuPy: blocked float32 GEMM plus on-device top-k.

``pip install 'shopee_match[gpu]'``. The reference lives on the device; each query
block's similarities (``rows x n`` floats, sized by ``working_memory``) are reduced to
top-k on the device (``argpartition`` then a sort of k), so only ``(n, k)`` results come
back to the host. Written against CuPy's documented API; tested only where a GPU is.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._base import chunk_rows
from ._topk import empty_result

__all__ = ["CupyBackend"]


def _cupy() -> Any:
    try:
        import cupy
    except ImportError as exc:  # pragma: no cover - the registry checks first
        raise ImportError(
            "The 'cupy' KNN backend needs CuPy: pip install 'shopee_match[gpu]'."
        ) from exc
    return cupy


class CupyBackend:
    """Exact inner-product top-k on the GPU (CuPy ``matmul`` + ``argpartition``).

    >>> import numpy as np  # doctest: +SKIP
    >>> x = np.eye(3, dtype=np.float32)  # doctest: +SKIP
    >>> CupyBackend().fit(x).search(x, 1)[1].ravel().tolist()  # doctest: +SKIP
    [0, 1, 2]
    """

    name = "cupy"
    exact = True

    def __init__(self, working_memory: float | None = 1024) -> None:
        self.working_memory = working_memory

    def fit(self, ref: Any) -> CupyBackend:
        cp = _cupy()
        self.ref_ = cp.ascontiguousarray(cp.asarray(ref, dtype=cp.float32))
        return self

    def search(
        self, query: Any, k: int, threshold: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` reference rows for each query row, as host NumPy arrays."""
        cp = _cupy()
        q = cp.ascontiguousarray(cp.asarray(query, dtype=cp.float32))
        n_q, n_ref = q.shape[0], self.ref_.shape[0]
        k = min(k, n_ref)
        sims, idx = empty_result(n_q, k)
        if n_q == 0 or k == 0:
            return sims, idx
        step = max(1, min(n_q, chunk_rows(n_ref, self.working_memory)))
        buf = cp.empty((step, n_ref), dtype=cp.float32)
        for start in range(0, n_q, step):
            stop = min(start + step, n_q)
            block = buf[: stop - start]
            cp.matmul(q[start:stop], self.ref_.T, out=block)
            if k < n_ref:
                part = cp.argpartition(block, n_ref - k, axis=1)[:, n_ref - k:]
            else:
                part = cp.broadcast_to(cp.arange(n_ref), (stop - start, n_ref))
            vals = cp.take_along_axis(block, part, axis=1)
            order = cp.argsort(-vals, axis=1)
            s = cp.take_along_axis(vals, order, axis=1)
            i = cp.take_along_axis(part, order, axis=1)
            if threshold is not None:
                below = s < threshold
                s[below] = -cp.inf
                i[below] = -1
            sims[start:stop] = cp.asnumpy(s)
            idx[start:stop] = cp.asnumpy(i)
        return sims, idx
