"""Recall of the IVF search against exact search on a sample of postings."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["recall_finish", "recall_start"]


def _rows_of(part: Any, step: str, local: np.ndarray) -> tuple[Any, np.ndarray]:
    return part.embs[step][local], local.astype(np.int64) + part.offset


def _pick(edges: tuple[np.ndarray, np.ndarray], local: np.ndarray, offset: int) -> Any:
    rows, cols = edges
    keep = np.isin(rows, local)
    return rows[keep] + offset, cols[keep]


def _sampled_rows(c: Any, parts: list[Any], offsets: np.ndarray, step: str, n: int,
                  rng: np.random.Generator) -> tuple[np.ndarray, Any, np.ndarray]:
    """``n`` random postings (sorted global ids), their rows of ``step`` gathered from
    their partitions (one block), and the ids the partitions return with them."""
    import scipy.sparse as sp

    from ._io import home_of

    total = int(offsets[-1])
    gids = np.sort(rng.choice(total, min(n, total), replace=False))
    owner = home_of(gids, offsets)
    rows = c.gather([
        c.submit(_rows_of, parts[a], step, gids[owner == a] - offsets[a], pure=False)
        for a in np.unique(owner)
    ])
    block = (sp.vstack([r[0] for r in rows], format="csr") if sp.issparse(rows[0][0])
             else np.concatenate([r[0] for r in rows]))
    return gids, block, np.concatenate([r[1] for r in rows])


def recall_start(
    c: Any, parts: list[Any], offsets: np.ndarray, step: str, matcher: Any, n: int, seed: int,
) -> tuple[np.ndarray, Any]:
    """Exact matches of ``n`` random postings (a future), to measure the IVF recall."""
    from ._search import exact_for_queries

    gids, block, got = _sampled_rows(c, parts, offsets, step, n, np.random.default_rng(seed))
    query = c.scatter((block, got), hash=False)
    return gids, exact_for_queries(c, parts, query, step, matcher)


def recall_finish(
    c: Any, offsets: np.ndarray, edges: list[Any], k: int, gids: np.ndarray,
    exact_future: Any,
) -> dict[str, float]:
    """Recall (and precision) of the IVF step's matches against the exact ones; also
    over the postings whose exact set is not cut by ``k`` (``recall_uncapped``)."""
    from ._io import home_of

    owner = home_of(gids, offsets)
    picked = [
        c.submit(_pick, edges[a], gids[owner == a] - offsets[a], int(offsets[a]), pure=False)
        for a in np.unique(owner)
    ]
    er, ec = c.gather(exact_future)
    exact = set(zip(gids[er].tolist(), ec.tolist()))
    approx: set[tuple[int, int]] = set()
    for r, col in c.gather(picked):
        approx.update(zip(r.tolist(), col.tolist()))
    found = len(exact & approx)
    # postings whose exact set is cut by k: there the two searches may keep different
    # equally valid top-k members, which is not a miss of the cells
    counts = np.bincount(er, minlength=len(gids))
    capped = set(gids[counts >= k - 1].tolist())
    ex_free = {p for p in exact if p[0] not in capped}
    return {"sample": len(gids), "exact_pairs": len(exact), "ivf_pairs": len(approx),
            "recall": found / max(1, len(exact)),
            "precision_vs_exact": found / max(1, len(approx)),
            "capped_postings": len(capped),
            "recall_uncapped": len(ex_free & approx) / max(1, len(ex_free))}


# --- choosing the probes from a recall target (label-free) ---------------------------
def _project_rows(part: Any, step: str, local: np.ndarray, dim: int, seed: int) -> np.ndarray:
    from ._quantizer import project

    return project(part.embs[step][local], dim, seed)


def _gather_projections(c: Any, parts: list[Any], offsets: np.ndarray, step: str,
                        gids: np.ndarray, dim: int, seed: int) -> np.ndarray:
    """Projections of the rows ``gids`` (sorted, distinct), in that order."""
    from ._io import home_of

    owner = home_of(gids, offsets)
    got = c.gather([
        c.submit(_project_rows, parts[a], step, gids[owner == a] - offsets[a], dim, seed,
                 pure=False)
        for a in np.unique(owner)
    ])
    return np.concatenate(got) if got else np.empty((0, dim), np.float32)


def sample_neighbours(
    c: Any, parts: list[Any], offsets: np.ndarray, step: str, matcher: Any, n: int,
    seed: int, dim: int,
) -> dict[str, np.ndarray]:
    """The exact top-k neighbours (no threshold: candidates) of ``n`` random postings, and
    the projections of those postings and of their neighbours: what
    :func:`probe_recall` needs to tell, for any quantizer and ``n_probe``, which of
    those neighbours an IVF search would find. Costs one exact search of ``n`` queries."""

    from ._search import exact_for_queries

    gids, block, _ = _sampled_rows(c, parts, offsets, step, n,
                                   np.random.default_rng([seed, 17]))
    query = c.scatter((block, gids), hash=False)
    sims, idx = c.gather(exact_for_queries(c, parts, query, step, matcher, candidates=True))
    others = (idx >= 0) & (idx != gids[:, None])
    q, slot = np.nonzero(others)
    nb = idx[q, slot]
    uniq, inv = np.unique(nb, return_inverse=True)
    return {
        "query": _gather_projections(c, parts, offsets, step, gids, dim, seed),
        "neighbour": _gather_projections(c, parts, offsets, step, uniq, dim, seed),
        "q": q, "nb": inv.ravel(), "sims": sims[q, slot],
        # the k-th similarity of each query: a neighbour tied with it may be swapped
        # for an equal one by any search, which is no miss
        "kth": np.where(idx[:, -1] >= 0, sims[:, -1], -np.inf)[q],
    }


def probe_recall(nb: dict[str, np.ndarray], quantizer: dict[str, Any], n_probe: int) -> float:
    """The share of the sampled exact neighbours that share a cell with their query when
    every posting joins its ``n_probe`` nearest cells: the recall of the IVF top-k
    (a neighbour of the exact top-k that shares a cell is in that cell's top-k, so in
    the merged top-k). Pairs tied at the k-th similarity count as found.

    >>> from shopee_match.distributed._quantizer import train_quantizer
    >>> x = np.eye(4, dtype=np.float32)
    >>> nb = {"query": x[:2], "neighbour": x[2:], "q": np.array([0, 1]),
    ...       "nb": np.array([0, 1]), "sims": np.zeros(2), "kth": np.full(2, -1.0)}
    >>> probe_recall(nb, train_quantizer(x, 1), 1)
    1.0
    """
    from ._quantizer import assign

    if len(nb["q"]) == 0:
        return 1.0
    qa = assign(nb["query"], quantizer, n_probe)[nb["q"]]
    na = assign(nb["neighbour"], quantizer, n_probe)[nb["nb"]]
    shared = (qa[:, :, None] == na[:, None, :]).any(axis=(1, 2))
    found = shared | (nb["sims"] <= nb["kth"])
    return float(found.mean())
