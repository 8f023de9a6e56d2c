"""Candidate graphs of a reranked pipeline on Dask, as :meth:`Pipeline.step_graphs` builds
them on one machine for an ensemble that ``uses_candidates``.

- :class:`~shopee_match.NeighborMatcher` steps: every one of the k nearest neighbours
  (exact block-pair search with no threshold floor, :func:`._search.exact_topk`).
- :class:`~shopee_match.BlendMatcher` steps: each partition takes the rows of its
  ``n_blend`` best neighbours from their owners (:func:`._exchange.fetch_rows`), blends
  them with :func:`~shopee_match.neighbors.blend.blend` in a local index space that
  keeps the global order (so the sums run in the same order: the same rows, bit for
  bit), then searches the blended rows exactly. A k-NN search of the same embedding
  with the same k and backend is reused, not redone.
- :class:`~shopee_match.HashMatcher` steps: pairs within the tuning's loosest radius
  (:func:`._phash.hash_candidates`).

Each step gives, per partition, a future of its rows ``(n_p x N)`` of the candidate
graph (columns: global ids; values: similarities).
"""

from __future__ import annotations

import operator
import time
from typing import Any

import numpy as np
import scipy.sparse as sp

from ._cluster import hash_bits
from ._exchange import fetch_rows, local_space
from ._io import Part
from ._kinds import step_kind
from ._phash import hash_candidates
from ._search import cut_topk, exact_topk

__all__ = ["candidate_rows", "place_rows", "square"]


def place_rows(block: sp.csr_matrix, pos: np.ndarray, n_rows: int) -> sp.csr_matrix:
    """``block``'s rows at the (increasing) row positions ``pos`` of an ``n_rows`` matrix,
    every other row empty; each row's entries keep their order.

    >>> g = place_rows(sp.csr_matrix(np.array([[1.0, 2.0]])), np.array([2]), 3)
    >>> g.toarray().tolist()
    [[0.0, 0.0], [0.0, 0.0], [1.0, 2.0]]
    """
    counts = np.zeros(n_rows, dtype=np.int64)
    counts[pos] = np.diff(block.indptr)
    indptr = np.r_[0, np.cumsum(counts)]
    return sp.csr_matrix((block.data, block.indices, indptr), shape=(n_rows, block.shape[1]))


def square(rows: sp.csr_matrix, row_gids: np.ndarray, space: np.ndarray) -> sp.csr_matrix:
    """Graph rows with global columns, as a square graph over the local ``space``
    (sorted global ids holding ``row_gids`` and every column of ``rows``)."""
    rows = sp.csr_matrix(rows)
    cols = np.searchsorted(space, rows.indices.astype(np.int64))
    local = sp.csr_matrix((rows.data, cols, rows.indptr), shape=(rows.shape[0], len(space)))
    return place_rows(local, np.searchsorted(space, row_gids), len(space))


def knn_rows(top: tuple[np.ndarray, np.ndarray, int], n_total: int) -> sp.csr_matrix:
    """A partition's rows of the k-NN candidate graph (as ``graph_from_knn``)."""
    from ..neighbors.graph import graph_from_knn

    return graph_from_knn(top[0], top[1], n=n_total)


def _blend_space(rows: sp.csr_matrix, offset: int, n_blend: int
                 ) -> tuple[np.ndarray, np.ndarray, sp.csr_matrix, np.ndarray]:
    """``(local space, own ids, square k-NN graph, ids of the rows blended)``."""
    from ..neighbors.blend import blend

    own = np.arange(offset, offset + rows.shape[0], dtype=np.int64)
    space = local_space(own, rows.indices)
    cand = square(rows, own, space)
    # blend's own choice of each row's n_blend best: its pattern on the identity
    ident = sp.identity(len(space), dtype=np.float32, format="csr")
    pattern = blend(ident, cand, n_blend)[np.searchsorted(space, own)]
    return space, own, cand, np.unique(space[pattern.indices])


def blend_needs(rows: sp.csr_matrix, offset: int, n_blend: int) -> np.ndarray:
    """The global ids whose rows a partition's blended rows are made of."""
    return _blend_space(rows, offset, n_blend)[3]


