"""The cluster a distributed matching runs on, and the streamed output file."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["INSTALL", "QUIET", "client_for", "hash_bits", "local_cluster", "require_dask",
           "write_csv"]

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


#: Dask settings of the clusters :func:`local_cluster` starts: no statistical profiler
#: sampling every worker thread each 10 ms, monitors polled less often. They feed the
#: dashboard only; idle, they cost a 2-worker cluster about 0.09 CPU seconds a second
#: (0.013 with these), about 7 % of a matching run's CPU (benchmarks/RESULTS.md)
QUIET = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "500ms",
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.worker.memory.monitor-interval": "500ms",
}


@contextmanager
def local_cluster(n_workers: int, **kwargs: Any) -> Iterator[Any]:
    """A client of a new ``LocalCluster`` of ``n_workers`` processes of one thread each
    (``kwargs`` go to ``LocalCluster``), run with :data:`QUIET`'s settings; closed on exit.

    >>> with local_cluster(2) as c:                               # doctest: +SKIP
    ...     sub = predict_dask(pipe, "postings-*.csv", client=c)
    """
    import dask
    from distributed import Client, LocalCluster

    with dask.config.set(QUIET):  # read by the scheduler, nannies and workers as they start
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                               **kwargs)
    with cluster, Client(cluster) as client:
        yield client


@contextmanager
def client_for(client: Any, scheduler: str | None) -> Iterator[Any]:
    """The given client, one for ``scheduler`` (``ADDRESS`` or ``local:N``: a
    :func:`local_cluster`), the current one, or a new local cluster; closes what it
    opened."""
    from distributed import Client

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
        with local_cluster(n) as c:
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
