"""The cluster a distributed matching runs on, and the streamed output file."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["INSTALL", "client_for", "hash_bits", "require_dask", "write_csv"]

INSTALL = "pip install 'shopee_match[dask]'"


def require_dask() -> None:
    try:
        import dask.dataframe  # noqa: F401
        import distributed  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"Distributed matching needs Dask (dask[dataframe] and distributed): {INSTALL}. "
            f"({exc})"
        ) from exc


@contextmanager
def client_for(client: Any, scheduler: str | None) -> Iterator[Any]:
    """The given client, one for ``scheduler`` (``ADDRESS`` or ``local:N``), the current
    one, or a new local cluster; closes what it opened."""
    from distributed import Client, LocalCluster

    if client is not None:
        yield client
        return
    if scheduler is None:
        try:
            from distributed import get_client

            yield get_client()
            return
        except ValueError:
            scheduler = "local:2"
    if scheduler.startswith("local:"):
        try:
            n = int(scheduler.split(":", 1)[1])
        except ValueError:
            raise ValueError(
                f"--scheduler local:N needs a worker count, got {scheduler!r}."
            ) from None
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True) as cluster, \
                Client(cluster) as c:
            yield c
        return
    with Client(scheduler) as c:
        yield c


def write_csv(c: Any, tables: list[Any], output: str | Path) -> dict[str, Any]:
    """Stream the partitions' tables into one CSV, in order, atomically."""
    from .._persist import atomic_file

    n = matches = 0
    with atomic_file(output, "w", encoding="utf-8", newline="") as fh:
        for i, fut in enumerate(tables):
            df = fut.result()
            tables[i] = None  # release it on the cluster
            df.to_csv(fh, index=False, header=i == 0)
            n += len(df)
            matches += int(df["matches"].str.count(" ").sum()) + len(df)
    return {"output": str(output), "n_written": n, "mean_matches": matches / max(1, n)}


def hash_bits(part: Any, step: str) -> int:
    return int(part.embs[step][2])
