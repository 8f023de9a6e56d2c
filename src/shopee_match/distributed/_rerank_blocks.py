"""Rerank tasks of bounded size: a partition's own rows featured a block at a time.

A partition's rerank task holds a context over its own rows and their halo: about
``n_own * (1 + r)`` rows, where ``r``, the halo rows a posting brings, grows with the
number of partitions (18 at 200k postings in 40 partitions, towards the ~44 distinct
partners a posting has once partitions are a small share of the catalogue). So the
task's memory grew with the catalogue: a 200k run went past 4 GB a worker. Here the
shuffles still move whole partitions, but each partition's pairs are featured and
scored in blocks of its own rows (:func:`block_bounds`), each block with only the halo
rows its pairs read (:func:`block_halo`, taken from the partition's own rows and its
fetched halo by :func:`block_view`): the block is a smaller partition, with the same
pairs and the same features (``_rerank_tasks.build_block``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from ._exchange import local_space, stack_rows, take_rows

__all__ = ["LOCAL_ROWS", "block_bounds", "block_halo", "block_view", "n_rows",
           "stack_scored"]

#: the own and halo rows one rerank task holds, about (a 5,000-posting partition with
#: r = 18, 95,000 rows, peaked near 3 GB)
LOCAL_ROWS = 40_000


def block_bounds(n_own: int, halo_rows: int, block_rows: int | None,
                 local_rows: int = LOCAL_ROWS) -> list[tuple[int, int]]:
    """Row ranges ``[a, b)`` (local to the partition) of its rerank blocks: ``block_rows``
    own rows each, or (``None``) as many as keep own and halo rows near ``local_rows``
    given the partition's ``halo_rows``.

    >>> block_bounds(5000, 90_000, None)
    [(0, 2000), (2000, 4000), (4000, 5000)]
    >>> block_bounds(300, 900, None)
    [(0, 300)]
    """
    if block_rows is None:
        per_row = 1.0 + halo_rows / max(n_own, 1)
        block_rows = max(500, int(local_rows / per_row) // 500 * 500)
    block_rows = max(1, int(block_rows))
    return [(a, min(a + block_rows, n_own)) for a in range(0, max(n_own, 1), block_rows)]


def block_halo(table: dict[str, Any], names: list[str], incoming: sp.csr_matrix, lo: int,
               a: int, b: int) -> np.ndarray:
    """Global ids the pairs of own rows ``a .. b - 1`` (of a partition whose first global
    id is ``lo``) read besides those rows: their columns in every graph, and the
    postings whose rows name them (``incoming``), sorted. ``a = 0, b = n_own``: the
    partition's halo."""
    ids = local_space(*[sp.csr_matrix(table[n][a:b]).indices for n in names],
                      sp.csr_matrix(incoming[a:b]).indices)
    return ids[(ids < lo + a) | (ids >= lo + b)]


def block_view(table: dict[str, Any], halo: dict[str, Any], halo_ids: np.ndarray, lo: int,
          a: int, b: int, need: np.ndarray) -> tuple[dict[str, Any], dict[str, Any]]:
    """Own rows ``a .. b - 1`` of a partition's row table, and the rows of ``need``
    (sorted global ids outside them) from its other own rows and its fetched ``halo``
    (rows of ``halo_ids``), in id order."""
    n_own = n_rows(table)
    own = {k: v[np.arange(a, b)] for k, v in table.items()}
    inside = (need >= lo) & (need < lo + n_own)
    below, mine, above = need[need < lo], need[inside], need[need >= lo + n_own]
    pieces = []
    for ids in (below, above):
        pos = np.searchsorted(halo_ids, ids)
        if len(ids) and (not len(halo_ids) or not np.array_equal(
                halo_ids[np.minimum(pos, len(halo_ids) - 1)], ids)):
            raise RuntimeError("a rerank block reads a row its partition did not fetch")
        pieces.append({k: v[pos] for k, v in halo.items()})
    rows = stack_rows(pieces[0], take_rows(table, mine, lo, lo + n_own), pieces[1])
    return own, rows


def n_rows(table: dict[str, Any]) -> int:
    v = next(iter(table.values()))
    return int(v.shape[0]) if hasattr(v, "shape") else int(v.n)


def stack_scored(*blocks: sp.csr_matrix) -> sp.csr_matrix:
    """A partition's scored rows from its blocks' (in row order)."""
    return blocks[0] if len(blocks) == 1 else sp.csr_matrix(sp.vstack(blocks, format="csr"))
