"""Input, per-partition embedding and output assembly of the distributed pipeline.

Postings come in as a Dask DataFrame or a glob of CSV/Parquet files and are held as
one future per partition (split to at most ``partition_rows`` rows). Posting ``r`` of
partition ``p`` gets the global id ``offsets[p] + r``; every search works on those ids.
At the end each partition's edges ``(local row, global id)`` are translated back to
``posting_id`` strings by one all-to-all exchange (each owner partition looks its ids up)
and written as the single-machine submission table, in input order.
"""

from __future__ import annotations

import glob as _glob
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..data import Postings
from ..neighbors.hamming import pack_bits
from ._route import apply_pieces, route

__all__ = [
    "Part",
    "assemble",
    "embed_parts",
    "home_of",
    "load_partitions",
    "nbytes",
    "part_ids",
    "part_step",
    "read_frame",
]

_STR_COLS = {"posting_id": str, "title": str, "image": str, "image_phash": str}


@dataclass
class Part:
    """One partition after embedding: its ids, global offset and per-step embeddings.

    A search step holds its embedding rows (CSR or dense); a hash step ``(codes, valid,
    n_bits)`` (8 bytes a posting, see :func:`~shopee_match.neighbors.hamming.pack_bits`).
    """

    ids: np.ndarray
    offset: int
    embs: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)


def read_frame(data: Any, encoding: str | None = None) -> Any:
    """A Dask DataFrame from a Dask DataFrame or a glob of ``.csv`` / ``.parquet`` files.

    >>> read_frame("/no/such/*.csv")
    Traceback (most recent call last):
    ...
    FileNotFoundError: /no/such/*.csv: no files match; pass a CSV/Parquet path or glob.
    """
    import dask.dataframe as dd

    if isinstance(data, dd.DataFrame):
        return data
    if not isinstance(data, (str, Path)):
        raise TypeError(
            f"Expected a Dask DataFrame or a glob of CSV/Parquet files, got {type(data).__name__}."
        )
    pattern = str(data)
    if "://" in pattern:  # s3://, gs://, ...: fsspec expands the glob on its file system
        files = [pattern]
    else:
        files = sorted(_glob.glob(pattern)) if _glob.has_magic(pattern) else [pattern]
        files = [f for f in files if Path(f).exists()]
    if not files:
        raise FileNotFoundError(f"{pattern}: no files match; pass a CSV/Parquet path or glob.")
    kinds = {".parquet" if f.endswith((".parquet", ".pq"))
             or ("://" not in f and Path(f).is_dir()) else ".csv" for f in files}
    if kinds == {".parquet"}:
        return dd.read_parquet(files)
    if kinds == {".csv"}:
        return dd.read_csv(
            files, dtype=_STR_COLS, keep_default_na=False, na_values=[""],
            encoding=encoding or "utf-8", blocksize="64MB",
        )
    raise ValueError(f"{pattern}: mixes CSV and Parquet files; pass one kind.")


def _slice(df: pd.DataFrame, start: int, stop: int) -> pd.DataFrame:
    return df.iloc[start:stop]


