"""The IVF quantizer: rows projected to a few dense dimensions (a count sketch for sparse
TF-IDF rows), spherical k-means cells (flat, or two-level for many cells), and each row's
nearest cells. Plain NumPy, used by :mod:`._ivf` (the cell search) and :mod:`._recall`
(the label-free recall of a quantizer and probe count)."""

from __future__ import annotations

import functools
import itertools
from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = ["FLAT_MAX_CELLS", "assign", "project", "spherical_kmeans", "train_quantizer"]


@functools.lru_cache(maxsize=4)
def _sketch(n_features: int, dim: int, seed: int, per_feature: int = 4) -> sp.csr_matrix:
    """A sparse ``(n_features, dim)`` projection: each feature adds to ``per_feature``
    random output dimensions with random signs (a count sketch; cosines are preserved
    in expectation)."""
    rng = np.random.default_rng(seed)
    cols = rng.integers(0, dim, size=(n_features, per_feature))
    signs = rng.choice(np.array([-1.0, 1.0], np.float32), size=(n_features, per_feature))
    rows = np.repeat(np.arange(n_features), per_feature)
    data = signs.ravel() / np.float32(np.sqrt(per_feature))
    return sp.csr_matrix((data, (rows, cols.ravel())), shape=(n_features, dim), dtype=np.float32)


def project(x: Any, dim: int = 256, seed: int = 0) -> np.ndarray:
    """L2-normalised dense ``(n, dim)`` projections of embedding rows (dense rows of at
    most ``dim`` columns are kept as they are).

    >>> project(np.eye(3, dtype=np.float32), dim=8).shape
    (3, 3)
    """
    if sp.issparse(x):
        y = np.asarray((sp.csr_matrix(x) @ _sketch(x.shape[1], dim, seed)).toarray())
    else:
        x = np.asarray(x, dtype=np.float32)
        y = x if x.shape[1] <= dim else x @ _sketch(x.shape[1], dim, seed).toarray()
    y = np.asarray(y, dtype=np.float32)
    norms = np.linalg.norm(y, axis=1, keepdims=True)
    return np.asarray(y / np.maximum(norms, 1e-12), dtype=np.float32)


def _nearest(x: np.ndarray, centroids: np.ndarray, n: int, block: int = 8192) -> np.ndarray:
    """Indices of the ``n`` most similar centroids of each row, nearest first."""
    n = min(n, len(centroids))
    out = np.empty((len(x), n), dtype=np.int64)
    for s in range(0, len(x), block):
        sims = x[s:s + block] @ centroids.T
        top = np.argpartition(-sims, n - 1, axis=1)[:, :n] if n < sims.shape[1] else \
            np.broadcast_to(np.arange(sims.shape[1]), sims.shape).copy()
        order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1, kind="stable")
        out[s:s + block] = np.take_along_axis(top, order, axis=1)
    return out


def spherical_kmeans(x: np.ndarray, n_cells: int, n_iter: int = 10, seed: int = 0) -> np.ndarray:
    """Unit-norm centroids of ``x`` (rows unit-norm) by cosine k-means (Lloyd steps);
    empty cells are reseeded from random rows.

    >>> x = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], np.float32)
    >>> spherical_kmeans(x, 2, seed=0).shape
    (2, 2)
    """
    rng = np.random.default_rng(seed)
    n_cells = max(1, min(n_cells, len(x)))
    cent = x[rng.choice(len(x), n_cells, replace=False)].copy()
    for _ in range(n_iter):
        assign = _nearest(x, cent, 1)[:, 0]
        onehot = sp.csr_matrix(
            (np.ones(len(x), np.float32), (assign, np.arange(len(x)))), shape=(n_cells, len(x))
        )
        new = np.asarray(onehot @ x, dtype=np.float32)
        norms = np.linalg.norm(new, axis=1)
        empty = norms == 0
        new[empty] = x[rng.choice(len(x), int(empty.sum()), replace=True)]
        norms[empty] = 1.0
        cent = new / norms[:, None]
    return cent


