"""What a :class:`~shopee_match.index.MatchIndex` query reads: one immutable snapshot."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ._space import VectorStore
from ._steps import Step
from ._strings import StringArray

__all__ = ["State"]


@dataclass
class State:
    """Everything a query reads; ``add`` swaps in a new one (queries never wait)."""

    ids: StringArray
    titles: StringArray
    stores: dict[str, VectorStore]
    steps: list[Step]
    embedders: dict[str, Any]
    _id_index: pd.Index | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def n(self) -> int:
        return len(self.ids)

    def id_index(self) -> pd.Index:
        with self._lock:
            if self._id_index is None:
                self._id_index = pd.Index(self.ids.all())
            return self._id_index

    def witness(self, j: int) -> tuple[int, int, float] | None:
        """One stored off-diagonal pair of step ``j`` (see :meth:`MatchIndex.query`)."""
        rows = getattr(self.steps[j].final, "rows", None)
        if rows is None:
            return None
        for lo in range(0, rows.shape[0], 4096):
            coo = rows[lo:lo + 4096].tocoo()
            off = np.flatnonzero(coo.row + lo != coo.col)
            if len(off):
                p = off[0]
                return int(coo.row[p] + lo), int(coo.col[p]), float(coo.data[p])
        return None
