"""Approximate distributed k-NN: an IVF partition of the embedding space, shuffled by cell.

1. Every row is projected to ``dim`` dense dimensions (a count-sketch random projection
   for sparse TF-IDF rows, regenerated from a seed on each worker: nothing to ship),
   and a sample of the projections is gathered.
2. Spherical k-means on the sample gives ``n_cells`` centroids; cells are packed into
   buckets of about equal estimated size (longest first).
3. Each posting joins its ``n_probe`` nearest cells: partitions send the rows to the
   buckets that hold those cells (one shuffle, ``n_probe`` copies of each row).
4. Inside each cell the matcher's exact backend searches all members against all
   members; the top-k is pruned to what the final selection can keep
   (:func:`._search.prune`) and sent to the partition that owns the posting.
5. Each partition merges its postings' candidates (a pair found in two cells counts
   once), takes the top-k and thresholds it as the exact path does.

Two postings are compared only when they share a cell, so a true neighbour is missed
when the two fall in disjoint cell sets: :func:`~shopee_match.distributed.predict_dask`
reports the recall against exact search on a sample.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import logging
import time
from typing import Any

import numpy as np
import scipy.sparse as sp

from ._io import Part, home_of, nbytes
from ._search import pair_topk, prune, select_rows, topk_from_triples

__all__ = [
    "assign", "bucket_plan", "ivf_edges", "project", "spherical_kmeans", "train_quantizer",
]

logger = logging.getLogger(__name__)


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


def bucket_plan(sizes: np.ndarray, n_buckets: int) -> np.ndarray:
    """Pack cells (estimated ``sizes``) into ``n_buckets``, largest first into the
    lightest bucket; returns each cell's bucket.

    >>> bucket_plan(np.array([5, 1, 4, 2]), 2).tolist()
    [0, 0, 1, 1]
    """
    heap = [(0.0, b) for b in range(n_buckets)]
    out = np.zeros(len(sizes), dtype=np.int64)
    for c in np.argsort(-np.asarray(sizes), kind="stable"):
        load, b = heapq.heappop(heap)
        out[c] = b
        heapq.heappush(heap, (load + float(sizes[c]), b))
    return out


def sample_projections(part: Part, step: str, n: int, dim: int, seed: int) -> np.ndarray:
    """Projections of ``n`` random rows of a partition (for the k-means sample)."""
    x = part.embs[step]
    rng = np.random.default_rng(seed + part.offset)
    rows = np.sort(rng.choice(x.shape[0], min(n, x.shape[0]), replace=False))
    return project(x[rows], dim, seed)


def _split(part: Part, step: str, plan: dict[str, Any]) -> list[tuple[Any, ...]]:
    """One piece per bucket: ``(global ids, rows, member rows, member cells)``."""
    x = part.embs[step]
    probes = assign(project(x, plan["dim"], plan["seed"]), plan["quantizer"], plan["n_probe"])
    cell_bucket = plan["cell_bucket"]
    out = []
    for b in range(plan["n_buckets"]):
        in_b = cell_bucket[probes] == b
        r, p = np.nonzero(in_b)
        uniq, local = np.unique(r, return_inverse=True)
        out.append((uniq.astype(np.int64) + part.offset, x[uniq], local.ravel(), probes[r, p]))
    return out


def _cell_counts(pieces: list[tuple[Any, ...]], n_cells: int) -> np.ndarray:
    return np.sum([np.bincount(p[3], minlength=n_cells) for p in pieces], axis=0)


def _cell_search(
    matcher: Any, offsets: np.ndarray, candidates: bool, *pieces: tuple[Any, ...]
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Exact search inside every cell of one bucket; pruned triples per owner partition
    (``candidates``: every top-k triple, no threshold floor, nothing pruned)."""
    n_parts = len(offsets) - 1
    pieces = tuple(p for p in pieces if len(p[0]))
    empty = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32))
    if not pieces:
        return [empty] * n_parts
    gids = np.concatenate([p[0] for p in pieces])
    rows = sp.vstack([p[1] for p in pieces], format="csr") if sp.issparse(pieces[0][1]) \
        else np.concatenate([p[1] for p in pieces])
    base = np.cumsum([0] + [len(p[0]) for p in pieces[:-1]])
    member = np.concatenate([p[2] + o for p, o in zip(pieces, base)])
    cell = np.concatenate([p[3] for p in pieces])
    order = np.argsort(cell, kind="stable")
    member, cell = member[order], cell[order]
    starts = np.flatnonzero(np.r_[True, cell[1:] != cell[:-1]])
    ri, rj, rs = [], [], []
    for s, e in zip(starts, np.r_[starts[1:], len(cell)]):
        m = member[s:e]
        sub = rows[m]
        sims, idx = pair_topk(sub, sub, matcher, col_offset=0, same=True, floor=not candidates)
        g = gids[m]
        idx = np.where(idx >= 0, g[np.maximum(idx, 0)], -1)
        if candidates:
            r, col = np.nonzero(idx >= 0)
            c, v = idx[r, col], sims[r, col]
        else:
            r, c, v = prune(sims, idx, g, matcher)
        ri.append(g[r])
        rj.append(c)
        rs.append(v)
    gi, gj, gs = np.concatenate(ri), np.concatenate(rj), np.concatenate(rs)
    owner = home_of(gi, offsets)
    return [(gi[owner == a] - offsets[a], gj[owner == a], gs[owner == a]) for a in range(n_parts)]


