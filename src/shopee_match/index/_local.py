"""The part of the candidate graphs a query needs: new rows and their neighbourhood.

A pair's features read each side's whole candidate row (rank, best and k-th similarity,
degree, shared neighbours); a stacked reranker's later stage reads each side's row of
the earlier stage's probabilities, i.e. its neighbours' rows again. So the answer for a
new posting depends on the rows of postings up to ``radius`` hops away (in either
direction, in any step). Those rows are copied whole; their columns beyond come along
as postings without rows (their own pairs are scored but never read).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from ._hash import HashSpace
from ._rows import Overrides

__all__ = ["local_graphs", "local_pipeline", "neighbourhood"]


def _stored(space: Any) -> sp.csr_matrix | None:
    return getattr(space, "rows", None)


def _reverse(space: Any) -> sp.csr_matrix | None:
    if _stored(space) is None:
        return None
    return space.rows if isinstance(space, HashSpace) else space.rev()


def _adjacent(spaces: Sequence[Any], overs: Sequence[Overrides], over_t: Sequence[sp.csr_matrix],
              nodes: np.ndarray) -> np.ndarray:
    """Slots joined to ``nodes`` by a stored candidate pair in either direction."""
    found = []
    for space, over, ot in zip(spaces, overs, over_t):
        found.append(over.row_graph(_stored(space), nodes).indices)
        rev = _reverse(space)
        if rev is not None:
            old = nodes[nodes < rev.shape[0]]
            found.append(rev[old].indices)
        found.append(ot[nodes].indices)
    return np.unique(np.concatenate(found)) if found else np.empty(0, np.int64)


def neighbourhood(spaces: Sequence[Any], overs: Sequence[Overrides], seeds: np.ndarray,
                  radius: int) -> tuple[np.ndarray, np.ndarray]:
    """``(row_nodes, nodes)``: slots within ``radius`` hops of ``seeds`` (seeds first),
    and those plus the columns of their rows."""
    n_total = overs[0].n_total
    seen = np.zeros(n_total, dtype=bool)
    seen[seeds] = True
    row_nodes = [np.asarray(seeds, np.int64)]
    frontier = row_nodes[0]
    over_t = [sp.csr_matrix(o.graph.T) for o in overs]
    for _ in range(radius):
        if not len(frontier):
            break
        nb = _adjacent(spaces, overs, over_t, frontier)
        frontier = nb[~seen[nb]].astype(np.int64)
        seen[frontier] = True
        row_nodes.append(frontier)
    rows = np.concatenate(row_nodes)
    cols = np.unique(np.concatenate(
        [o.row_graph(_stored(s), rows).indices for s, o in zip(spaces, overs)]))
    extra = cols[~seen[cols]].astype(np.int64)
    return rows, np.r_[rows, extra]


def local_graphs(spaces: Sequence[Any], overs: Sequence[Overrides], row_nodes: np.ndarray,
                 nodes: np.ndarray) -> list[sp.csr_matrix]:
    """Each step's candidate graph over ``nodes`` (rows only for ``row_nodes``, which
    come first), in local numbering."""
    n_total = overs[0].n_total
    local = np.full(n_total, -1, np.int64)
    local[nodes] = np.arange(len(nodes))
    big = len(nodes)
    out = []
    for space, over in zip(spaces, overs):
        g = over.row_graph(_stored(space), row_nodes).tocoo()
        c = local[g.col]
        ok = c >= 0
        m = sp.csr_matrix((g.data[ok], (g.row[ok], c[ok])), shape=(big, big), dtype=np.float32)
        m.sort_indices()
        out.append(m)
    return out


def local_pipeline(pipe: Any) -> Any:
    """``pipe`` as a query's neighbourhood is combined: without self-training (a curve
    fitted on a few dozen local pairs would be noise, not the catalogue's; the index
    adds the pairs past the catalogue's own point instead). The caller's pipeline is
    left as it is.

    >>> from shopee_match import Pipeline
    >>> pipe = Pipeline.pretrained()
    >>> local_pipeline(pipe).combiner_.self_train, pipe.combiner_.self_train
    (False, True)
    """
    ens = getattr(pipe, "combiner_", None)
    if not getattr(ens, "self_train", False):
        return pipe
    out = copy.copy(pipe)
    out.combiner_ = copy.copy(ens)
    out.combiner_.self_train = False
    return out
