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


def recall_start(
    c: Any, parts: list[Any], offsets: np.ndarray, step: str, matcher: Any, n: int, seed: int,
) -> tuple[np.ndarray, Any]:
    """Exact matches of ``n`` random postings (a future), to measure the IVF recall."""
    import scipy.sparse as sp

    from ._io import home_of
    from ._search import exact_for_queries

    rng = np.random.default_rng(seed)
    total = int(offsets[-1])
    gids = np.sort(rng.choice(total, min(n, total), replace=False))
    owner = home_of(gids, offsets)
    rows = c.gather([
        c.submit(_rows_of, parts[a], step, gids[owner == a] - offsets[a], pure=False)
        for a in np.unique(owner)
    ])
    x = rows[0][0]
    block = sp.vstack([r[0] for r in rows], format="csr") if sp.issparse(x) else \
        np.concatenate([r[0] for r in rows])
    query = c.scatter((block, np.concatenate([r[1] for r in rows])), hash=False)
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
