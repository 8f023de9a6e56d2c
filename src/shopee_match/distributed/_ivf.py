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

import heapq
import logging
import time
from typing import Any

import numpy as np
import scipy.sparse as sp

from ._io import Part, home_of, nbytes
from ._quantizer import FLAT_MAX_CELLS, assign, project, spherical_kmeans, train_quantizer
from ._route import apply_pieces, route
from ._search import pair_topk, prune, select_rows, topk_from_triples

__all__ = [
    "FLAT_MAX_CELLS", "assign", "bucket_plan", "ivf_edges", "project", "spherical_kmeans",
    "train_quantizer",
]

logger = logging.getLogger(__name__)




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
    n_total = int(offsets[-1])
    n_parts = len(parts)
    if n_probe is None and recall is None:
        raise ValueError("ivf_edges needs `n_probe` or a `recall` target.")
    if n_probe is None and recall is not None and not 0 < recall <= 1:
        raise ValueError(f"The IVF recall target must be in (0, 1], got {recall!r}.")
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
    # as many buckets as partitions: a bucket holds about n_probe partitions' rows, and
    # the shuffles stay near P * sqrt(P) tasks (buckets sized to one partition made
    # n_probe times more, and their square in pieces)
    n_buckets = n_parts
    plan = {"quantizer": quantizer, "cell_bucket": bucket_plan(est, n_buckets), "dim": dim,
            "seed": seed, "n_probe": n_probe, "n_buckets": n_buckets}
    plan_future = client.scatter(plan, broadcast=True, hash=False)
    split = [client.submit(_split, p, step, plan_future, pure=False) for p in parts]
    results = [apply_pieces(client, h, _cell_search, matcher, offsets, candidates)
               for h in route(client, split, n_buckets)]
    edges = [apply_pieces(client, h, _merge_home, int(offsets[a + 1] - offsets[a]),
                          int(offsets[a]), matcher, candidates)
             for a, h in enumerate(route(client, results, n_parts))]
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
