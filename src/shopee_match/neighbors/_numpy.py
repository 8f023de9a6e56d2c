"""Exact dense top-k: blocked float32 BLAS products with a one-pass top-k per block.

Two paths, both exact and both O(n*k) memory plus the block buffers:

- the default: row blocks of ``query @ ref.T`` written into one reused float32 buffer
  (``np.matmul(..., out=)``, no temporaries), each reduced by the one-pass top-k of
  :mod:`._topk`; optionally the top-k of block i runs in a worker thread while BLAS
  computes block i+1 (``overlap=True``);
- ``symmetric=True`` for a self-join (``search(ref)`` after ``fit(ref)``, what
  :class:`NeighborMatcher` does): ``X @ X.T`` is symmetric, so only the tiles on and
  above the diagonal are computed and each tile feeds the top-k of its rows and of its
  columns, merged into the running (n, k) result.
"""

from __future__ import annotations

import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from ._base import chunk_rows
from ._topk import empty_result, topk_block, topk_columns

__all__ = ["NumpyBackend", "merge_topk"]


class NumpyBackend:
    """Exact inner-product top-k with NumPy/BLAS; memory is O(n*k) plus one block.

    ``working_memory`` (MiB) bounds the similarity blocks. Two options, off by default
    because they lost on 2 shared cores with OpenBLAS (see ``benchmarks/RESULTS.md``):
    ``overlap`` runs top-k selection in a thread beside BLAS (OpenBLAS threads spin
    between calls and compete with it); ``symmetric`` computes a self-join from the
    upper triangle only (half the flops, but each tile is selected by rows and by
    columns over short vectors, which costs more than it saves at d = 512).

    >>> import numpy as np
    >>> x = np.eye(3, dtype=np.float32)
    >>> s, i = NumpyBackend().fit(x).search(x, 1)
    >>> i.ravel().tolist()
    [0, 1, 2]
    """

    name = "numpy"
    exact = True

    def __init__(
        self, working_memory: float | None = None, overlap: bool = False, symmetric: bool = False
    ) -> None:
        self.working_memory = working_memory
        self.overlap = overlap
        self.symmetric = symmetric

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
        n_buf = 2 if self.overlap else 1
        step = min(n_q, max(1, chunk_rows(n_ref, self.working_memory) // n_buf))
        bufs = [np.empty((step, n_ref), dtype=np.float32) for _ in range(n_buf)]
        ref_t = self.ref_.T

        def reduce(buf: np.ndarray, start: int, stop: int) -> None:
            s, i = topk_block(buf[: stop - start], k, threshold)
            sims[start:stop] = s
            idx[start:stop] = i

        with _Runner(self.overlap) as run:
            for b, start in enumerate(range(0, n_q, step)):
                stop = min(start + step, n_q)
                buf = bufs[b % n_buf]
                run.wait_for(buf)  # the selection still reading this buffer must finish
                np.matmul(query[start:stop], ref_t, out=buf[: stop - start])
                run.submit(buf, reduce, buf, start, stop)
        return sims, idx

    # -- self-join from the upper triangle -------------------------------------------
    def _search_self(self, k: int, threshold: float | None) -> tuple[np.ndarray, np.ndarray]:
        x = self.ref_
        n = x.shape[0]
        sims, idx = empty_result(n, k)
        n_buf = 2 if self.overlap else 1
        # a square tile of t x t floats per buffer, at least 4k columns so top-k pays
        # square tiles: about n/8 a side (so ~56% of the n x n products are computed),
        # at least 1024 for BLAS efficiency, at most what working_memory allows
        t_mem = int(np.sqrt(chunk_rows(1, self.working_memory) / n_buf))
        t = min(n, max(4 * k + 1, min(t_mem, max(1024, -(-n // 8)))))
        bufs = [np.empty(t * t, dtype=np.float32) for _ in range(n_buf)]
        starts = list(range(0, n, t))

        def reduce(tile: np.ndarray, i0: int, i1: int, j0: int, j1: int) -> None:
            s, c = topk_block(tile, k, threshold)
            merge_topk(sims[i0:i1], idx[i0:i1], s, np.where(c >= 0, c + j0, -1))
            if j0 != i0:
                s, c = topk_columns(tile, k, threshold)
                merge_topk(sims[j0:j1], idx[j0:j1], s, np.where(c >= 0, c + i0, -1))

        with _Runner(self.overlap) as run:
            b = 0
            for i0 in starts:
                i1 = min(i0 + t, n)
                for j0 in starts:
                    if j0 < i0:
                        continue
                    j1 = min(j0 + t, n)
                    buf = bufs[b % n_buf]
                    b += 1
                    run.wait_for(buf)
                    # a contiguous (i1-i0, j1-j0) view of the flat buffer, ragged tiles too
                    tile = buf[: (i1 - i0) * (j1 - j0)].reshape(i1 - i0, j1 - j0)
                    np.matmul(x[i0:i1], x[j0:j1].T, out=tile)
                    run.submit(buf, reduce, tile, i0, i1, j0, j1)
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


class _Runner:
    """Runs block reductions in one worker thread (or inline), one job per buffer."""

    def __init__(self, threaded: bool) -> None:
        self._pool = ThreadPoolExecutor(1) if threaded else None
        self._jobs: dict[int, Future[Any]] = {}

    def __enter__(self) -> _Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        for job in self._jobs.values():
            job.result()
        if self._pool is not None:
            self._pool.shutdown()

    def wait_for(self, buf: np.ndarray) -> None:
        job = self._jobs.pop(id(buf), None)
        if job is not None:
            job.result()

    def submit(self, buf: np.ndarray, fn: Any, *args: Any) -> None:
        if self._pool is None:
            fn(*args)
        else:
            self._jobs[id(buf)] = self._pool.submit(fn, *args)
