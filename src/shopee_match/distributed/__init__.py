"""Run a fitted :class:`~shopee_match.Pipeline` on a Dask cluster (``pip install
'shopee_match[dask]'``): catalogues larger than one machine, the same match sets.

- Embedding runs per partition on the workers; the fitted pipeline is scattered once
  to every worker (``client.scatter(..., broadcast=True)``), never sent per task.
- Search steps (:class:`~shopee_match.NeighborMatcher`): ``method="exact"`` compares
  every pair of partitions with the matcher's own backend and merges top-k in a tree
  (the single-machine output, ties aside); ``method="ivf"`` shuffles postings into
  k-means cells and searches inside cells (approximate, with a reported recall);
  ``method="cuml"`` uses ``cuml.dask`` NearestNeighbors on GPU workers (dense rows).
- Hash steps (:class:`~shopee_match.HashMatcher`) shuffle on hash chunks, exactly.
- The steps' matches are unioned (``Ensemble(how="union")``) and written in input order.

See ``docs/scaling.md`` for the design, the measured rates and a 100M-posting plan.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["cli_match", "predict_dask"]

logger = logging.getLogger(__name__)

_INSTALL = "pip install 'shopee_match[dask]'"
_METHODS = ("exact", "ivf", "cuml")


def _require_dask() -> None:
    try:
        import dask.dataframe  # noqa: F401
        import distributed  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"Distributed matching needs Dask (dask[dataframe] and distributed): {_INSTALL}. "
            f"({exc})"
        ) from exc


@contextmanager
def _client(client: Any, scheduler: str | None) -> Iterator[Any]:
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


def _check(pipeline: Any, method: str) -> tuple[list[Any], list[str]]:
    from ..ensemble import Ensemble
    from ..neighbors.hamming import HashMatcher
    from ..neighbors.matcher import NeighborMatcher

    pipeline._check_fitted()
    steps = pipeline._validate_steps()
    if method not in _METHODS:
        raise ValueError(f"`method` must be one of {_METHODS}, got {method!r}.")
    ens = pipeline._ensemble()
    if type(ens) is not Ensemble or ens.how != "union" or ens.symmetric:
        raise NotImplementedError(
            f"Distributed matching combines steps by union only (Ensemble(how='union')); this "
            f"pipeline's ensemble is {ens!r}. Use pipeline.predict on Postings, or set "
            "pipeline.ensemble = Ensemble(how='union')."
        )
    hash_steps = []
    for name, emb, matcher in steps:
        if getattr(emb, "fit_on", "train") == "predict":
            raise NotImplementedError(
                f"Step {name!r}: fit_on='predict' relearns the vocabulary on all postings at "
                "once, which partitions cannot do; refit with fit_on='train'."
            )
        # exact types: a subclass (e.g. BlendMatcher) searches differently
        if type(matcher) is HashMatcher:
            hash_steps.append(name)
        elif type(matcher) is not NeighborMatcher:
            raise NotImplementedError(
                f"Step {name!r}: {type(matcher).__name__} has no distributed search; use "
                "NeighborMatcher or HashMatcher."
            )
        else:
            matcher._validate()
    return steps, hash_steps


def predict_dask(
    pipeline: Any,
    data: Any,
    *,
    client: Any = None,
    scheduler: str | None = None,
    image_dir: str | None = None,
    method: str = "exact",
    encoding: str | None = None,
    partition_rows: int = 100_000,
    n_cells: int | None = None,
    n_probe: int = 2,
    cell_size: int = 2000,
    recall_sample: int = 0,
    random_state: int = 0,
    output: str | Path | None = None,
) -> Any:
    """The submission table ``posting_id, matches`` of a Dask DataFrame or CSV/Parquet glob.

    ``method``: ``"exact"`` (block pairs, equals ``pipeline.predict``), ``"ivf"`` (cells of
    about ``cell_size`` postings, each posting in its ``n_probe`` nearest; approximate) or
    ``"cuml"`` (GPU workers with ``cuml.dask``). ``recall_sample`` > 0 (IVF) measures the
    recall of search-step matches against exact search on that many random postings.
    Per-stage seconds and statistics are in ``result.attrs["shopee_match"]``.

    ``output``: write the submission CSV there instead (atomically, one partition at a
    time, so the client never holds the whole table) and return the statistics dict.

    >>> from shopee_match import make_catalog, Pipeline          # doctest: +SKIP
    >>> from distributed import Client, LocalCluster              # doctest: +SKIP
    >>> pipe = Pipeline.default(images=False).fit(make_catalog(50, images=False))  # doctest: +SKIP
    >>> with Client(LocalCluster(n_workers=2)) as c:              # doctest: +SKIP
    ...     sub = pipe.predict("postings-*.parquet", client=c)
    """
    _require_dask()
    from ._io import (
        assemble,
        embed_parts,
        load_partitions,
        nbytes,
        part_ids,
        part_step,
        read_frame,
    )
    from ._ivf import ivf_edges
    from ._phash import hash_edges
    from ._search import exact_edges

    steps, hash_steps = _check(pipeline, method)
    if partition_rows < 1:
        raise ValueError(f"`partition_rows` must be >= 1, got {partition_rows!r}.")
    stats: dict[str, Any] = {"method": method, "timings": {}}
    timings = stats["timings"]
    with _client(client, scheduler) as c:
        from distributed import as_completed, wait

        t0 = time.perf_counter()
        ddf = read_frame(data, encoding=encoding)
        frames = load_partitions(c, ddf, partition_rows)
        if not frames:
            empty = pd.DataFrame({"posting_id": pd.Series([], dtype=str),
                                  "matches": pd.Series([], dtype=str)})
            if output is not None:
                return _write(c, [c.scatter(empty)], output)
            return empty
        pipe_future = c.scatter(pipeline, broadcast=True, hash=False)
        parts, offsets = embed_parts(c, frames, pipe_future, image_dir, hash_steps)
        wait(parts)
        del frames
        ids = [c.submit(part_ids, p, pure=False) for p in parts]
        by_step = {name: [c.submit(part_step, p, name, pure=False) for p in parts]
                   for name, _, _ in steps}
        wait([f for fs in by_step.values() for f in fs])
        stats["embedding_bytes"] = {
            name: int(sum(c.gather([c.submit(nbytes, f, pure=False) for f in fs])))
            for name, fs in by_step.items()
        }
        del parts  # each step's rows are now held (and released) on their own
        timings["read_embed"] = time.perf_counter() - t0
        stats.update(n_postings=int(offsets[-1]), n_partitions=len(ids))
        logger.info("embedded %d postings in %d partitions", offsets[-1], len(ids))
        edges = []
        for name, _, matcher in steps:
            t0 = time.perf_counter()
            rows = by_step.pop(name)
            if name in hash_steps:
                n_bits = int(c.submit(_hash_bits, rows[0], name, pure=False).result())
                e = hash_edges(c, rows, offsets, name, matcher, n_bits=n_bits)
                wait([f for fs in e for f in fs])
            elif method == "exact":
                e = exact_edges(c, rows, offsets, name, matcher)
                wait(e)
            elif method == "cuml":
                from ._cuml import cuml_edges

                e = cuml_edges(c, rows, offsets, name, matcher)
                wait(e)
            else:
                check = (_recall_start(c, rows, offsets, name, matcher, recall_sample,
                                       random_state) if recall_sample > 0 else None)
                e, ivf = ivf_edges(
                    c, rows, offsets, name, matcher, n_cells=n_cells, n_probe=n_probe,
                    cell_size=cell_size, dim=256, sample_size=50_000, seed=random_state,
                )
                # drop each partition's rows once its shuffle pieces exist: the copies are
                # all the cell search needs, and memory then never holds both in full
                split = ivf.pop("split")
                where = {f.key: i for i, f in enumerate(split)}
                for done in as_completed(split):
                    rows[where[done.key]] = None
                del rows, split
                wait(e)
                ivf["shuffle_bytes"] = int(ivf["shuffle_bytes"].result())
                sizes = np.asarray(ivf.pop("cell_sizes").result(), dtype=np.int64)
                ivf.update(memberships=int(sizes.sum()), largest_cell=int(sizes.max()),
                           pairs_searched=int((sizes**2).sum()))
                stats[f"ivf_{name}"] = ivf
                if check is not None:
                    stats[f"recall_{name}"] = _recall_finish(c, offsets, e, int(matcher.k),
                                                             *check)
            edges.append(e)
            timings[f"search_{name}"] = time.perf_counter() - t0
            logger.info("step %s searched in %.1f s", name, timings[f"search_{name}"])
        t0 = time.perf_counter()
        tables = assemble(c, ids, offsets, *edges)
        del edges, ids
        if output is not None:
            stats.update(_write(c, tables, output))
            timings["assemble_write"] = time.perf_counter() - t0
            return stats
        out = pd.concat(c.gather(tables), ignore_index=True)
        timings["assemble"] = time.perf_counter() - t0
    out.attrs["shopee_match"] = stats
    return out


def _write(c: Any, tables: list[Any], output: str | Path) -> dict[str, Any]:
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


def _hash_bits(part: Any, step: str) -> int:
    return int(part.embs[step][2])


def _rows_of(part: Any, step: str, local: np.ndarray) -> tuple[Any, np.ndarray]:
    return part.embs[step][local], local.astype(np.int64) + part.offset


def _pick(edges: tuple[np.ndarray, np.ndarray], local: np.ndarray, offset: int) -> Any:
    rows, cols = edges
    keep = np.isin(rows, local)
    return rows[keep] + offset, cols[keep]


def _recall_start(
    c: Any, parts: list[Any], offsets: np.ndarray, step: str, matcher: Any, n: int, seed: int,
) -> tuple[np.ndarray, Any]:
    """Exact matches of ``n`` random postings (a future), to measure the IVF recall."""
    import scipy.sparse as sp

    from ._io import home_of
    from ._search import exact_for_queries

    rng = np.random.default_rng(seed)
    total = int(offsets[-1])
    gids = np.sort(rng.choice(total, min(n, total), replace=False))
    owner = home_of(gids, offsets)
    rows = c.gather([
        c.submit(_rows_of, parts[a], step, gids[owner == a] - offsets[a], pure=False)
        for a in np.unique(owner)
    ])
    x = rows[0][0]
    block = sp.vstack([r[0] for r in rows], format="csr") if sp.issparse(x) else \
        np.concatenate([r[0] for r in rows])
    query = c.scatter((block, np.concatenate([r[1] for r in rows])), hash=False)
    return gids, exact_for_queries(c, parts, query, step, matcher)


def _recall_finish(
    c: Any, offsets: np.ndarray, edges: list[Any], k: int, gids: np.ndarray,
    exact_future: Any,
) -> dict[str, float]:
    """Recall (and precision) of the IVF step's matches against the exact ones; also
    over the postings whose exact set is not cut by ``k`` (``recall_uncapped``)."""
    from ._io import home_of

    owner = home_of(gids, offsets)
    picked = [
        c.submit(_pick, edges[a], gids[owner == a] - offsets[a], int(offsets[a]), pure=False)
        for a in np.unique(owner)
    ]
    er, ec = c.gather(exact_future)
    exact = set(zip(gids[er].tolist(), ec.tolist()))
    approx: set[tuple[int, int]] = set()
    for r, col in c.gather(picked):
        approx.update(zip(r.tolist(), col.tolist()))
    found = len(exact & approx)
    # postings whose exact set is cut by k: there the two searches may keep different
    # equally valid top-k members, which is not a miss of the cells
    counts = np.bincount(er, minlength=len(gids))
    capped = set(gids[counts >= k - 1].tolist())
    ex_free = {p for p in exact if p[0] not in capped}
    return {"sample": len(gids), "exact_pairs": len(exact), "ivf_pairs": len(approx),
            "recall": found / max(1, len(exact)),
            "precision_vs_exact": found / max(1, len(approx)),
            "capped_postings": len(capped),
            "recall_uncapped": len(ex_free & approx) / max(1, len(ex_free))}


def cli_match(args: Any, verbose: bool) -> int:
    """``shopee-match match --scheduler ADDRESS|local:N``: write the submission CSV.

    >>> import argparse                                            # doctest: +SKIP
    >>> args = argparse.Namespace(postings="p-*.csv", images=None, encoding=None,
    ...     model="model/", output="sub.csv", scheduler="local:2", quiet=True)  # doctest: +SKIP
    >>> cli_match(args, verbose=False)                             # doctest: +SKIP
    0
    """
    from ..pipeline import Pipeline

    _require_dask()
    if not args.model:
        raise ValueError(
            "--scheduler needs --model MODEL_DIR (a pipeline from `shopee-match fit`): the "
            "built-in pipeline would have to be fitted on all postings on one machine."
        )
    pipe = Pipeline.load(args.model)
    pipe.set_params(verbose=False)
    method = getattr(args, "method", None) or "exact"
    stats = predict_dask(pipe, args.postings, scheduler=args.scheduler, image_dir=args.images,
                         encoding=args.encoding, method=method, output=args.output)
    print(f"wrote {stats['n_written']} postings to {args.output} (mean "
          f"{stats['mean_matches']:.2f} matches each; {stats.get('n_partitions', 0)} "
          f"partitions on Dask, method {method})")
    return 0
