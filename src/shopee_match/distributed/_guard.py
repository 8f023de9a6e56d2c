"""The shift guard on a Dask cluster (``Pipeline(shift_guard=True)``), as one machine applies it.

The decision reads the catalogue's label-free profile
(:func:`~shopee_match.shift.catalogue_profile`) from the titles of the rows it samples,
fetched from the partitions that hold them (at most
:data:`~shopee_match.shift.PROFILE_MAX` titles travel), so it is the single machine's
decision, with its warning. Where it fires, the shipped model runs on the same partitions
and each posting keeps the matches both list (``shared_matches``).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._pipeline_guard import general_model, guard_fires, guarded
from ..data import Postings
from ._io import _slice

__all__ = ["guard_model", "split_frames"]


def _rows(df: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
    return df.iloc[rows][["posting_id", "title"]]


def _has_titles(df: pd.DataFrame) -> bool:
    return "title" in df.columns and "posting_id" in df.columns


def guard_model(c: Any, pipeline: Any, frames: list[Any], data: Any) -> Any | None:
    """The shipped model when ``pipeline``'s shift guard fires on the catalogue held in
    ``frames`` (pandas partitions, in input order; ``data`` names it in the warning),
    else ``None``."""
    if not guarded(pipeline) or not c.submit(_has_titles, frames[0], pure=False).result():
        return None
    from ..shift import profile_rows

    lengths = np.asarray(c.gather(c.map(len, frames, pure=False)), dtype=np.int64)
    offsets = np.r_[0, np.cumsum(lengths)]
    rows = profile_rows(int(offsets[-1]))
    home = np.searchsorted(offsets, rows, side="right") - 1
    pieces = [c.submit(_rows, f, rows[home == p] - offsets[p], pure=False)
              for p, f in enumerate(frames) if (home == p).any()]
    sample = pd.concat(c.gather(pieces), ignore_index=True)
    source = str(data) if isinstance(data, (str, Path)) else "Dask DataFrame"
    return general_model(pipeline) if guard_fires(pipeline, Postings(sample, source=source)) else None


def split_frames(c: Any, frames: list[Any], partition_rows: int) -> list[Any]:
    """``frames`` with every partition longer than ``partition_rows`` cut into pieces of
    at most that many rows, in order."""
    lengths = c.gather(c.map(len, frames, pure=False))
    out: list[Any] = []
    for fut, n in zip(frames, lengths):
        if n <= partition_rows:
            out.append(fut)
            continue
        bounds = np.linspace(0, n, -(-n // partition_rows) + 1).astype(int)
        out.extend(c.submit(_slice, fut, int(a), int(b), pure=False)
                   for a, b in itertools.pairwise(bounds))
    return out
