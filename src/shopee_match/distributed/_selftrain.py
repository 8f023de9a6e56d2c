"""Self-training on Dask: one machine's :meth:`PairReranker.matches
<shopee_match.rerank.PairReranker.matches>` as a reduction over the partitions.

On one machine the reranker's kept pairs (its cut, then ``grow``) gain the dropped
candidate pairs that the catalogue's own code agreements vouch for
(``PairReranker(self_train=True)``). Here:

1. each partition reads the candidate pairs of its own rows ``(i, j)`` with ``i < j``
   (each pair once across the partitions), with the titles of its own postings and of
   their partners (fetched from their owners) and the catalogue's title-token counts
   (the counting pass: the idf of one machine), and keeps the evidence counts (1,001
   similarity bins) and the pairs it could add;
2. the client sums the counts and finds the point (:func:`~shopee_match.rerank.evidence_point`);
3. each partition adds its pairs past the point, and the reverse direction ``(j, i)``
   goes to ``j``'s owner (a transpose).

Whether a pair is kept either way round reads the own rows of the kept graph and of its
transpose. What crosses the network: the partners' titles, 1,001 x 2 numbers per
partition, and the added pairs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from ._exchange import fetch_rows, transpose_rows

__all__ = ["self_trained_edges", "self_trains"]

Edges = tuple[np.ndarray, np.ndarray]


def self_trains(rr: Any) -> bool:
    """Whether the reranker ``rr`` adds what self-training finds (as
    :meth:`~shopee_match.rerank.PairReranker.matches` decides it)."""
    return bool(getattr(rr, "self_train", False) and getattr(rr, "self_train_", True))


def _edge_rows(edges: Edges | list[Edges], n_own: int, n_total: int) -> sp.csr_matrix:
    """Own rows ``(n_own x N)`` of the pattern of edges ``(local rows, global ids)``."""
    pieces = edges if isinstance(edges, list) else [edges]
    r = np.concatenate([np.asarray(p[0], dtype=np.int64) for p in pieces])
    c = np.concatenate([np.asarray(p[1], dtype=np.int64) for p in pieces])
    g = sp.csr_matrix((np.ones(len(r), dtype=bool), (r, c)), shape=(n_own, n_total))
    g.sum_duplicates()
    return g


def _upper(proba: sp.csr_matrix, lo: int) -> sp.csr_matrix:
    """The stored candidate pairs ``(i, j)``, ``i < j``, of own rows ``i`` (global columns)."""
    coo = sp.csr_matrix(proba).tocoo()
    on = (coo.col.astype(np.int64) > coo.row.astype(np.int64) + lo) & (coo.data != 0)
    return sp.csr_matrix((np.ones(int(on.sum()), dtype=bool), (coo.row[on], coo.col[on])),
                         shape=proba.shape)


def _wanted(up: sp.csr_matrix, lo: int) -> np.ndarray:
    """Sorted global ids whose titles a partition reads: its own and their partners."""
    own = np.arange(lo, lo + up.shape[0], dtype=np.int64)
    return np.union1d(own, up.indices.astype(np.int64))


def _local(rows: sp.csr_matrix, lo: int, ids: np.ndarray) -> sp.csr_matrix:
    """Own rows with global columns as a square graph over ``ids`` (columns outside
    ``ids`` dropped: they pair with nothing read here)."""
    coo = rows.tocoo()
    c = coo.col.astype(np.int64)
    at = np.minimum(np.searchsorted(ids, c), len(ids) - 1)
    on = ids[at] == c
    r = np.searchsorted(ids, coo.row[on].astype(np.int64) + lo)
    return sp.csr_matrix((np.ones(int(on.sum()), dtype=bool), (r, at[on])),
                         shape=(len(ids), len(ids)))


def _scan(up: sp.csr_matrix, kept: sp.csr_matrix, kept_t: sp.csr_matrix,
          held: dict[str, Any], ids: np.ndarray, lo: int, cat: Any) -> Any:
    """A partition's :class:`~shopee_match.rerank.PairScan` of its pairs (global
    ids), or ``None`` without titles."""
    from ..rerank import PairScan, scan_pairs

    titles = held.get("t")
    if titles is None or len(titles) == 0 or any(t is None for t in titles):
        return None
    found = scan_pairs([str(t) for t in titles], _local(up, lo, ids),
                       _local(sp.csr_matrix(kept + kept_t), lo, ids), catalogue_df=cat)
    return PairScan(found.counts, found.hits, ids[found.rows], ids[found.cols], found.sim)


def _titles_of(titles: Any, n_own: int) -> dict[str, Any]:
    """A partition's titles as a row table (``None`` each where it has none)."""
    if titles is None:
        return {"t": np.full(n_own, None, dtype=object)}
    return {"t": np.asarray(titles, dtype=object)}


