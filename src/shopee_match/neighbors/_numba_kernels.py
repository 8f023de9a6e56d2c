"""Compiled top-k kernels (numba): one memory pass over each row, no allocation.

Imported only through :func:`._topk.compiled_kernels` (numba is the optional extra
``[fast]``). Each row keeps a size-k min-heap. The kernels are serial and release the
GIL: the backends run them in their own worker threads, beside single-threaded BLAS
calls, so no threading layer of numba's is involved.
"""

from __future__ import annotations

import numpy as np
from numba import njit

Arr = np.ndarray
_CHUNK = 16


@njit(inline="always")
def _sift_down(hv: Arr, hi: Arr, v: float, j: int) -> None:
    """Replace the root of the min-heap (hv, hi) by (v, j) and restore the heap."""
    k = hv.shape[0]
    pos = 0
    while True:
        c = 2 * pos + 1
        if c >= k:
            break
        if c + 1 < k and (hv[c + 1] < hv[c] or (hv[c + 1] == hv[c] and hi[c + 1] > hi[c])):
            c += 1
        if hv[c] < v or (hv[c] == v and hi[c] > j):
            hv[pos] = hv[c]
            hi[pos] = hi[c]
            pos = c
        else:
            break
    hv[pos] = v
    hi[pos] = j


@njit(inline="always")
def _offer(v: float, j: int, hv: Arr, hi: Arr, floor: float) -> None:
    """Put (v, j) in the heap if it beats the root (ties: the smaller index wins)."""
    if v >= floor and (v > hv[0] or (v == hv[0] and j < hi[0])):
        _sift_down(hv, hi, v, j)


@njit(inline="always")
def _push_row(
    row: Arr, hv: Arr, hi: Arr, floor: float, cmax: Arr, ch_v: Arr, ch_i: Arr, col0: int = 0
) -> None:
    """Offer every ``row[m]`` (column ``col0 + m``) to the heap, in two passes.

    Pass one writes each chunk's maximum to ``cmax`` (a vectorised memory pass) and
    keeps the ``k`` largest maxima in a second heap (``ch_v``, ``ch_i``): its root bounds
    the row's k-th largest value from below. Pass two offers the elements of the chunks
    whose maximum reaches that bound, about ``k`` chunks.
    """
    n = row.shape[0]
    n_ch = n // _CHUNK
    ch_v[:] = -np.inf
    ch_i[:] = -1
    for c in range(n_ch):
        m0 = c * _CHUNK
        best = row[m0]
        for m in range(m0 + 1, m0 + _CHUNK):  # a constant trip count: vectorised
            best = max(best, row[m])
        cmax[c] = best
        if best > ch_v[0]:
            _sift_down(ch_v, ch_i, best, c)
    gate = max(ch_v[0], hv[0], floor)
    for c in range(n_ch):
        if cmax[c] >= gate:
            for m in range(c * _CHUNK, (c + 1) * _CHUNK):
                if row[m] >= gate:
                    _offer(row[m], col0 + m, hv, hi, floor)
    for m in range(n_ch * _CHUNK, n):
        _offer(row[m], col0 + m, hv, hi, floor)


@njit(inline="always")
def _pop_sorted(hv: Arr, hi: Arr, out_s: Arr, out_i: Arr) -> None:
    """Empty the heap into the outputs by falling similarity, then rising index (empty
    slots, index -1 and -inf, last); no allocation (heapsort)."""
    for last in range(hv.shape[0] - 1, -1, -1):
        out_s[last] = hv[0]
        out_i[last] = hi[0]
        if last > 0:
            _sift_down(hv[:last], hi[:last], hv[last], hi[last])
    for m in range(hv.shape[0]):
        if out_i[m] < 0:
            out_s[m] = -np.inf


