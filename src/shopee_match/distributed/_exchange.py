"""Moving rows between partitions: the shuffles the pair reranker needs.

Partition ``p`` owns the postings with global ids ``offsets[p]`` to ``offsets[p+1] - 1``
and holds their rows: sparse graph rows ``(n_p x N)`` whose columns are global ids, or
per-posting arrays. Two exchanges build everything else:

- :func:`fetch_rows`: each partition asks for the rows of a sorted list of global ids
  (its *halo*); every owner sends the rows it holds, in that order.
- :func:`transpose_rows`: each partition gets the columns of its postings, i.e. which
  postings point at them (in-neighbours), as rows of the transposed graph.

Both are all-to-all shuffles through :func:`._route.route`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from ._io import home_of
from ._route import apply_pieces, route, route_by

__all__ = ["fetch_rows", "local_space", "stack_rows", "take_rows", "transpose_rows"]


def take_rows(table: dict[str, Any], gids: np.ndarray, lo: int, hi: int) -> dict[str, Any]:
    """The rows of ``table`` (a partition's rows, first global id ``lo``) for the global
    ids of ``gids`` in ``[lo, hi)``.

    >>> take_rows({"t": np.array(["a", "b", "c"])}, np.array([1, 11, 12]), 10, 13)["t"].tolist()
    ['b', 'c']
    """
    a, b = np.searchsorted(gids, [lo, hi])
    local = np.asarray(gids[a:b], dtype=np.int64) - lo
    return {k: v[local] for k, v in table.items()}


def stack_rows(*pieces: dict[str, Any]) -> dict[str, Any]:
    """Row pieces (dicts of the same keys) stacked in order (a value with a ``stack``
    method, such as :class:`~shopee_match.rerank.title_features.TitleTokens`, by it).

    >>> stack_rows({"t": np.array([1])}, {"t": np.array([2, 3])})["t"].tolist()
    [1, 2, 3]
    """
    out = {}
    for k in pieces[0]:
        vals = [p[k] for p in pieces]
        if sp.issparse(vals[0]):
            out[k] = sp.vstack(vals, format="csr")
        elif hasattr(vals[0], "stack"):  # rows of another kind (title tokens): its own stack
            out[k] = vals[0].stack(vals)
        else:
            out[k] = np.concatenate(vals)
    return out


def _take_all(table: dict[str, Any], lo: int, hi: int, *wanted: np.ndarray
              ) -> list[dict[str, Any]]:
    return [take_rows(table, w, lo, hi) for w in wanted]


def fetch_rows(client: Any, tables: list[Any], offsets: np.ndarray, wanted: list[Any]) -> list[Any]:
    """For each partition, a future of the rows of its ``wanted`` global ids (a future of
    a sorted id array), from ``tables`` (one future of a row dict per partition)."""
    def pieces(b: int, lo: int, hi: int) -> Any:
        return client.submit(_take_all, tables[b], int(offsets[b]), int(offsets[b + 1]),
                             *wanted[lo:hi], pure=False)

    handles = route_by(client, len(tables), len(wanted), pieces)
    return [apply_pieces(client, h, stack_rows) for h in handles]


def _split_cols(g: sp.csr_matrix, offset: int, offsets: np.ndarray) -> list[tuple[Any, ...]]:
    """Entries ``(local col, global row, value)`` of ``g``, split by the column's owner."""
    coo = g.tocoo()
    owner = home_of(coo.col.astype(np.int64), offsets)
    rows = coo.row.astype(np.int64) + offset
    return [(coo.col[owner == a] - offsets[a], rows[owner == a], coo.data[owner == a])
            for a in range(len(offsets) - 1)]


def _gather_cols(n: int, n_total: int, *pieces: tuple[Any, ...]) -> sp.csr_matrix:
    r = np.concatenate([p[0] for p in pieces]).astype(np.int64)
    c = np.concatenate([p[1] for p in pieces])
    v = np.concatenate([p[2] for p in pieces])  # the values' own type (float64 stays)
    g = sp.csr_matrix((v, (r, c)), shape=(n, n_total))
    g.sort_indices()
    return g


def transpose_rows(client: Any, rows: list[Any], offsets: np.ndarray) -> list[Any]:
    """For each partition, a future of its rows of the transposed graph: row ``m`` holds
    every global id ``j`` whose row (in ``rows``, futures of ``n_p x N`` graphs) has ``m``."""
    n_parts = len(rows)
    split = [client.submit(_split_cols, rows[b], int(offsets[b]), offsets, pure=False)
             for b in range(n_parts)]
    return [apply_pieces(client, h, _gather_cols, int(offsets[a + 1] - offsets[a]),
                         int(offsets[-1]))
            for a, h in enumerate(route(client, split, n_parts))]


def local_space(*id_sets: np.ndarray) -> np.ndarray:
    """The sorted global ids of a partition's local index space (its own rows, its halo
    and every column they name). Local ids keep the global order, so ties between equal
    similarities break as on one machine.

    >>> local_space(np.array([5, 2]), np.array([9, 2])).tolist()
    [2, 5, 9]
    """
    return np.unique(np.concatenate([np.asarray(s, dtype=np.int64) for s in id_sets]))