def _counts(found: Any) -> tuple[np.ndarray, np.ndarray] | None:
    return None if found is None else (found.counts, found.hits)


def _added(found: Any, point: float, lo: int, n_own: int, n_total: int) -> sp.csr_matrix:
    """Own rows of the pairs ``(i, j)``, ``i < j``, a partition adds at ``point``."""
    r, c = found.added(point) if found is not None else (np.zeros(0, np.int64),) * 2
    return sp.csr_matrix((np.ones(len(r), dtype=bool), (r - lo, c)), shape=(n_own, n_total))


def _with_added(edges: Edges | list[Edges], add: sp.csr_matrix,
                back: sp.csr_matrix) -> list[Edges]:
    """The kept edges and the added pairs both ways (the union dedups when assembling)."""
    out = list(edges) if isinstance(edges, list) else [edges]
    for g in (add, back):
        coo = sp.csr_matrix(g).tocoo()
        out.append((coo.row.astype(np.int64), coo.col.astype(np.int64)))
    return out


def self_trained_edges(client: Any, proba: list[Any], edges: list[Any],
                       titles: list[Any] | None, offsets: np.ndarray, cat: Any,
                       stats: dict[str, Any]) -> list[Any]:
    """Each partition's final edges: its kept ``edges`` (futures of ``(local rows,
    global ids)``, after ``grow``) and what self-training adds, from the own rows of
    the symmetric probability graph ``proba`` (futures of ``n_own x N`` graphs) and the
    partitions' ``titles`` (futures). ``stats["self_training"]``: the point, the
    evidence pairs and the pairs added.
    """
    from ..rerank import evidence_point

    if titles is None:
        return edges
    n_parts, n_total = len(offsets) - 1, int(offsets[-1])
    lo = [int(o) for o in offsets[:-1]]
    n_own = [int(offsets[a + 1] - offsets[a]) for a in range(n_parts)]
    kept = [client.submit(_edge_rows, e, n_own[a], n_total, pure=False)
            for a, e in enumerate(edges)]
    kept_t = transpose_rows(client, kept, offsets)  # kept (j, i) at i's owner
    ups = [client.submit(_upper, p, lo[a], pure=False) for a, p in enumerate(proba)]
    wanted = [client.submit(_wanted, u, lo[a], pure=False) for a, u in enumerate(ups)]
    tables = [client.submit(_titles_of, t, n_own[a], pure=False) for a, t in enumerate(titles)]
    held = fetch_rows(client, tables, offsets, wanted)
    found = [client.submit(_scan, ups[a], kept[a], kept_t[a], held[a], wanted[a], lo[a], cat,
                           pure=False) for a in range(n_parts)]
    del kept, kept_t, ups, held
    parts = [c for c in client.gather([client.submit(_counts, f, pure=False) for f in found])
             if c is not None]
    if not parts:
        return edges
    counts = np.sum([c[0] for c in parts], axis=0)
    hits = np.sum([c[1] for c in parts], axis=0)
    point = evidence_point(counts, hits)
    info: dict[str, Any] = {"point": point, "evidence": int(counts.sum()), "pairs_added": 0}
    stats["self_training"] = info
    if point is None:
        return edges
    add = [client.submit(_added, f, point, lo[a], n_own[a], n_total, pure=False)
           for a, f in enumerate(found)]
    info["pairs_added"] = int(sum(client.gather([client.submit(_nnz, g, pure=False)
                                                 for g in add])))
    back = transpose_rows(client, add, offsets)  # (j, i) to j's owner
    return [client.submit(_with_added, e, g, b, pure=False)
            for e, g, b in zip(edges, add, back)]


def _nnz(g: sp.csr_matrix) -> int:
    return int(g.nnz)