def _merge_home(
    n_rows: int, offset: int, matcher: Any, candidates: bool,
    *pieces: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> Any:
    """A partition's edges from its cells' triples (``candidates``: its top-k
    ``(sims, global ids, 0)``, as :func:`._search.cut_topk` gives)."""
    rows = np.concatenate([p[0] for p in pieces])
    cols = np.concatenate([p[1] for p in pieces])
    sims = np.concatenate([p[2] for p in pieces]).astype(np.float32)
    s, i = topk_from_triples(rows, cols, sims, n_rows, int(matcher.k))
    if candidates:
        return s, i, 0
    return select_rows(s, i, np.arange(n_rows, dtype=np.int64) + offset, matcher)


#: the most cells a posting joins when ``n_probe`` is chosen from a recall target
MAX_PROBE = 12


def _cells(n_total: int, n_cells: int | None, n_probe: int, cell_size: int) -> int:
    if n_cells is None:
        n_cells = max(1, round(n_total * n_probe / cell_size))
    return max(1, min(n_cells, n_total))


def _choose_probes(
    client: Any, parts: list[Any], offsets: np.ndarray, step: str, matcher: Any,
    sample: np.ndarray, n_cells: int | None, cell_size: int, recall: float, max_probe: int,
    probe_sample: int, dim: int, seed: int, tried: dict[int, float], label: str,
) -> tuple[int, dict[str, Any]]:
    """The fewest probes (and their quantizer) whose recall on the sampled exact
    neighbours reaches ``recall``; ``max_probe`` if none does. Probe counts are tried
    doubling (1, 2, 4, ...), then bisected; each is recorded in ``tried``."""
    from ._recall import probe_recall, sample_neighbours

    n_total = int(offsets[-1])
    nb = sample_neighbours(client, parts, offsets, step, matcher, probe_sample, seed, dim)
    quantizers: dict[int, dict[str, Any]] = {}

    def reaches(p: int) -> bool:
        if p not in tried:
            c = _cells(n_total, n_cells, p, cell_size)
            # 40 sample rows a cell are plenty for k-means, and keep each try cheap
            rows = sample[: max(10_000, 40 * c)]
            quantizers[p] = train_quantizer(rows, c, seed=seed)
            tried[p] = probe_recall(nb, quantizers[p], p)
        return tried[p] >= recall

    lo, hi = 0, 1  # lo: the most probes known to miss the target
    while not reaches(hi):
        if hi == max_probe:
            # not an error: the cost stays bounded, and stats say so; the tail of a
            # row's top-k (its least similar neighbours) is what the cells miss
            logger.info(
                "IVF %s: recall %.4f with %d probes, below the target %.4f (raise "
                "cell_size or max_probe, or use method='exact', for more)", label, tried[hi],
                hi, recall)
            return hi, quantizers[hi]
        lo, hi = hi, min(2 * hi, max_probe)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if reaches(mid) else (mid, hi)
    return hi, quantizers[hi]


def ivf_edges(
    client: Any, parts: list[Any], offsets: np.ndarray, step: str, matcher: Any, *,
    n_cells: int | None, cell_size: int, dim: int, sample_size: int, n_probe: int | None = None,
    seed: int, candidates: bool = False, recall: float | None = None,
    max_probe: int = MAX_PROBE, probe_sample: int = 1000, label: str | None = None,
) -> tuple[list[Any], dict[str, Any]]:
    """For each partition, a future of its edges ``(local rows, global ids)``; and stats
    (``stats["split"]``: the shuffle's input futures; once they are done the step's
    embeddings are no longer needed). ``candidates``: each partition's approximate top-k
    ``(sims, global ids, 0)`` instead (no threshold: a reranker's candidates).

    ``n_probe=None``: the fewest probes (1 to ``max_probe``, each with cells of about
    ``cell_size`` members) whose recall of the exact top-k reaches ``recall``, measured
    without labels on ``probe_sample`` random postings (their exact top-k neighbours,
    and whether each shares a cell with its query: :func:`._recall.probe_recall`).
    ``stats``: the probes chosen, each tried probe count's recall, whether the target
    was met (``label``: the step's name in logs).
    """
    import operator

    n_total = int(offsets[-1])
    n_parts = len(parts)
    if n_probe is None and recall is None:
        raise ValueError("ivf_edges needs `n_probe` or a `recall` target.")
    most = n_probe if n_probe is not None else max_probe
    n_sample = min(n_total, max(sample_size, 10 * _cells(n_total, n_cells, most, cell_size)))
    per_part = np.maximum(1, np.diff(offsets) * n_sample // max(n_total, 1))
    samples = client.gather([
        client.submit(sample_projections, p, step, int(n), dim, seed, pure=False)
        for p, n in zip(parts, per_part)
    ])
    sample = np.concatenate(samples)
    t0 = time.perf_counter()
    tried: dict[int, float] = {}
    if n_probe is None:
        assert recall is not None
        n_probe, quantizer = _choose_probes(client, parts, offsets, step, matcher, sample,
                                            n_cells, cell_size, recall, max_probe,
                                            probe_sample, dim, seed, tried, label or step)
    else:
        quantizer = train_quantizer(sample, _cells(n_total, n_cells, n_probe, cell_size),
                                    seed=seed)
    train_s = time.perf_counter() - t0
    centroids = quantizer["centroids"]
    counts = np.bincount(assign(sample, quantizer, n_probe).ravel(), minlength=len(centroids))
    est = counts * (n_total / len(sample))  # estimated members of each cell
    # about one partition's worth of rows per bucket, and at least one bucket a partition
    biggest = int(np.diff(offsets).max())
    n_buckets = max(n_parts, int(np.ceil(est.sum() / max(1, biggest))))
    plan = {"quantizer": quantizer, "cell_bucket": bucket_plan(est, n_buckets), "dim": dim,
            "seed": seed, "n_probe": n_probe, "n_buckets": n_buckets}
    plan_future = client.scatter(plan, broadcast=True, hash=False)
    split = [client.submit(_split, p, step, plan_future, pure=False) for p in parts]
    results = []
    for b in range(n_buckets):
        pieces = [client.submit(operator.getitem, s, b, pure=False) for s in split]
        results.append(client.submit(_cell_search, matcher, offsets, candidates, *pieces,
                                     pure=False))
    edges = []
    for a in range(n_parts):
        pieces = [client.submit(operator.getitem, r, a, pure=False) for r in results]
        edges.append(client.submit(
            _merge_home, int(offsets[a + 1] - offsets[a]), int(offsets[a]), matcher, candidates,
            *pieces, pure=False,
        ))
    stats: dict[str, Any] = {
        "n_cells": len(centroids), "n_probe": n_probe, "two_level": quantizer["coarse"] is not None,
        "quantizer_s": train_s, "n_buckets": n_buckets, "sample": len(sample),
    }
    if tried:
        stats.update(recall_target=recall, recall_estimate=tried[n_probe], probes_tried=tried,
                     recall_target_met=recall is not None and tried[n_probe] >= recall)
    logger.info("IVF %s: %d cells, %d probes, %d buckets", label or step, len(centroids),
                n_probe, n_buckets)
    stats["shuffle_bytes"] = client.submit(
        lambda *sizes: int(sum(sizes)), *[client.submit(nbytes, f, pure=False) for f in split],
        pure=False,
    )
    stats["cell_sizes"] = client.submit(
        lambda *counts: np.sum(counts, axis=0),
        *[client.submit(_cell_counts, f, len(centroids), pure=False) for f in split],
        pure=False,
    )
    stats["split"] = split  # the caller waits on these, then may drop the embeddings
    return edges, stats
