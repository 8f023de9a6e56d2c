"""Row-wise top-k of a dense similarity block, at close to one memory pass.

``argpartition`` over a full row of n similarities costs several ns per element, about
as much as the BLAS product that made the block. :func:`topk_block` instead splits each
row's columns into G groups (strided, so the work is vectorised ``np.maximum`` over
contiguous memory), takes each group's max, keeps the ``k`` groups with the largest max
(the row's top k elements are all inside them: an element outside has k larger group
maxima above it) and selects among those ``k * s`` candidates only. With a threshold,
groups whose max is below it are dropped before any partition or sort.

Where numba is installed (the ``[fast]`` extra), ``kernel="auto"`` runs the compiled
one-pass kernel of :mod:`._numba_kernels` instead: about 3x less time per block, the
difference between 1.3x and 1.1x the BLAS floor for the dense backend.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

__all__ = ["KERNELS", "compiled_kernels", "empty_result", "topk_block", "topk_columns"]

#: The values of the ``kernel`` option of the exact backends.
KERNELS = ("auto", "numba", "numpy")
# "auto" leaves searches of fewer similarities than this to NumPy: importing numba and
# loading the cached kernels costs ~0.5 s once, more than such a search saves
_COMPILED_MIN = 1 << 22


def compiled_kernels(kernel: str = "auto", size: int | None = None) -> ModuleType | None:
    """The compiled kernels for ``kernel`` (``None``: use the NumPy path).

    ``"auto"`` uses them where numba imports and the work (``size`` similarities, when
    given) is large enough to pay for loading them, ``"numba"`` always (it requires
    numba), ``"numpy"`` never.

    >>> compiled_kernels("numpy") is None
    True
    """
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    if kernel == "numpy" or (kernel == "auto" and size is not None and size < _COMPILED_MIN):
        return None
    try:
        from . import _numba_kernels
    except Exception as e:  # ImportError, or numba unable to load/cache its code
        if kernel == "numba":
            raise ImportError(
                "kernel='numba' needs numba: pip install 'shopee_match[fast]' "
                "(or use kernel='auto', which falls back to NumPy)"
            ) from e
        return None
    return _numba_kernels


def empty_result(n_rows: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(sims, idx)`` of shape (n_rows, k) filled with ``-inf`` / ``-1``."""
    return (
        np.full((n_rows, k), -np.inf, dtype=np.float32),
        np.full((n_rows, k), -1, dtype=np.int64),
    )


def _group_size(n: int, k: int) -> int:
    # candidates k*s per row and group maxima n/s per row: balance at s = sqrt(n / k)
    return int(min(64, max(1, np.sqrt(n / max(k, 1)))))