def load_partitions(client: Any, ddf: Any, partition_rows: int) -> list[Any]:
    """Futures of pandas partitions of at most ``partition_rows`` rows, in input order."""
    parts = client.compute(ddf.to_delayed(), optimize_graph=True)
    lengths = client.gather(client.map(len, parts, pure=False))
    out: list[Any] = []
    for fut, n in zip(parts, lengths):
        if n <= partition_rows:
            if n:
                out.append(fut)
            continue
        pieces = -(-n // partition_rows)
        bounds = np.linspace(0, n, pieces + 1).astype(int)
        out.extend(
            client.submit(_slice, fut, int(a), int(b), pure=False)
            for a, b in itertools.pairwise(bounds)
        )
    return out


def _embed(
    df: pd.DataFrame, pipe: Any, offset: int, image_dir: str | None, hash_steps: list[str],
    counted: list[dict[str, Any]] | None = None,
) -> Part:
    from ._tfidf import counted_rows

    postings = Postings(df, image_dir=image_dir, source=f"partition at posting {offset}")
    part = Part(ids=postings.posting_id.astype(object), offset=int(offset))
    # the counting pass's matrices of each step it counted for: embedded without counting
    by_step = {name: one for one in counted or [] for name in one["steps"]}
    done: dict[int, Any] = {}  # steps sharing one embedder embed once
    for name, emb, _ in pipe.steps:
        if id(emb) not in done:
            rows = counted_rows(by_step[name], emb) if name in by_step else None
            done[id(emb)] = emb.embed(postings) if rows is None else emb.embed_counts(rows)
        x = done[id(emb)]
        if name in hash_steps:
            x = np.asarray(x, dtype=np.float32)
            codes, valid = pack_bits(x)
            part.embs[name] = (codes, valid, int(x.shape[1]))
        else:
            part.embs[name] = x
    return part


def embed_parts(
    client: Any, frames: list[Any], pipe_future: Any, image_dir: str | None,
    hash_steps: list[str], counted: list[Any] | None = None,
) -> tuple[list[Any], np.ndarray]:
    """Embed every partition on the workers; ``(part futures, offsets)``.

    ``pipe_future`` is the pipeline scattered once to every worker: tasks receive the
    worker's local copy, so fitted state travels once per worker, not once per task.
    ``counted``: each partition's count matrices from the counting pass
    (:func:`._tfidf.partition_counts`), for the TF-IDF steps it counted; the list is
    emptied here (each partition's are released once it is embedded).
    """
    lengths = client.gather(client.map(len, frames, pure=False))
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    parts = [
        client.submit(_embed, f, pipe_future, int(off), image_dir, hash_steps,
                      None if counted is None else counted[a], pure=False)
        for a, (f, off) in enumerate(zip(frames, offsets[:-1]))
    ]
    if counted is not None:
        counted.clear()
    return parts, offsets


def nbytes(obj: Any) -> int:
    """Bytes held by the arrays in ``obj`` (nested tuples, lists, dicts, :class:`Part`).

    >>> nbytes((np.zeros(4, np.float32), [np.zeros(2, np.int64)]))
    32
    """
    if isinstance(obj, Part):
        return nbytes(obj.ids) + nbytes(obj.embs)
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes)
    if hasattr(obj, "indptr"):  # SciPy CSR
        return int(obj.data.nbytes + obj.indices.nbytes + obj.indptr.nbytes)
    if isinstance(obj, dict):
        return sum(nbytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(nbytes(v) for v in obj)
    return 0


def home_of(gids: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The partition that owns each global id.

    >>> home_of(np.array([0, 4, 5]), np.array([0, 5, 9])).tolist()
    [0, 0, 1]
    """
    return np.searchsorted(offsets, gids, side="right") - 1


# --- output: union of the steps' edges, ids looked up by their owners -----------------
def part_ids(part: Part) -> np.ndarray:
    """The posting ids of a partition (a small future, so embeddings can be released)."""
    return part.ids


def part_step(part: Part, step: str) -> Part:
    """One step's embedding of a partition (released when that step is searched)."""
    return Part(ids=part.ids[:0], offset=part.offset, embs={step: part.embs[step]})


def _union(
    ids: np.ndarray, offset: int, offsets: np.ndarray, *edge_sets: Any
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Union the edges ``(local row, global id)`` of one partition (self added), sorted,
    split by the partition that owns each id."""
    n = len(ids)
    rows = [np.arange(n, dtype=np.int64)]
    cols = [np.arange(n, dtype=np.int64) + offset]
    for es in edge_sets:
        for r, c in es if isinstance(es, list) else [es]:
            rows.append(np.asarray(r, dtype=np.int64))
            cols.append(np.asarray(c, dtype=np.int64))
    r, c = np.concatenate(rows), np.concatenate(cols)
    key = np.unique(r * int(offsets[-1]) + c)
    r, c = key // int(offsets[-1]), key % int(offsets[-1])
    owner = home_of(c, offsets)
    return [(r[owner == b], c[owner == b] - offsets[b]) for b in range(len(offsets) - 1)]


def _lookup(
    piece: tuple[np.ndarray, np.ndarray], owner_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    rows, local = piece
    return rows, owner_ids[local]


def _lookup_all(owner_ids: np.ndarray, *pieces: tuple[np.ndarray, np.ndarray]
                ) -> list[tuple[np.ndarray, np.ndarray]]:
    return [_lookup(p, owner_ids) for p in pieces]


def _format(ids: np.ndarray, *named: tuple[np.ndarray, np.ndarray]) -> pd.DataFrame:
    rows = np.concatenate([r for r, _ in named])
    names = np.concatenate([np.asarray(v, dtype=object) for _, v in named])
    order = np.argsort(rows, kind="stable")  # owners come in id order: stays sorted
    rows, names = rows[order], names[order]
    bounds = np.searchsorted(rows, np.arange(len(ids) + 1))
    matches = [" ".join(names[bounds[i]:bounds[i + 1]]) for i in range(len(ids))]
    return pd.DataFrame({"posting_id": ids.astype(str), "matches": matches})


def assemble(client: Any, ids: list[Any], offsets: np.ndarray, *edges: list[Any]) -> list[Any]:
    """Futures of the submission table of each partition (``posting_id, matches``).

    ``ids``: one future per partition of its posting ids (:func:`part_ids`).
    ``edges``: for each step, one future per partition of ``(local rows, global ids)``
    (or a list of such pairs). Match ids come out in global order, as
    :func:`~shopee_match.neighbors.graph.graph_to_sets` sorts them.
    """
    n_parts = len(ids)
    split = [
        client.submit(_union, ids[a], int(offsets[a]), offsets, *[e[a] for e in edges],
                      pure=False)
        for a in range(n_parts)
    ]
    # each piece to the partition owning its ids, named there, and back
    named = [apply_pieces(client, h, _lookup_all, ids[b])
             for b, h in enumerate(route(client, split, n_parts))]
    return [apply_pieces(client, h, _format, ids[a])
            for a, h in enumerate(route(client, named, n_parts))]
