"""faiss backends (imported lazily): exact ``IndexFlatIP``, and IVF / HNSW for large n.

``pip install 'shopee_match[faiss]'``. The approximate backends trade recall for speed
at large n; ``benchmarks/knn_speed.py`` reports their recall against the exact search.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._topk import empty_result

__all__ = ["FaissFlatBackend", "FaissHNSWBackend", "FaissIVFBackend"]


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - the registry checks first
        raise ImportError(
            "The faiss KNN backends need faiss: pip install 'shopee_match[faiss]'."
        ) from exc
    return faiss


class _FaissBase:
    name = "faiss"
    exact = True

    def _build(self, d: int, n: int) -> Any:
        raise NotImplementedError

    def fit(self, ref: np.ndarray) -> _FaissBase:
        ref = np.ascontiguousarray(ref, dtype=np.float32)
        self.n_ref_ = ref.shape[0]
        self.index_ = self._build(ref.shape[1], ref.shape[0])
        if not self.index_.is_trained:
            self.index_.train(ref)
        if self.n_ref_:
            self.index_.add(ref)
        return self

    def search(
        self, query: np.ndarray, k: int, threshold: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` by inner product; empty slots are ``-1`` / ``-inf``."""
        query = np.ascontiguousarray(query, dtype=np.float32)
        k = min(k, self.n_ref_)
        if query.shape[0] == 0 or k == 0:
            return empty_result(query.shape[0], k)
        sims, idx = self.index_.search(query, k)
        sims = sims.astype(np.float32, copy=False)
        idx = idx.astype(np.int64, copy=False)
        bad = idx < 0
        if threshold is not None:
            bad |= sims < threshold
        sims[bad] = -np.inf
        idx[bad] = -1
        return sims, idx


class FaissFlatBackend(_FaissBase):
    """Exact inner-product search with ``faiss.IndexFlatIP`` (BLAS inside).

    >>> import numpy as np
    >>> x = np.eye(3, dtype=np.float32)
    >>> FaissFlatBackend().fit(x).search(x, 1)[1].ravel().tolist()
    [0, 1, 2]
    """

    name = "faiss"
    exact = True

    def _build(self, d: int, n: int) -> Any:
        return _faiss().IndexFlatIP(d)


class FaissIVFBackend(_FaissBase):
    """Approximate search with ``faiss.IndexIVFFlat``: ``nlist`` k-means cells (default
    ``4 * sqrt(n)``), ``nprobe`` of them visited per query. Exact below ``min_n`` rows.

    >>> import numpy as np
    >>> x = np.eye(3, dtype=np.float32)
    >>> FaissIVFBackend().fit(x).search(x, 1)[1].ravel().tolist()
    [0, 1, 2]
    """

    name = "faiss_ivf"
    exact = False

    def __init__(self, nlist: int | None = None, nprobe: int = 16, min_n: int = 10_000) -> None:
        self.nlist = nlist
        self.nprobe = nprobe
        self.min_n = min_n

    def _build(self, d: int, n: int) -> Any:
        faiss = _faiss()
        if n < self.min_n:
            return faiss.IndexFlatIP(d)
        nlist = self.nlist or int(max(1, min(n // 39, 4 * np.sqrt(n))))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.nprobe = min(self.nprobe, nlist)
        index.cp.min_points_per_centroid = 5  # quieter k-means on small inputs
        return index


class FaissHNSWBackend(_FaissBase):
    """Approximate search with ``faiss.IndexHNSWFlat`` (graph; ``m`` links per node,
    ``ef_search`` candidates per query). Exact below ``min_n`` rows.

    >>> import numpy as np
    >>> x = np.eye(3, dtype=np.float32)
    >>> FaissHNSWBackend().fit(x).search(x, 1)[1].ravel().tolist()
    [0, 1, 2]
    """

    name = "faiss_hnsw"
    exact = False

    def __init__(self, m: int = 32, ef_search: int = 128, min_n: int = 10_000) -> None:
        self.m = m
        self.ef_search = ef_search
        self.min_n = min_n

    def _build(self, d: int, n: int) -> Any:
        faiss = _faiss()
        if n < self.min_n:
            return faiss.IndexFlatIP(d)
        index = faiss.IndexHNSWFlat(d, self.m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 64
        index.hnsw.efSearch = self.ef_search
        return index

    def search(
        self, query: np.ndarray, k: int, threshold: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        if hasattr(self.index_, "hnsw"):
            self.index_.hnsw.efSearch = max(self.ef_search, k)
        return super().search(query, k, threshold)
