"""The GPU path: ``cuml.dask.neighbors.NearestNeighbors`` on dense embeddings.

Used with ``method="cuml"`` on a Dask cluster of GPU workers (``dask-cuda``), where
``cuml`` is installed (``pip install 'shopee_match[gpu]'``). cuML's multi-node k-NN
computes exact Euclidean neighbours; on unit rows ``cos = 1 - d**2 / 2``. The top-k
rows then go through the same selection as the exact CPU path. Sparse (TF-IDF) rows
are not supported by cuML's distributed k-NN: use ``method="exact"`` or ``"ivf"`` there.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from ._search import select_rows

__all__ = ["cuml_edges"]


def _dense(part: Any, step: str) -> np.ndarray:
    x = part.embs[step]
    if sp.issparse(x):
        raise NotImplementedError(
            f"Step {step!r} has sparse embeddings; cuml.dask NearestNeighbors needs dense "
            "rows. Use method='exact' or method='ivf' for TF-IDF steps."
        )
    return np.ascontiguousarray(x, dtype=np.float32)


def _finish(dist: np.ndarray, idx: np.ndarray, offset: int, matcher: Any) -> Any:
    dist, idx = np.asarray(dist), np.asarray(idx).astype(np.int64)
    sims = (1.0 - np.square(dist) / 2.0).astype(np.float32)
    floor = matcher.similarity_threshold() if int(matcher.min_matches) <= 1 else -np.inf
    idx = np.where(sims >= floor, idx, -1)
    self_ids = np.arange(len(idx), dtype=np.int64) + offset
    return select_rows(sims, idx, self_ids, matcher)


def cuml_edges(
    client: Any, parts: list[Any], offsets: np.ndarray, step: str, matcher: Any
) -> list[Any]:
    """For each partition, a future of its edges, searched by ``cuml.dask`` on the GPUs."""
    try:
        import dask.array as da
        from cuml.dask.neighbors import NearestNeighbors
    except ImportError as exc:
        raise ImportError(
            f"method='cuml' needs cuML on the workers: pip install 'shopee_match[gpu]' ({exc})."
        ) from exc
    from dask import delayed

    dense = [client.submit(_dense, p, step, pure=False) for p in parts]
    dim = int(client.submit(lambda x: x.shape[1], dense[0], pure=False).result())
    sizes = np.diff(offsets)
    x = da.concatenate([
        da.from_delayed(delayed(f), shape=(int(n), dim), dtype=np.float32)
        for f, n in zip(dense, sizes)
    ])
    k = min(int(matcher.k), int(offsets[-1]))
    nn = NearestNeighbors(n_neighbors=k, client=client).fit(x)
    dist, idx = nn.kneighbors(x)
    dist = dist.rechunk((tuple(int(n) for n in sizes), k))
    idx = idx.rechunk((tuple(int(n) for n in sizes), k))
    futs = client.compute([
        delayed(_finish)(d, i, int(off), matcher)
        for d, i, off in zip(dist.to_delayed().ravel(), idx.to_delayed().ravel(), offsets[:-1])
    ])
    return list(futs)