def topk_block(
    block: np.ndarray, k: int, threshold: float | None = None, kernel: str = "auto"
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` of each row of ``block`` as ``(sims, idx)``, sorted by falling similarity.

    ``k`` is capped at the number of columns. Where ``threshold`` is given, slots whose
    similarity is below it are ``-inf`` / ``-1``. ``block`` is not modified. ``kernel``:
    see :func:`compiled_kernels` (equal similarities: the compiled kernel returns the
    smaller column first, the NumPy path either).

    >>> import numpy as np
    >>> s, i = topk_block(np.array([[0.1, 0.9, 0.5]], dtype=np.float32), 2)
    >>> i.tolist(), [round(float(v), 2) for v in s[0]]
    ([[1, 2]], [0.9, 0.5])
    """
    n_rows, n = block.shape
    k = min(k, n)
    if n_rows == 0 or k == 0:
        return empty_result(n_rows, k)
    compiled = compiled_kernels(kernel, block.size)
    if compiled is not None:
        sims, idx = empty_result(n_rows, k)
        floor = -np.inf if threshold is None else float(np.float32(threshold))
        compiled.dense_topk(np.ascontiguousarray(block, dtype=np.float32), k, floor, sims, idx)
        return sims, idx
    s = _group_size(n, k)
    n_groups = n // s
    if s < 2 or n_groups <= 2 * k:
        cols = None  # small rows: select over the whole row
        vals = block
    else:
        n_full = n_groups * s
        # group g holds columns g, g + G, g + 2G, ...: maxima by s contiguous np.maximum
        if block.flags.c_contiguous:
            gmax = block[:, :n_full].reshape(n_rows, s, n_groups).max(axis=1)
        else:  # e.g. a transposed tile: elementwise maxima keep its memory order
            gmax = block[:, :n_groups].copy(order="K")
            for t in range(1, s):
                np.maximum(gmax, block[:, t * n_groups:(t + 1) * n_groups], out=gmax)
        kg = k
        if threshold is not None:
            kg = min(k, int((gmax >= threshold).sum(axis=1).max()))
        if kg > 0:
            top = np.argpartition(gmax, n_groups - kg, axis=1)[:, n_groups - kg:]
            cols = (top[:, :, None] + n_groups * np.arange(s)).reshape(n_rows, kg * s)
        else:
            cols = np.empty((n_rows, 0), dtype=np.intp)
        if n_full < n:  # the last n - n_full columns are in no group: always candidates
            tail = np.broadcast_to(np.arange(n_full, n), (n_rows, n - n_full))
            cols = np.concatenate([cols, tail], axis=1)
        vals = _gather_rows(block, cols)
    return _select(vals, cols, k, threshold)


def _gather_rows(block: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``block[i, cols[i, j]]``; a flat ``np.take`` where ``block`` is contiguous (faster
    than ``take_along_axis``'s two broadcast index arrays)."""
    if not block.flags.c_contiguous:
        return np.take_along_axis(block, cols, axis=1)
    base = (np.arange(block.shape[0], dtype=np.intp) * block.shape[1])[:, None]
    return np.take(block.reshape(-1), cols + base)


def topk_columns(
    block: np.ndarray, k: int, threshold: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` of each *column* of a C-ordered ``block``: ``topk_block(block.T)`` without
    the transposed copy (a transpose costs as much per element as the product).

    >>> s, i = topk_columns(np.array([[0.1], [0.9], [0.5]], dtype=np.float32), 2)
    >>> i.tolist()
    [[1, 2]]
    """
    n, m = block.shape
    k = min(k, n)
    if m == 0 or k == 0:
        return empty_result(m, k)
    s = _group_size(n, k)
    n_groups = n // s
    if s < 2 or n_groups <= 2 * k:
        return topk_block(np.ascontiguousarray(block.T), k, threshold)
    n_full = n_groups * s
    # row group g holds rows g, g + G, ...: maxima over s contiguous (G, m) slabs
    gmax = np.ascontiguousarray(block[:n_full]).reshape(s, n_groups, m).max(axis=0)
    kg = k
    if threshold is not None:
        kg = min(k, int((gmax >= threshold).sum(axis=0).max()))
    if kg > 0:
        top = np.argpartition(gmax, n_groups - kg, axis=0)[n_groups - kg:]
        rows = (top[None, :, :] + n_groups * np.arange(s)[:, None, None]).reshape(s * kg, m)
    else:
        rows = np.empty((0, m), dtype=np.intp)
    if n_full < n:
        tail = np.broadcast_to(np.arange(n_full, n)[:, None], (n - n_full, m))
        rows = np.concatenate([rows, tail], axis=0)
    if block.flags.c_contiguous:
        vals = np.take(block.reshape(-1), rows * m + np.arange(m, dtype=np.intp))
    else:
        vals = np.take_along_axis(block, rows, axis=0)
    return _select(np.ascontiguousarray(vals.T), np.ascontiguousarray(rows.T), k, threshold)


def _select(
    vals: np.ndarray, cols: np.ndarray | None, k: int, threshold: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of each row of ``vals`` (candidate columns ``cols``; ``None``: 0..n-1)."""
    n_rows, n_cand = vals.shape
    sims, idx = empty_result(n_rows, k)
    kk = min(k, n_cand)
    if threshold is not None and n_cand:
        kk = min(kk, int((vals >= threshold).sum(axis=1).max()))
    if kk == 0:
        return sims, idx
    if kk < n_cand:
        part = np.argpartition(vals, n_cand - kk, axis=1)[:, n_cand - kk:]
        v = np.take_along_axis(vals, part, axis=1)
    else:
        part = np.broadcast_to(np.arange(n_cand), (n_rows, n_cand))
        v = vals
    order = np.argsort(-v, axis=1, kind="stable")
    part = np.take_along_axis(part, order, axis=1)
    v = np.take_along_axis(v, order, axis=1)
    found = part if cols is None else np.take_along_axis(cols, part, axis=1)
    sims[:, :kk] = v
    idx[:, :kk] = found
    if threshold is not None:
        below = sims < threshold
        sims[below] = -np.inf
        idx[below] = -1
    return sims, idx
