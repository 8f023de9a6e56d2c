"""The pipeline's shift guard (``Pipeline(shift_guard=True)``), one rule for every runtime.

A model fitted on one kind of shop can cut badly on an unlike one (:mod:`~shopee_match.shift`).
Where the catalogue being matched looks unlike every catalogue the model was fitted on
(:func:`~shopee_match.shift.check_shift` fires, with its warning), only the pairs that the
shipped general model (``Pipeline.pretrained()``) also keeps are kept, each posting still
matching itself. :meth:`Pipeline.predict <shopee_match.Pipeline.predict>` applies it to its
match graph (:func:`shift_guarded`); ``MatchIndex`` and the Dask runtime apply the same
decision (:func:`guard_fires`) and keep the same pairs of their submission tables
(:func:`shared_matches`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import scipy.sparse as sp

from .data import Postings
from .neighbors.graph import add_self

__all__ = ["general_model", "guard_fires", "guarded", "keep_shared", "shared_matches",
           "shift_guarded", "store_profiles"]


def store_profiles(pipe: Any, cats: Sequence[Postings]) -> None:
    """Keep the label-free profiles of the catalogues ``pipe`` was fitted on (what
    :func:`~shopee_match.shift.check_shift` compares new catalogues to), when every one
    has titles."""
    if all(c.has_titles for c in cats):
        from .shift import catalogue_profile

        pipe.tuning_["profile"] = [catalogue_profile(c) for c in cats]


def guarded(pipe: Any) -> bool:
    """Whether ``pipe`` may fall back on the shipped model: ``shift_guard`` on and the
    profiles of its training catalogues stored (the shipped model has none)."""
    return bool(getattr(pipe, "shift_guard", False)
                and getattr(pipe, "tuning_", {}).get("profile"))


def guard_fires(pipe: Any, postings: Postings) -> bool:
    """Whether the shift guard keeps only the shipped model's pairs on ``postings``;
    warns when it does (:func:`~shopee_match.shift.check_shift`).

    >>> from shopee_match import Pipeline, make_catalog
    >>> guard_fires(Pipeline.pretrained(), make_catalog(n_groups=5, images=False))
    False
    """
    if not (guarded(pipe) and postings.has_titles):
        return False
    from .shift import SHIFT_FACTOR, check_shift

    return bool(check_shift(pipe, postings, guarded=True) > SHIFT_FACTOR)


def general_model(pipe: Any) -> Any:
    """The model whose pairs a guarded ``pipe`` keeps: the shipped one."""
    return type(pipe).pretrained()


def keep_shared(graph: sp.spmatrix, general: sp.spmatrix) -> sp.csr_matrix:
    """The pairs of match graph ``graph`` that ``general`` also holds, diagonal kept.

    >>> import numpy as np
    >>> a = sp.csr_matrix(np.array([[1, 1, 1], [1, 1, 0], [1, 0, 1]], dtype=np.float32))
    >>> b = sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 0], [0, 0, 0]], dtype=np.float32))
    >>> keep_shared(a, b).toarray().astype(int).tolist()
    [[1, 1, 0], [1, 1, 0], [0, 0, 1]]
    """
    return add_self(sp.csr_matrix(graph).multiply(general != 0).tocsr())


def shift_guarded(pipe: Any, graph: sp.csr_matrix, postings: Postings, **kw: Any
                  ) -> sp.csr_matrix:
    """``graph`` (``pipe``'s match graph of ``postings``), or where the guard fires only
    its pairs that the shipped model keeps too; ``kw`` go to its ``predict_graph``."""
    if not guard_fires(pipe, postings):
        return graph
    return keep_shared(graph, general_model(pipe).predict_graph(postings, **kw))


def shared_matches(own: pd.DataFrame, general: pd.DataFrame) -> pd.DataFrame:
    """Submission table ``own`` with each posting's matches cut to those that table
    ``general`` (the same postings, in the same order) also lists, itself kept: what
    :func:`keep_shared` does to their graphs.

    >>> own = pd.DataFrame({"posting_id": ["a", "b"], "matches": ["a b", "a b"]})
    >>> shared_matches(own, pd.DataFrame({"posting_id": ["a", "b"], "matches": ["a", "b"]}))
      posting_id matches
    0          a       a
    1          b       b
    """
    ids, theirs = own["posting_id"].tolist(), general["posting_id"].tolist()
    if ids != theirs:
        raise ValueError("shared_matches needs two tables of the same postings in one order.")
    kept = []
    for pid, mine, other in zip(ids, own["matches"], general["matches"]):
        allowed = set(str(other).split())
        allowed.add(pid)
        kept.append(" ".join(m for m in str(mine).split() if m in allowed))
    return pd.DataFrame({"posting_id": own["posting_id"].to_numpy(), "matches": kept})
