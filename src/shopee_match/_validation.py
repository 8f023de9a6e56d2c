"""Input checks shared by every layer: one place, one message style (expected, got, fix)."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = [
    "NotFittedError",
    "check_embeddings",
    "check_is_fitted",
    "check_scalar",
]


class NotFittedError(ValueError, AttributeError):
    """Raised when an estimator is used before ``fit``."""


def check_is_fitted(estimator: Any, attribute: str) -> None:
    """Raise :class:`NotFittedError` unless ``estimator`` has the fitted ``attribute``."""
    if getattr(estimator, attribute, None) is None:
        name = type(estimator).__name__
        raise NotFittedError(
            f"This {name} instance is not fitted yet. Call 'fit' with appropriate "
            "arguments before using this estimator."
        )


def check_scalar(
    value: Any,
    name: str,
    kind: type | tuple[type, ...],
    *,
    min_val: Any = None,
    max_val: Any = None,
    include_min: bool = True,
    include_max: bool = True,
) -> Any:
    """Check a scalar parameter's type and range; return it unchanged.

    >>> check_scalar(5, "k", int, min_val=1)
    5
    """
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise TypeError(f"`{name}` must be {_kind_name(kind)}, got bool {value!r}.")
    if not isinstance(value, kind):
        raise TypeError(
            f"`{name}` must be {_kind_name(kind)}, got {type(value).__name__} {value!r}."
        )
    if min_val is not None and (value < min_val if include_min else value <= min_val):
        op = ">=" if include_min else ">"
        raise ValueError(f"`{name}` must be {op} {min_val}, got {value!r}.")
    if max_val is not None and (value > max_val if include_max else value >= max_val):
        op = "<=" if include_max else "<"
        raise ValueError(f"`{name}` must be {op} {max_val}, got {value!r}.")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names: dict[Any, str] = {numbers.Integral: "an integer", numbers.Real: "a real number"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def check_embeddings(
    emb: Any, *, name: str = "embeddings", allow_sparse: bool = True
) -> np.ndarray | sp.csr_matrix:
    """Return ``emb`` as a C-contiguous float32 2-D array (or float32 CSR matrix).

    Safe conversions (float64, lists, other sparse formats) are coerced; anything
    else raises with a message naming what was expected and how to fix it.

    >>> check_embeddings([[1.0, 0.0]]).dtype
    dtype('float32')
    """
    if sp.issparse(emb):
        if not allow_sparse:
            raise TypeError(
                f"Expected a dense array for `{name}`, got a sparse matrix. "
                "Convert it with `.toarray()` or use a sparse-capable backend."
            )
        out = sp.csr_matrix(emb, dtype=np.float32)
        if out.ndim != 2:  # pragma: no cover - scipy sparse is always 2-D
            raise ValueError(f"Expected a 2-D sparse matrix for `{name}`.")
        if not np.all(np.isfinite(out.data)):
            raise ValueError(f"`{name}` contains NaN or infinity; clean or drop those rows.")
        return out
    arr = np.asarray(emb)
    if arr.dtype.kind not in "fiub":
        raise TypeError(
            f"Expected numeric `{name}`, got dtype {arr.dtype}. Pass a float array of "
            "shape (n_postings, n_features)."
        )
    if arr.ndim != 2:
        raise ValueError(
            f"Expected a 2-D array for `{name}`, got {arr.ndim}-D of shape {arr.shape} "
            "instead. Reshape your data with array.reshape(1, -1) for a single posting "
            "or array.reshape(-1, 1) for a single feature."
        )
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.isfinite(arr).all(axis=1))[0])
        raise ValueError(
            f"`{name}` contains NaN or infinity (first at row {bad}); clean or drop those rows."
        )
    return arr


def l2_normalize(emb: np.ndarray | sp.spmatrix) -> np.ndarray | sp.csr_matrix:
    """L2-normalise rows; all-zero rows stay zero.

    >>> l2_normalize(np.array([[3.0, 4.0]], dtype=np.float32)).tolist()
    [[0.6000000238418579, 0.800000011920929]]
    """
    if sp.issparse(emb):
        from sklearn.preprocessing import normalize

        return sp.csr_matrix(normalize(emb, norm="l2", copy=True), dtype=np.float32)
    arr = np.asarray(emb, dtype=np.float32)
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(arr / norms, dtype=np.float32)