@njit(cache=True, nogil=True)
def dense_topk(block: Arr, k: int, floor: float, out_s: Arr, out_i: Arr) -> None:
    """Top-``k`` of each row of a C-ordered float32 ``block`` into ``out_s``/``out_i``
    (values ``>= floor`` only; the rest of each output row is ``-inf`` / ``-1``)."""
    n_rows, n = block.shape
    hv = np.empty(k, dtype=np.float32)
    hi = np.empty(k, dtype=np.int64)
    cmax = np.empty(n // _CHUNK, dtype=np.float32)
    ch_v = np.empty(k, dtype=np.float32)
    ch_i = np.empty(k, dtype=np.int64)
    for r in range(n_rows):
        hv[:] = -np.inf
        hi[:] = -1
        _push_row(block[r], hv, hi, floor, cmax, ch_v, ch_i)
        _pop_sorted(hv, hi, out_s[r], out_i[r])


@njit(cache=True, nogil=True)
def tile_offer(tile: Arr, col0: int, floor: float, heap_s: Arr, heap_i: Arr) -> None:
    """Offer a tile of similarities (columns ``col0 ...``) to the running heaps of its
    rows (``heap_s``/``heap_i``, one row per tile row, filled with ``-inf`` / ``-1`` at
    the start). A row whose heap is not yet full takes the two-pass scan of
    :func:`_push_row`; later tiles take one pass, a chunk looked at only when its
    maximum reaches the row's current k-th best. :func:`heaps_sorted` turns the heaps
    into the result."""
    n_rows, n = tile.shape
    n_full = n - n % _CHUNK
    k = heap_s.shape[1]
    cmax = np.empty(n // _CHUNK, dtype=np.float32)
    ch_v = np.empty(k, dtype=np.float32)
    ch_i = np.empty(k, dtype=np.int64)
    for r in range(n_rows):
        hv = heap_s[r]
        hi = heap_i[r]
        row = tile[r]
        if hi[0] < 0:  # the heap is not full yet (first tile): the two-pass scan
            _push_row(row, hv, hi, floor, cmax, ch_v, ch_i, col0)
            continue
        gate = max(hv[0], floor)
        for m0 in range(0, n_full, _CHUNK):
            best = row[m0]
            for m in range(m0 + 1, m0 + _CHUNK):  # a constant trip count: vectorised
                best = max(best, row[m])
            if best >= gate:
                for m in range(m0, m0 + _CHUNK):
                    if row[m] >= gate:
                        _offer(row[m], col0 + m, hv, hi, floor)
                gate = max(hv[0], floor)
        for m in range(n_full, n):
            _offer(row[m], col0 + m, hv, hi, floor)


@njit(cache=True, nogil=True)
def heaps_sorted(heap_s: Arr, heap_i: Arr, out_s: Arr, out_i: Arr) -> None:
    """Each row's heap into ``out_s``/``out_i``, by falling similarity (heaps emptied)."""
    for r in range(heap_s.shape[0]):
        _pop_sorted(heap_s[r], heap_i[r], out_s[r], out_i[r])


@njit(cache=True, nogil=True)
def sparse_topk(
    q_ptr: Arr, q_idx: Arr, q_val: Arr, r_ptr: Arr, r_idx: Arr, r_val: Arr,
    dense: Arr, n_ref: int, k: int, floor: float, out_s: Arr, out_i: Arr,
) -> None:
    """Fused sparse product + top-k for the query rows ``q`` (CSR) against a reference
    given by its transpose ``r`` (CSR, features x n_ref).

    Each query row's products are added into a dense row: ``dense[row]`` where
    ``dense`` has rows (the BLAS product of the frequent columns, reduced by the
    two-pass row scan), else a zeroed accumulator of which only the touched columns
    are ranked and then cleared (Gustavson's sparse product with a dense accumulator).
    """
    n_q = q_ptr.shape[0] - 1
    has_dense = dense.shape[0] > 0
    size = 0 if has_dense else n_ref
    acc = np.zeros(size, dtype=np.float32)
    seen = np.zeros(size, dtype=np.bool_)
    touched = np.empty(size, dtype=np.int64)
    hv = np.empty(k, dtype=np.float32)
    hi = np.empty(k, dtype=np.int64)
    cmax = np.empty(n_ref // _CHUNK if has_dense else 0, dtype=np.float32)
    ch_v = np.empty(k, dtype=np.float32)
    ch_i = np.empty(k, dtype=np.int64)
    for r in range(n_q):
        row = dense[r] if has_dense else acc
        n_t = 0
        for a in range(q_ptr[r], q_ptr[r + 1]):
            w = q_val[a]
            f = q_idx[a]
            for b in range(r_ptr[f], r_ptr[f + 1]):
                j = r_idx[b]
                row[j] += w * r_val[b]
                if not has_dense and not seen[j]:
                    seen[j] = True
                    touched[n_t] = j
                    n_t += 1
        hv[:] = -np.inf
        hi[:] = -1
        if has_dense:
            _push_row(row, hv, hi, floor, cmax, ch_v, ch_i)
        else:
            for m in range(n_t):
                j = touched[m]
                _offer(acc[j], j, hv, hi, floor)
                acc[j] = 0.0
                seen[j] = False
        _pop_sorted(hv, hi, out_s[r], out_i[r])
