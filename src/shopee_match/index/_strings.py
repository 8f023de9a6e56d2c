"""Many strings as two arrays (UTF-8 bytes and offsets): saved as ``.npy`` without
pickle, memory-mapped on load, decoded only for the rows asked for."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["StringArray"]


class StringArray:
    """Strings ``i`` = ``data[offsets[i]:offsets[i + 1]]`` decoded as UTF-8.

    >>> s = StringArray.from_list(["mug", "tasse à café"])
    >>> s.get([1, 0]), len(s)
    (['tasse à café', 'mug'], 2)
    """

    def __init__(self, data: np.ndarray, offsets: np.ndarray) -> None:
        self.data, self.offsets = data, offsets

    @classmethod
    def from_list(cls, items: Sequence[str]) -> StringArray:
        enc = [str(s).encode("utf-8") for s in items]
        offsets = np.zeros(len(enc) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in enc], out=offsets[1:])
        return cls(np.frombuffer(b"".join(enc), dtype=np.uint8).copy(), offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def get(self, rows: Sequence[int] | np.ndarray) -> list[str]:
        off = self.offsets
        return [bytes(self.data[off[i]:off[i + 1]]).decode("utf-8") for i in np.asarray(rows)]

    def all(self) -> list[str]:
        return self.get(np.arange(len(self)))

    def replaced(self, slots: np.ndarray, items: Sequence[str]) -> StringArray:
        """A copy with ``items`` at ``slots`` (slots past the end append, in order)."""
        n = len(self)
        n_total = max(n, int(np.max(slots)) + 1 if len(slots) else 0)
        cur = self.all() + [""] * (n_total - n)
        for s, t in zip(np.asarray(slots), items):
            cur[int(s)] = t
        return StringArray.from_list(cur)