def blend_rows(rows: sp.csr_matrix, offset: int, n_blend: int, fetched: dict[str, Any]
               ) -> Part:
    """The blended rows of a partition, from its k-NN rows and the fetched rows."""
    from ..neighbors.blend import blend

    space, own, cand, needs = _blend_space(rows, offset, n_blend)
    x = fetched["x"]
    at = np.searchsorted(space, needs)
    if sp.issparse(x):
        emb: Any = place_rows(sp.csr_matrix(x), at, len(space))
    else:
        emb = np.zeros((len(space), x.shape[1]), dtype=x.dtype)
        emb[at] = x
    out = blend(emb, cand, n_blend)[np.searchsorted(space, own)]
    return Part(ids=np.empty(0, dtype=object), offset=offset, embs={"x": out})


def _table(part: Part, step: str) -> dict[str, Any]:
    return {"x": part.embs[step]}


def candidate_rows(
    client: Any, parts: list[Any], offsets: np.ndarray, steps: list[Any],
    hash_steps: list[str], radius: int, stats: dict[str, Any],
    ivf: dict[str, Any] | None = None,
) -> dict[str, list[Any]]:
    """Each step's candidate rows, per partition (see the module docstring), and
    ``stats["timings"]["candidates_<step>"]``.

    ``stats["ties_at_k"][step]``: rows whose k-th and (k+1)-th neighbours are equally
    similar (there the k kept are one choice among equals; one machine may keep another).
    ``ivf``: keyword arguments of :func:`._ivf.ivf_edges` to search the k-NN steps in
    IVF cells instead (approximate candidates, for catalogues too large for exact search).
    """
    from distributed import wait

    n_total = int(offsets[-1])
    out: dict[str, list[Any]] = {}
    knn: dict[tuple[Any, ...], list[Any]] = {}  # k-NN cuts by (embedder, k, backend)
    ties = stats.setdefault("ties_at_k", {})

    def topk(name: str, rows: list[Any], matcher: Any, key: tuple[Any, ...] | None,
             label: str | None = None) -> list[Any]:
        if key is not None and key in knn:
            return knn[key]
        if ivf is not None:
            from ._ivf import ivf_edges

            cut, info = ivf_edges(client, rows, offsets, name, matcher, candidates=True,
                                  label=label or name, **ivf)
            info.pop("split")
            info.pop("cell_sizes")
            info["shuffle_bytes"] = int(info["shuffle_bytes"].result())
            stats[f"ivf_{name}"] = info
        else:
            cut = [client.submit(cut_topk, t, int(matcher.k), pure=False)
                   for t in exact_topk(client, rows, name, matcher, candidates=True)]
        ties[name] = int(sum(client.gather(
            [client.submit(operator.getitem, t, 2, pure=False) for t in cut])))
        if key is not None:
            knn[key] = cut
        return cut

    def _step(name: str, emb: Any, matcher: Any) -> None:
        if name in hash_steps:
            n_bits = int(client.submit(hash_bits, parts[0], name, pure=False).result())
            out[name] = hash_candidates(client, parts, offsets, name, matcher, radius,
                                        n_bits=n_bits)
            return
        is_blend = step_kind(name, matcher, reranked=True) == "blend"
        key = (id(emb), int(matcher.k), matcher.backend, repr(matcher.backend_options()))
        base = topk(f"{name}:base" if is_blend else name, parts, matcher, key)
        base_rows = [client.submit(knn_rows, t, n_total, pure=False) for t in base]
        if not is_blend:
            out[name] = base_rows
            return
        n_blend = int(matcher.n_blend)
        needs = [client.submit(blend_needs, r, int(offsets[a]), n_blend, pure=False)
                 for a, r in enumerate(base_rows)]
        tables = [client.submit(_table, p, name, pure=False) for p in parts]
        fetched = fetch_rows(client, tables, offsets, needs)
        blended = [client.submit(blend_rows, r, int(offsets[a]), n_blend, f, pure=False)
                   for a, (r, f) in enumerate(zip(base_rows, fetched))]
        cut = topk("x", blended, matcher, None, label=name)
        ties[name] = ties.pop("x")
        if "ivf_x" in stats:
            stats[f"ivf_{name}"] = stats.pop("ivf_x")
        out[name] = [client.submit(knn_rows, t, n_total, pure=False) for t in cut]

    for name, emb, matcher in steps:
        t0 = time.perf_counter()
        _step(name, emb, matcher)
        wait(out[name])
        stats["timings"][f"candidates_{name}"] = time.perf_counter() - t0
    return out

