"""Exact dense top-k: blocked float32 BLAS products with a one-pass top-k per block.

Two paths, both exact and both O(n*k) memory plus the block buffers:

- the default: blocks of ``query @ ref.T`` written into reused float32 buffers
  (``np.matmul(..., out=)``, no temporaries). On large inputs one worker thread per
  core takes whole row blocks, each running single-threaded BLAS and then the
  selection on its own block: the product keeps every core busy, as one
  multi-threaded BLAS call would, and the selection runs on all cores too, not beside
  BLAS threads that spin between calls. With the compiled kernel (numba) a row block
  is cut into tiles of a few MiB that each feed the rows' running heaps while still in
  cache; the NumPy kernel reduces whole rows with :func:`._topk.topk_block`;
- ``symmetric=True`` for a self-join (``search(ref)`` after ``fit(ref)``, what
  :class:`NeighborMatcher` does): ``X @ X.T`` is symmetric, so only the tiles on and
  above the diagonal are computed and each tile feeds the top-k of its rows and of its
  columns, merged into the running (n, k) result.
"""

from __future__ import annotations

import os
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ._base import blas_single_threaded, chunk_rows
from ._topk import compiled_kernels, empty_result, topk_block, topk_columns

__all__ = ["NumpyBackend", "effective_n_jobs", "merge_topk"]

# below this many similarities a search runs in the calling thread (thread start-up
# and the BLAS thread limit cost about a millisecond)
_THREADED_MIN = 1 << 24
# compiled path: rows x columns of one tile (16 MiB: 1024 query rows, as a BLAS call
# with a 4096-column reference slice, packs little and runs at full speed)
_TILE_ROWS, _TILE_COLS = 1024, 4096


def effective_n_jobs(n_jobs: int | None) -> int:
    """Worker threads for ``n_jobs`` (``None`` or -1: the cores this process may use).

    >>> effective_n_jobs(1)
    1
    """
    if n_jobs is None or n_jobs < 0:
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # pragma: no cover - macOS, Windows
            return max(1, os.cpu_count() or 1)
    if n_jobs == 0:
        raise ValueError("n_jobs must be a positive number of threads, -1 or None")
    return int(n_jobs)


