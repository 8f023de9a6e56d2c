"""``Ensemble``: combine the match graphs of several steps into final match sets."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import scipy.sparse as sp

from ._params import BaseEstimator
from ._registry import register
from .neighbors.graph import add_self

__all__ = ["Ensemble"]

_HOW = ("union", "intersection", "vote")


@register()
class Ensemble(BaseEstimator):
    """Combine per-step match graphs.

    Parameters
    ----------
    how : ``"union"`` (the seed: a pair matches if any step matches it), ``"intersection"``
        (every step), or ``"vote"`` (at least ``min_votes`` steps).
    min_votes : steps needed with ``how="vote"``.
    symmetric : also keep ``(j, i)`` for every kept ``(i, j)`` (matching is symmetric).

    >>> import scipy.sparse as sp, numpy as np
    >>> a = sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=np.float32))
    >>> b = sp.csr_matrix(np.array([[1, 0, 0], [0, 1, 1], [0, 1, 1]], dtype=np.float32))
    >>> Ensemble().combine({"text": a, "phash": b}).toarray().astype(int).tolist()
    [[1, 1, 0], [1, 1, 1], [0, 1, 1]]
    """

    uses_candidates = False

    def __init__(self, how: str = "union", min_votes: int = 2, symmetric: bool = False) -> None:
        self.how = how
        self.min_votes = min_votes
        self.symmetric = symmetric

    def _validate(self, n_steps: int) -> None:
        if self.how not in _HOW:
            raise ValueError(f"`how` must be one of {_HOW}, got {self.how!r}.")
        if self.how == "vote" and not 1 <= self.min_votes <= max(1, n_steps):
            raise ValueError(
                f"`min_votes` must be between 1 and the number of steps ({n_steps}), "
                f"got {self.min_votes!r}."
            )

    def combine(self, graphs: Mapping[str, sp.spmatrix]) -> sp.csr_matrix:
        """One match graph (diagonal included) from the steps' match graphs."""
        if not graphs:
            raise ValueError("Ensemble.combine needs at least one step's match graph.")
        self._validate(len(graphs))
        mats = [sp.csr_matrix(g, dtype=np.float32) for g in graphs.values()]
        shape = mats[0].shape
        for name, m in zip(graphs, mats):
            if m.shape != shape:
                raise ValueError(f"Step {name!r} graph has shape {m.shape}, expected {shape}.")
        votes = mats[0].astype(bool).astype(np.float32)
        for m in mats[1:]:
            votes = votes + m.astype(bool).astype(np.float32)
        need = {"union": 1, "intersection": len(mats), "vote": self.min_votes}[self.how]
        votes.data = (votes.data >= need).astype(np.float32)
        votes.eliminate_zeros()
        if self.symmetric:
            votes = ((votes + votes.T) > 0).astype(np.float32).tocsr()
        return add_self(votes)
