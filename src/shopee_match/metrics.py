"""Per-posting F1, precision and recall of match sets, and their means (the competition metric).

A match set is any iterable of hashable ids (row positions, posting ids) or a
space-separated string of ids, as in the submission's ``matches`` column.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence

import numpy as np

__all__ = [
    "f1_score",
    "f1_scores",
    "graph_f1_scores",
    "graph_precision_recall_f1",
    "match_nothing_f1",
    "precision_recall_f1",
    "precision_score",
    "recall_score",
]

MatchSet = str | Iterable[Hashable]


def _as_set(m: MatchSet) -> set[Hashable]:
    if isinstance(m, str):
        return set(m.split())
    if isinstance(m, np.ndarray):
        return set(m.tolist())
    return set(m)


def precision_recall_f1(
    true: Sequence[MatchSet], pred: Sequence[MatchSet]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-posting precision, recall and F1 arrays.

    Two empty sets agree perfectly (all three are 1); an empty prediction against a
    non-empty truth scores 0.

    >>> p, r, f = precision_recall_f1([[1, 2]], [[1, 3, 4]])
    >>> float(p[0]), float(r[0]), float(f[0])
    (0.3333333333333333, 0.5, 0.4)
    """
    if len(true) != len(pred):
        raise ValueError(
            f"`true` and `pred` must have one match set per posting; got {len(true)} "
            f"and {len(pred)}."
        )
    n = len(true)
    prec = np.empty(n)
    rec = np.empty(n)
    f1 = np.empty(n)
    for i, (t, p) in enumerate(zip(true, pred)):
        ts, ps = _as_set(t), _as_set(p)
        inter = len(ts & ps)
        prec[i] = inter / len(ps) if ps else float(not ts)
        rec[i] = inter / len(ts) if ts else float(not ps)
        total = len(ts) + len(ps)
        f1[i] = 2.0 * inter / total if total else 1.0
    return prec, rec, f1


def f1_scores(true: Sequence[MatchSet], pred: Sequence[MatchSet]) -> np.ndarray:
    """F1 of each posting's predicted match set against its true one.

    >>> f1_scores([{"a", "b"}], ["a b"]).tolist()
    [1.0]
    """
    return precision_recall_f1(true, pred)[2]


def f1_score(true: Sequence[MatchSet], pred: Sequence[MatchSet]) -> float:
    """Mean per-posting F1, the Shopee competition's score.

    >>> f1_score([[0, 1], [0, 1]], [[0], [0, 1]])
    0.8333333333333333
    """
    scores = f1_scores(true, pred)
    return float(scores.mean()) if len(scores) else 1.0


def precision_score(true: Sequence[MatchSet], pred: Sequence[MatchSet]) -> float:
    """Mean per-posting precision."""
    p = precision_recall_f1(true, pred)[0]
    return float(p.mean()) if len(p) else 1.0


def recall_score(true: Sequence[MatchSet], pred: Sequence[MatchSet]) -> float:
    """Mean per-posting recall."""
    r = precision_recall_f1(true, pred)[1]
    return float(r.mean()) if len(r) else 1.0


def graph_precision_recall_f1(
    pred: object, groups: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-posting precision, recall and F1 of a match graph against label groups.

    ``pred`` is an n x n SciPy sparse matrix whose stored entries in row ``i`` are the
    postings ``i`` matches (include the diagonal); ``groups`` are label codes. Equal to
    :func:`precision_recall_f1` on the same sets, but vectorised.

    >>> import scipy.sparse as sp
    >>> g = sp.csr_matrix(np.array([[1, 1, 0], [0, 1, 0], [0, 0, 1]]))
    >>> [a.round(3).tolist() for a in graph_precision_recall_f1(g, np.array([0, 0, 1]))]
    [[1.0, 1.0, 1.0], [1.0, 0.5, 1.0], [1.0, 0.667, 1.0]]
    """
    import scipy.sparse as sp

    coo = sp.coo_matrix(pred)
    groups = np.asarray(groups)
    n = coo.shape[0]
    if len(groups) != n:
        raise ValueError(f"`groups` has {len(groups)} labels for a graph of {n} rows.")
    _, codes = np.unique(groups, return_inverse=True)
    sizes = np.bincount(codes)[codes]
    same = codes[coo.row] == codes[coo.col]
    inter = np.bincount(coo.row[same], minlength=n)
    n_pred = np.bincount(coo.row, minlength=n)
    return inter / np.maximum(n_pred, 1), inter / sizes, 2.0 * inter / (n_pred + sizes)


def graph_f1_scores(pred: object, groups: np.ndarray) -> np.ndarray:
    """Per-posting F1 of a match graph against label groups, without building sets.

    ``pred`` is an n x n SciPy sparse matrix whose stored entries in row ``i`` are the
    postings ``i`` matches (include the diagonal); ``groups`` are label codes. Equal to
    :func:`f1_scores` on the same sets, but vectorised (used by threshold tuning).

    >>> import scipy.sparse as sp
    >>> g = sp.csr_matrix(np.array([[1, 1, 0], [0, 1, 0], [0, 0, 1]]))
    >>> graph_f1_scores(g, np.array([0, 0, 1])).round(3).tolist()
    [1.0, 0.667, 1.0]
    """
    return graph_precision_recall_f1(pred, groups)[2]


def match_nothing_f1(groups: np.ndarray) -> float:
    """Mean F1 of matching nothing: each posting matched only to itself scores
    ``2 / (|group| + 1)``. The floor every figure is read against: on a catalogue of
    mostly one-offer products it is high, and a matcher below it is worse than useless.

    >>> match_nothing_f1(np.array([0, 0, 1]))
    0.7777777777777777
    """
    _, inv, counts = np.unique(np.asarray(groups), return_inverse=True, return_counts=True)
    return float(np.mean(2.0 / (counts[inv] + 1.0))) if len(inv) else 0.0
