"""The KNN backend interface (faiss-shaped) and the registry that ``backend="auto"`` reads."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import logging
import threading
from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp

__all__ = [
    "Backend",
    "available_backends",
    "blas_single_threaded",
    "chunk_rows",
    "get_backend",
    "register_backend",
]

logger = logging.getLogger(__name__)

#: Default working memory for one block of similarities, in MiB (as scikit-learn's).
WORKING_MEMORY_MIB = 256


@runtime_checkable
class Backend(Protocol):
    """Top-k inner-product search: ``fit(ref)`` then ``search(query, k)``.

    ``search`` returns ``(similarities, indices)``, each ``(n_query, k)``, each row sorted
    by falling similarity. Where a ``threshold`` is passed, slots whose similarity is below
    it may come back as index ``-1`` and similarity ``-inf`` (the backend may skip
    sorting them).
    """

    name: str
    exact: bool

    def fit(self, ref: Any) -> Any: ...

    def search(
        self, query: Any, k: int, threshold: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]: ...


# name -> (module, class, requirement check module, sparse input supported)
_BACKENDS: dict[str, tuple[str, str, str | None, bool]] = {}
# preference order for "auto"
_AUTO_DENSE = ["cupy", "numpy"]  # approximate backends are only used when named
_AUTO_SPARSE = ["sparse"]


def register_backend(
    name: str, module: str, cls: str, requires: str | None = None, sparse: bool = False
) -> None:
    """Register a backend class by import path (imported only when used).

    ``requires`` names the package that must be importable; ``sparse`` says whether the
    backend takes SciPy CSR input.

    >>> register_backend("numpy", "shopee_match.neighbors._numpy", "NumpyBackend")
    >>> "numpy" in available_backends()
    True
    """
    _BACKENDS[name] = (module, cls, requires, sparse)


register_backend("numpy", "shopee_match.neighbors._numpy", "NumpyBackend")
register_backend("sparse", "shopee_match.neighbors._sparse", "SparseBackend", sparse=True)
register_backend("sklearn", "shopee_match.neighbors._sklearn", "SklearnBackend", sparse=True)
register_backend("faiss", "shopee_match.neighbors._faiss", "FaissFlatBackend", requires="faiss")
register_backend("faiss_ivf", "shopee_match.neighbors._faiss", "FaissIVFBackend", requires="faiss")
register_backend(
    "faiss_hnsw", "shopee_match.neighbors._faiss", "FaissHNSWBackend", requires="faiss"
)
register_backend("cupy", "shopee_match.neighbors._cupy", "CupyBackend", requires="cupy")
register_backend("cuml", "shopee_match.neighbors._cuml", "CumlBackend", requires="cuml")


def _installed(module: str | None) -> bool:
    if module is None:
        return True
    return importlib.util.find_spec(module) is not None


def available_backends() -> list[str]:
    """Names of the backends whose requirements are installed.

    >>> "sparse" in available_backends()
    True
    """
    return [n for n, (_, _, req, _) in _BACKENDS.items() if _installed(req)]


def _gpu_present() -> bool:
    try:
        import cupy

        return bool(cupy.cuda.runtime.getDeviceCount() > 0)
    except Exception:
        return False


def get_backend(name: str, emb: Any, **kwargs: Any) -> Backend:
    """Instantiate backend ``name`` (or pick one for ``emb`` when ``name == "auto"``).

    "auto" takes CuPy where a GPU is present, else exact blocked NumPy for dense input,
    and the sparse backend for CSR input. Keyword arguments a backend does not take
    (such as ``working_memory`` for faiss) are dropped.

    >>> type(get_backend("auto", np.zeros((2, 2), np.float32))).__name__
    'NumpyBackend'
    """
    sparse = sp.issparse(emb)
    if name == "auto":
        prefs = _AUTO_SPARSE if sparse else _AUTO_DENSE
        for cand in prefs:
            if cand in _BACKENDS and _installed(_BACKENDS[cand][2]):
                if cand in ("cupy", "cuml") and not _gpu_present():
                    continue
                name = cand
                break
    if name not in _BACKENDS:
        raise ValueError(
            f"Unknown KNN backend {name!r}; choose one of {['auto', *sorted(_BACKENDS)]}."
        )
    module, cls, req, supports_sparse = _BACKENDS[name]
    if not _installed(req):
        raise ImportError(
            f"The {name!r} KNN backend needs the `{req}` package: "
            f"pip install 'shopee_match[{_EXTRA.get(name, name)}]'."
        )
    if sparse and not supports_sparse:
        raise TypeError(
            f"The {name!r} backend needs dense embeddings but got a sparse matrix; use "
            "backend='sparse' (or 'auto') for TF-IDF vectors, or densify with .toarray()."
        )
    klass = getattr(importlib.import_module(module), cls)
    params = inspect.signature(klass).parameters
    obj = klass(**{key: v for key, v in kwargs.items() if key in params})
    logger.debug("KNN backend %s for %s input", name, "sparse" if sparse else "dense")
    backend: Backend = obj
    return backend


_EXTRA = {
    "faiss": "faiss", "faiss_ivf": "faiss", "faiss_hnsw": "faiss", "cupy": "gpu", "cuml": "gpu"
}


def chunk_rows(n_cols: int, working_memory: float | None = None, bytes_per: int = 4) -> int:
    """Rows per block so that one block of ``n_cols`` similarities fits the budget (MiB).

    >>> chunk_rows(1024, working_memory=1)
    256
    """
    budget = (working_memory or WORKING_MEMORY_MIB) * 2**20
    return max(1, int(budget // max(1, n_cols * bytes_per)))


def topk_sorted(block: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of each row of a similarity block: ``(sims, idx)`` sorted by falling sim.

    >>> topk_sorted(np.array([[0.2, 0.7, 0.1]], dtype=np.float32), 1)[1].tolist()
    [[1]]
    """
    from ._topk import topk_block

    return topk_block(block, k)


# BLAS's thread count is process-global: the first thread to enter sets it to one, the
# last to leave restores it, so overlapping searches never leave BLAS at one thread
_blas_lock = threading.Lock()
_blas_users = 0
_blas_limiter: Any = None


def _release_blas_control() -> None:
    """Let any thread set OpenBLAS's count next (threadpoolctl >= 3.8 lets only one
    "controlling" thread change it and silently ignores the others; our reference count
    already keeps our own threads from fighting over it)."""
    from threadpoolctl import OpenBLASController

    clear = getattr(OpenBLASController, "clear_controlling_thread", None)
    if clear is not None:
        clear(force=True)


@contextlib.contextmanager
def blas_single_threaded() -> Iterator[None]:
    """BLAS at one thread inside the block (our worker threads then own the cores).

    Safe for concurrent use: a plain ``threadpool_limits`` in two overlapping threads
    restores in the wrong order (the second saves the first's limit of one as the
    "original"), so here one reference-counted limit covers all the threads inside; the
    last thread out restores it, whichever thread set it.

    >>> with blas_single_threaded():
    ...     pass
    """
    global _blas_users, _blas_limiter
    with _blas_lock:
        if _blas_users == 0:
            from threadpoolctl import threadpool_limits

            _release_blas_control()
            _blas_limiter = threadpool_limits(1, user_api="blas")
            _release_blas_control()
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0:
                _release_blas_control()
                _blas_limiter.restore_original_limits()
                _release_blas_control()
                _blas_limiter = None