#: above this many cells the quantizer has two levels (sqrt(C) coarse x fine cells), so
#: assigning a posting costs about 3 sqrt(C) dot products instead of C
FLAT_MAX_CELLS = 1024


def train_quantizer(sample: np.ndarray, n_cells: int, seed: int = 0) -> dict[str, Any]:
    """Cell centroids from a sample: flat k-means, or two-level for many cells.

    >>> q = train_quantizer(np.eye(4, dtype=np.float32), 2)
    >>> q["centroids"].shape, q["coarse"] is None
    ((2, 4), True)
    """
    if n_cells <= FLAT_MAX_CELLS:
        return {"centroids": spherical_kmeans(sample, n_cells, seed=seed), "coarse": None,
                "fine": None}
    n_coarse = int(np.ceil(np.sqrt(n_cells)))
    coarse = spherical_kmeans(sample, n_coarse, seed=seed)
    top = _nearest(sample, coarse, 1)[:, 0]
    fine, starts = [], [0]
    for j in range(len(coarse)):
        members = sample[top == j]
        want = max(1, round(n_cells * len(members) / len(sample)))
        cent = spherical_kmeans(members, want, seed=seed + j) if len(members) else coarse[j:j + 1]
        fine.append(cent)
        starts.append(starts[-1] + len(cent))
    return {"centroids": np.concatenate(fine), "coarse": coarse, "fine": np.array(starts)}


def assign(
    x: np.ndarray, quantizer: dict[str, Any], n_probe: int, block: int = 32768
) -> np.ndarray:
    """The ``n_probe`` nearest cells of each row, nearest first (two-level: among the
    fine cells of the row's ``n_probe + 1`` nearest coarse cells).

    >>> q = train_quantizer(np.eye(4, dtype=np.float32), 2)
    >>> assign(np.eye(4, dtype=np.float32), q, 1).shape
    (4, 1)
    """
    if quantizer["coarse"] is None:
        return _nearest(x, quantizer["centroids"], n_probe)
    parts = [_assign2(x[s:s + block], quantizer, n_probe) for s in range(0, len(x), block)]
    return np.concatenate(parts) if parts else np.empty((0, n_probe), dtype=np.int64)


def _assign2(x: np.ndarray, quantizer: dict[str, Any], n_probe: int) -> np.ndarray:
    cent, starts = quantizer["centroids"], quantizer["fine"]
    width = min(len(quantizer["coarse"]), n_probe + 1)
    top = _nearest(x, quantizer["coarse"], width)
    best_s = np.full((len(x), n_probe), -np.inf, dtype=np.float32)
    best_c = np.full((len(x), n_probe), -1, dtype=np.int64)
    order = np.argsort(top, axis=None, kind="stable")  # (row, slot) pairs by coarse cell
    coarse = top.ravel()[order]
    bounds = np.flatnonzero(np.r_[True, coarse[1:] != coarse[:-1], True])
    for a, b in itertools.pairwise(bounds):
        j = int(coarse[a])
        r = order[a:b] // width  # distinct rows: a row's coarse cells are distinct
        sim = x[r] @ cent[starts[j]:starts[j + 1]].T
        kk = min(n_probe, sim.shape[1])
        part = np.argpartition(-sim, kk - 1, axis=1)[:, :kk]
        cand_s = np.concatenate([best_s[r], np.take_along_axis(sim, part, axis=1)], axis=1)
        cand_c = np.concatenate([best_c[r], part + starts[j]], axis=1)
        keep = np.argsort(-cand_s, axis=1, kind="stable")[:, :n_probe]
        best_s[r] = np.take_along_axis(cand_s, keep, axis=1)
        best_c[r] = np.take_along_axis(cand_c, keep, axis=1)
    return np.where(best_c >= 0, best_c, best_c[:, :1])  # fewer cells than n_probe: repeat