class NumpyBackend:
    """Exact inner-product top-k with NumPy/BLAS; memory is O(n*k) plus one block.

    ``working_memory`` (MiB) bounds the similarity blocks (all threads together).
    ``kernel`` picks the top-k selection: ``"auto"`` (compiled where numba is installed,
    else NumPy), ``"numba"`` or ``"numpy"``; both give the same neighbours. ``n_jobs``
    worker threads (``None``: one per core) share the blocks of large searches.
    ``symmetric`` computes a self-join from the upper triangle only (half the flops, but
    each tile is selected by rows and by columns over short vectors, which costs more
    than it saves at d = 512 on 2 cores; off by default, see ``benchmarks/RESULTS.md``).

    >>> import numpy as np
    >>> x = np.eye(3, dtype=np.float32)
    >>> s, i = NumpyBackend().fit(x).search(x, 1)
    >>> i.ravel().tolist()
    [0, 1, 2]
    """

    name = "numpy"
    exact = True

    def __init__(
        self,
        working_memory: float | None = None,
        symmetric: bool = False,
        kernel: str = "auto",
        n_jobs: int | None = None,
    ) -> None:
        self.working_memory = working_memory
        self.symmetric = symmetric
        self.kernel = kernel
        self.n_jobs = n_jobs

    def fit(self, ref: np.ndarray) -> NumpyBackend:
        self.ref_ = np.ascontiguousarray(ref, dtype=np.float32)
        try:  # remember the caller's array (to spot a self-join) without keeping it alive
            self._ref_in: Any = weakref.ref(ref)
        except TypeError:
            self._ref_in = lambda: None
        return self

    def search(
        self, query: np.ndarray, k: int, threshold: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` rows of the reference for each query row: ``(sims, idx)``."""
        same = query is self._ref_in() or query is self.ref_
        query = np.ascontiguousarray(query, dtype=np.float32)
        n_ref = self.ref_.shape[0]
        k = min(k, n_ref)
        if query.shape[0] == 0 or k == 0:
            return empty_result(query.shape[0], k)
        if same and self.symmetric and n_ref > 2 * k:
            return self._search_self(k, threshold)
        return self._search_blocks(query, k, threshold)

    # -- query x reference ---------------------------------------------------------
    def _search_blocks(
        self, query: np.ndarray, k: int, threshold: float | None
    ) -> tuple[np.ndarray, np.ndarray]:
        n_q, n_ref = query.shape[0], self.ref_.shape[0]
        sims, idx = empty_result(n_q, k)
        n_jobs = effective_n_jobs(self.n_jobs) if n_q * n_ref >= _THREADED_MIN else 1
        budget = chunk_rows(n_ref, self.working_memory) * n_ref // n_jobs  # floats a thread
        compiled = compiled_kernels(self.kernel, n_q * n_ref)
        if compiled is None:
            rows, cols = max(1, budget // n_ref), n_ref
        else:
            cols = min(n_ref, _TILE_COLS, max(1, budget))
            rows = min(_TILE_ROWS, max(1, budget // cols))
        step = min(max(1, -(-n_q // n_jobs)), rows)
        local = threading.local()
        floor = -np.inf if threshold is None else float(np.float32(threshold))

        def block(start: int) -> None:
            stop = min(start + step, n_q)
            buf = getattr(local, "buf", None)
            if buf is None:
                buf = local.buf = np.empty(step * cols, dtype=np.float32)
            q = query[start:stop]
            if compiled is None:
                out = buf[: (stop - start) * n_ref].reshape(stop - start, n_ref)
                np.matmul(q, self.ref_.T, out=out)
                sims[start:stop], idx[start:stop] = topk_block(out, k, threshold, "numpy")
                return
            heap_s, heap_i = empty_result(stop - start, k)
            for c0 in range(0, n_ref, cols):
                c1 = min(c0 + cols, n_ref)
                tile = buf[: (stop - start) * (c1 - c0)].reshape(stop - start, c1 - c0)
                np.matmul(q, self.ref_[c0:c1].T, out=tile)
                compiled.tile_offer(tile, c0, floor, heap_s, heap_i)
            compiled.heaps_sorted(heap_s, heap_i, sims[start:stop], idx[start:stop])

        _map_blocks(block, range(0, n_q, step), n_jobs)
        return sims, idx

    # -- self-join from the upper triangle -------------------------------------------
    def _search_self(self, k: int, threshold: float | None) -> tuple[np.ndarray, np.ndarray]:
        x = self.ref_
        n = x.shape[0]
        sims, idx = empty_result(n, k)
        # square tiles: about n/8 a side (so ~56% of the n x n products are computed),
        # at least 4k + 1 so top-k pays, at least 1024 for BLAS efficiency, at most
        # what working_memory allows
        t_mem = int(np.sqrt(chunk_rows(1, self.working_memory)))
        t = min(n, max(4 * k + 1, min(t_mem, max(1024, -(-n // 8)))))
        starts = list(range(0, n, t))

        def reduce(tile: np.ndarray, i0: int, i1: int, j0: int, j1: int) -> None:
            s, c = topk_block(tile, k, threshold, self.kernel)
            merge_topk(sims[i0:i1], idx[i0:i1], s, np.where(c >= 0, c + j0, -1))
            if j0 != i0:
                s, c = topk_columns(tile, k, threshold)
                merge_topk(sims[j0:j1], idx[j0:j1], s, np.where(c >= 0, c + i0, -1))

        buf = np.empty(t * t, dtype=np.float32)
        for i0 in starts:
            i1 = min(i0 + t, n)
            for j0 in starts:
                if j0 < i0:
                    continue
                j1 = min(j0 + t, n)
                # a contiguous (i1-i0, j1-j0) view of the flat buffer, ragged tiles too
                tile = buf[: (i1 - i0) * (j1 - j0)].reshape(i1 - i0, j1 - j0)
                np.matmul(x[i0:i1], x[j0:j1].T, out=tile)
                reduce(tile, i0, i1, j0, j1)
        return sims, idx


def merge_topk(
    sims: np.ndarray, idx: np.ndarray, new_sims: np.ndarray, new_idx: np.ndarray
) -> None:
    """Merge a block's sorted top-k into a running sorted top-k, in place.

    >>> s = np.array([[0.9, 0.1]], np.float32); i = np.array([[3, 4]])
    >>> merge_topk(s, i, np.array([[0.5, 0.2]], np.float32), np.array([[7, 8]]))
    >>> i.tolist()
    [[3, 7]]
    """
    k = sims.shape[1]
    allv = np.concatenate([sims, new_sims], axis=1)
    alli = np.concatenate([idx, new_idx], axis=1)
    if allv.shape[1] > k:
        part = np.argpartition(-allv, k - 1, axis=1)[:, :k]
        allv = np.take_along_axis(allv, part, axis=1)
        alli = np.take_along_axis(alli, part, axis=1)
    order = np.argsort(-allv, axis=1, kind="stable")
    sims[...] = np.take_along_axis(allv, order, axis=1)
    idx[...] = np.take_along_axis(alli, order, axis=1)


def _map_blocks(fn: Any, starts: range, n_jobs: int) -> None:
    """``fn(start)`` for every block, in ``n_jobs`` threads with BLAS single-threaded
    (each thread's product then runs on its own core; nothing spins between calls)."""
    if n_jobs == 1 or len(starts) == 1:
        for start in starts:
            fn(start)
        return
    with blas_single_threaded(), ThreadPoolExecutor(n_jobs) as pool:
        for job in [pool.submit(fn, start) for start in starts]:
            job.result()
