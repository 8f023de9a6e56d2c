"""The union's mean F1 over a whole threshold grid at once (for threshold tuning).

:func:`~shopee_match.tuning.tune_thresholds` scores the union of the steps' thresholded
candidate graphs hundreds of times: one step's threshold moves along its grid while the
others stay put. Here each candidate pair gets, once, the number of grid thresholds it
passes; for a sweep, the pairs the other steps already match are removed and a
per-row histogram of those levels, summed from the top, gives every row's match count
and correct matches at every grid threshold. The F1 values and their means are computed
by the same expressions as :func:`~shopee_match.metrics.graph_f1_scores` on the same
integers, so the scores are the same numbers and tuning picks the same thresholds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from .ensemble import Ensemble
from .protocols import ClassRegistry

__all__ = ["UNION_COMBINERS", "UnionSweep"]

#: combiner class -> whether an instance is the plain union of the steps (exact classes:
#: a subclass may combine otherwise; register yours if it is a plain union)
UNION_COMBINERS: ClassRegistry[Callable[[Any], bool]] = ClassRegistry("union sweep")
UNION_COMBINERS.register(Ensemble, lambda ens: ens.how == "union" and not ens.symmetric)


class _Entries:
    """One step's off-diagonal candidate pairs in one fold."""

    def __init__(self, g: sp.csr_matrix, codes: np.ndarray,
                 keeps: Callable[[np.ndarray, float], np.ndarray | None],
                 grid: np.ndarray) -> None:
        coo = g.tocoo()
        off = coo.row != coo.col
        n = g.shape[0]
        self.rows = coo.row[off].astype(np.int64)
        self.keys = self.rows * n + coo.col[off]
        self.same = codes[self.rows] == codes[coo.col[off]]
        self.data = coo.data[off]
        self.keeps = keeps
        # grid thresholds passed, on the grid sorted ascending (kept at sorted k: level > k)
        self.order = np.argsort(grid, kind="stable")
        self.level = np.zeros(len(self.keys), dtype=np.int64)
        for t in grid[self.order]:
            self.level += np.asarray(keeps(self.data, float(t)), dtype=bool)

    def kept(self, t: float) -> np.ndarray:
        return np.asarray(self.keeps(self.data, float(t)), dtype=bool)


class UnionSweep:
    """Scores of the union of thresholded steps, as ``tune_thresholds`` computes them.

    Use :meth:`build`; it returns ``None`` where this shortcut does not apply (a step
    whose selection depends on more than each pair's similarity, a combination other
    than the plain union, duplicate or zero-valued candidates).
    """

    def __init__(self, entries: list[dict[str, _Entries]], codes: list[np.ndarray],
                 grids: Mapping[str, np.ndarray]) -> None:
        self.entries = entries
        self.codes = codes
        self.sizes = [np.bincount(c)[c] for c in codes]
        self.grids = grids

    @classmethod
    def build(cls, matchers: Mapping[str, Any], folds: Sequence[Any],
              grids: Mapping[str, np.ndarray], combine: Any) -> UnionSweep | None:
        ens = getattr(combine, "__self__", None)
        is_union = UNION_COMBINERS.lookup(ens)
        if is_union is None or not is_union(ens):
            return None
        probe = np.zeros(1, dtype=np.float32)
        if any(getattr(m, "keeps", None) is None or m.keeps(probe, 0.5) is None
               for m in matchers.values()):
            return None
        entries, codes = [], []
        for fold in folds:
            _, c = np.unique(np.asarray(fold.groups), return_inverse=True)
            c = c.ravel()
            per = {}
            for name, m in matchers.items():
                g = sp.csr_matrix(fold.cands[name])
                if not g.has_canonical_format or (g.data == 0).any():
                    return None
                per[name] = _Entries(g, c, m.keeps, np.asarray(grids[name], dtype=np.float64))
            entries.append(per)
            codes.append(c)
        return cls(entries, codes, grids)

    def _base(self, f: int, th: Mapping[str, float], skip: str | None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The other steps' matched pairs (sorted keys) and each row's match and correct
        counts, itself included."""
        n = len(self.codes[f])
        parts = [(e.keys[k], e.same[k]) for name, e in self.entries[f].items()
                 if name != skip and name in th for k in [e.kept(th[name])]]
        if parts:
            keys, at = np.unique(np.concatenate([p[0] for p in parts]), return_index=True)
            same = np.concatenate([p[1] for p in parts])[at]
        else:
            keys, same = np.empty(0, dtype=np.int64), np.empty(0, dtype=bool)
        rows = keys // max(n, 1)
        pred = np.bincount(rows, minlength=n) + 1
        inter = np.bincount(rows[same], minlength=n) + 1
        return keys, pred, inter

    def _means(self, f: int, pred: np.ndarray, inter: np.ndarray) -> np.ndarray:
        """Mean F1 of the fold per column of (rows x settings) counts."""
        f1 = 2.0 * inter / (pred + self.sizes[f][:, None])
        return np.ascontiguousarray(f1.T).mean(axis=1)

    def score(self, th: Mapping[str, float]) -> float:
        """Mean over folds of the union's mean F1 at thresholds ``th`` (every step)."""
        total = 0.0
        for f in range(len(self.entries)):
            _, pred, inter = self._base(f, th, None)
            total += float(self._means(f, pred[:, None], inter[:, None])[0])
        return total / len(self.entries)

    def sweep(self, th: Mapping[str, float], name: str, alone: bool = False) -> list[float]:
        """The score at each of ``name``'s grid thresholds, the other steps at ``th``
        (``alone``: no other step, as ``name``'s own curve)."""
        grid = self.grids[name]
        g = len(grid)
        total = np.zeros(g)
        for f in range(len(self.entries)):
            n = len(self.codes[f])
            others = {} if alone else th
            keys, pred, inter = self._base(f, others, name)
            e = self.entries[f][name]
            if len(keys):
                pos = np.minimum(np.searchsorted(keys, e.keys), len(keys) - 1)
                new = keys[pos] != e.keys
            else:
                new = np.ones(len(e.keys), dtype=bool)
            cells = e.rows[new] * (g + 1) + e.level[new]
            counts = []
            for sel in (np.ones(len(cells), dtype=bool), e.same[new]):
                hist = np.bincount(cells[sel], minlength=n * (g + 1)).reshape(n, g + 1)
                above = np.cumsum(hist[:, ::-1], axis=1)[:, ::-1]  # level >= column
                counts.append(above[:, 1:])  # level > k: kept at sorted threshold k
            by_sorted = self._means(f, pred[:, None] + counts[0], inter[:, None] + counts[1])
            means = np.empty(g)
            means[e.order] = by_sorted
            total = total + means
        return [float(v) for v in total / len(self.entries)]
