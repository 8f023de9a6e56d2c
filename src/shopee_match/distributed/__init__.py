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
- ``fit_on="predict"`` TF-IDF steps learn their vocabulary and idf from one counting
  pass over the partitions first (:mod:`._tfidf`): the single-machine vectors.
- The steps' matches are unioned (``Ensemble(how="union")``), or, for a pipeline whose
  ensemble is a fitted :class:`~shopee_match.rerank.PairReranker` (``Pipeline.default()``,
  ``Pipeline.pretrained()``), its candidate graphs (:mod:`._candidates`) are reranked
  with a shuffle by posting (:mod:`._rerank`); then written in input order.
- A pipeline's shift guard applies as on one machine (:mod:`._guard`).

See ``docs/scaling.md`` for the design, the measured rates and a 100M-posting plan.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._pipeline_guard import shared_matches
from ._cluster import client_for, hash_bits, local_cluster, require_dask, write_csv
from ._kinds import DASK_COMBINERS, DASK_STEPS, combiner_check, step_kind

__all__ = ["DASK_COMBINERS", "DASK_STEPS", "cli_match", "local_cluster", "predict_dask"]

logger = logging.getLogger(__name__)

_METHODS = ("exact", "ivf", "cuml")

#: the share of the exact top-k candidates an IVF search of a reranked pipeline keeps
#: when ``n_probe`` is left to be chosen (label-free, measured on a sample of postings)
IVF_RECALL = 0.99
#: the dimensions a reranked pipeline's rows are projected to for the IVF cells (a
#: count sketch of TF-IDF rows: at 256 the cells followed the true neighbours less well)
IVF_DIM = 1024


def _check(pipeline: Any, method: str) -> tuple[list[Any], list[str], bool]:
    """``(steps, hash steps, reranked)`` of a pipeline that can run on Dask, or a clear
    error saying what cannot (what runs per class: :mod:`._kinds`' registries)."""
    pipeline.check_is_fitted()
    steps = pipeline.validated_steps()
    if method not in _METHODS:
        raise ValueError(f"`method` must be one of {_METHODS}, got {method!r}.")
    reranked = combiner_check(pipeline.combiner_, method)
    hash_steps = []
    for name, _, matcher in steps:
        if step_kind(name, matcher, reranked) == "hash":
            hash_steps.append(name)
        matcher.validate()
    return steps, hash_steps, reranked


def predict_dask(
    pipeline: Any,
    data: Any,
    *,
    client: Any = None,
    scheduler: str | None = None,
    image_dir: str | None = None,
    method: str = "exact",
    encoding: str | None = None,
    partition_rows: int | None = None,
    block_rows: int | None = None,
    hold_features: bool | None = None,
    n_cells: int | None = None,
    n_probe: int | None = None,
    cell_size: int = 2000,
    ivf_recall: float = IVF_RECALL,
    recall_sample: int = 0,
    random_state: int = 0,
    output: str | Path | None = None,
) -> Any:
    """The submission table ``posting_id, matches`` of a Dask DataFrame or CSV/Parquet glob.

    ``method``: ``"exact"`` (block pairs, equals ``pipeline.predict``), ``"ivf"`` (cells of
    about ``cell_size`` postings, each posting in its ``n_probe`` nearest; approximate) or
    ``"cuml"`` (GPU workers with ``cuml.dask``). ``recall_sample`` > 0 (IVF) measures the
    recall of search-step matches against exact search on that many random postings.
    ``n_probe=None``: 2 for a union of thresholded matches; for a reranked pipeline the
    fewest probes whose recall of the exact top-k candidates reaches ``ivf_recall``,
    measured without labels on a sample of postings (the trees were trained on exact
    candidate lists; a missed neighbour changes the features of the pairs it would have
    outranked), reported in ``stats["ivf_<step>"]``.
    Per-stage seconds and statistics are in ``result.attrs["shopee_match"]``.

    ``partition_rows``: the most postings a partition holds (default 100,000; 5,000 for
    a reranked pipeline: a task's pair features and subgraph took 3-3.5 GB at 11,000).
    ``block_rows``: a reranked pipeline's own rows one task features at once (default:
    as many as keep them and the halo rows they read near 40,000, so a task's memory
    stays bounded as the halo grows with the partitions). ``hold_features``: keep the
    pair features of a stacked reranker's blocks between its stages (``True``: faster,
    8 bytes a feature and pair held on the workers) or rebuild them at each stage
    (``False``: about twice the rerank's time, a few KB a posting held); ``None``: hold
    them when they take at most a quarter of the workers' memory limits together.

    A pipeline with ``shift_guard`` on is checked as :meth:`Pipeline.predict
    <shopee_match.Pipeline.predict>` checks a catalogue (the same sample of titles, the
    same warning); where the guard fires the shipped model runs on the same partitions
    and each posting keeps the matches both give (that run's statistics under
    ``"shift_guard"``).

    ``output``: write the submission CSV there instead (atomically, one partition at a
    time, so the client never holds the whole table) and return the statistics dict.

    >>> from shopee_match import make_catalog, Pipeline          # doctest: +SKIP
    >>> from distributed import Client, LocalCluster              # doctest: +SKIP
    >>> pipe = Pipeline.default(images=False).fit(make_catalog(50, images=False))  # doctest: +SKIP
    >>> with Client(LocalCluster(n_workers=2)) as c:              # doctest: +SKIP
    ...     sub = predict_dask(pipe, "postings-*.parquet", client=c)
    """
    require_dask()
    from ._guard import guard_model, split_frames
    from ._io import load_partitions, read_frame

    checked = _check(pipeline, method)
    given_rows = partition_rows
    if partition_rows is None:
        partition_rows = 5_000 if checked[2] else 100_000
    if partition_rows < 1:
        raise ValueError(f"`partition_rows` must be >= 1, got {partition_rows!r}.")
    if block_rows is not None and block_rows < 1:
        raise ValueError(f"`block_rows` must be >= 1 or None, got {block_rows!r}.")
    stats: dict[str, Any] = {"method": method, "timings": {}}
    opts = {"image_dir": image_dir, "method": method, "n_cells": n_cells, "n_probe": n_probe,
            "ivf_recall": ivf_recall,
            "cell_size": cell_size, "recall_sample": recall_sample,
            "random_state": random_state, "block_rows": block_rows,
            "hold_features": hold_features}
    with client_for(client, scheduler) as c:
        ddf = read_frame(data, encoding=encoding)
        frames = load_partitions(c, ddf, partition_rows)
        if not frames:
            empty = pd.DataFrame({"posting_id": pd.Series([], dtype=str),
                                  "matches": pd.Series([], dtype=str)})
            if output is not None:
                return write_csv(c, [c.scatter(empty)], output)
            return empty
        # the shift guard: on a catalogue unlike the model's, only the pairs the shipped
        # model keeps too, as Pipeline.predict does (both runs read the same partitions)
        general = guard_model(c, pipeline, frames, data)
        if general is None:
            tables = _tables(c, pipeline, checked, frames, opts, stats)
        else:
            general_checked = _check(general, method)
            if given_rows is None and general_checked[2]:
                frames = split_frames(c, frames, 5_000)
            tables = _tables(c, pipeline, checked, list(frames), opts, stats)
            stats["shift_guard"] = {"method": method, "timings": {}}
            theirs = _tables(c, general, general_checked, frames, opts, stats["shift_guard"])
            tables = [c.submit(shared_matches, a, b, pure=False) for a, b in zip(tables, theirs)]
        return _output(c, tables, output, stats)


def _tables(c: Any, pipeline: Any, checked: tuple[list[Any], list[str], bool],
            frames: list[Any], opts: dict[str, Any], stats: dict[str, Any]) -> list[Any]:
    """Futures of each partition's submission table (``posting_id, matches``) of
    ``pipeline``, run on the partitions ``frames`` (the list is emptied once they are
    embedded, so the cluster releases them)."""
    from distributed import as_completed, wait

    from ._io import embed_parts, nbytes, part_ids, part_step
    from ._ivf import ivf_edges
    from ._phash import hash_edges
    from ._recall import recall_finish, recall_start
    from ._reranked import fitted_on_partitions, reranked_edges
    from ._search import exact_edges

    steps, hash_steps, reranked = checked
    image_dir, method = opts["image_dir"], opts["method"]
    n_cells, n_probe, cell_size = opts["n_cells"], opts["n_probe"], opts["cell_size"]
    recall_sample, random_state = opts["recall_sample"], opts["random_state"]
    timings = stats["timings"]
    t0 = time.perf_counter()
    prepared = fitted_on_partitions(c, pipeline, frames, reranked, stats)
    pipe_future = prepared.pipe
    if reranked:
        cells = None if method == "exact" else {
            "n_cells": n_cells, "n_probe": n_probe, "cell_size": cell_size, "dim": IVF_DIM,
            "sample_size": 50_000, "seed": random_state, "recall": opts["ivf_recall"]}
        ids, offsets, edges = reranked_edges(c, pipeline, prepared, frames, steps,
                                             hash_steps, image_dir, stats, cells,
                                             block_rows=opts["block_rows"],
                                             hold_features=opts["hold_features"])
        frames.clear()
        return _assembled(c, ids, offsets, [edges], stats)
    parts, offsets = embed_parts(c, frames, pipe_future, image_dir, hash_steps,
                                 prepared.counted)
    wait(parts)
    frames.clear()
    del prepared
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
            n_bits = int(c.submit(hash_bits, rows[0], name, pure=False).result())
            e = hash_edges(c, rows, offsets, name, matcher, n_bits=n_bits)
            wait(e)
        elif method == "exact":
            e = exact_edges(c, rows, offsets, name, matcher)
            wait(e)
        elif method == "cuml":
            from ._cuml import cuml_edges

            e = cuml_edges(c, rows, offsets, name, matcher)
            wait(e)
        else:
            check = (recall_start(c, rows, offsets, name, matcher, recall_sample,
                                  random_state) if recall_sample > 0 else None)
            e, ivf = ivf_edges(
                c, rows, offsets, name, matcher, n_cells=n_cells,
                n_probe=2 if n_probe is None else n_probe,
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
                stats[f"recall_{name}"] = recall_finish(c, offsets, e, int(matcher.k),
                                                        *check)
        edges.append(e)
        timings[f"search_{name}"] = time.perf_counter() - t0
        logger.info("step %s searched in %.1f s", name, timings[f"search_{name}"])
    stats.setdefault("n_partitions", len(ids))
    return _assembled(c, ids, offsets, edges, stats)


def _assembled(c: Any, ids: list[Any], offsets: np.ndarray, edges: list[Any],
               stats: dict[str, Any]) -> list[Any]:
    """Futures of each partition's submission table from each step's edges."""
    from ._io import assemble

    t0 = time.perf_counter()
    tables = assemble(c, ids, offsets, *edges)
    stats["timings"]["assemble"] = time.perf_counter() - t0
    return tables


def _output(c: Any, tables: list[Any], output: str | Path | None,
            stats: dict[str, Any]) -> Any:
    """The submission table, or with ``output`` the written file's statistics."""
    t0 = time.perf_counter()
    if output is not None:
        stats.update(write_csv(c, tables, output))
        stats["timings"]["assemble_write"] = time.perf_counter() - t0
        return stats
    out = pd.concat(c.gather(tables), ignore_index=True)
    stats["timings"]["assemble"] += time.perf_counter() - t0
    out.attrs["shopee_match"] = stats
    return out


def cli_match(args: Any, verbose: bool) -> int:
    """``shopee-match match --scheduler ADDRESS|local:N``: write the submission CSV.

    >>> import argparse                                            # doctest: +SKIP
    >>> args = argparse.Namespace(postings="p-*.csv", images=None, encoding=None,
    ...     model="model/", output="sub.csv", scheduler="local:2", quiet=True)  # doctest: +SKIP
    >>> cli_match(args, verbose=False)                             # doctest: +SKIP
    0
    """
    from ..pipeline import Pipeline

    require_dask()
    # no --model: the shipped pretrained model (fitting one would need every posting on
    # one machine; the shipped one learns its vocabulary by a pass over the partitions)
    pipe = Pipeline.load(args.model) if args.model else Pipeline.pretrained()
    pipe.set_params(verbose=False, shift_guard=not getattr(args, "no_shift_guard", False))
    method = getattr(args, "method", None) or "exact"
    stats = predict_dask(pipe, args.postings, scheduler=args.scheduler, image_dir=args.images,
                         encoding=args.encoding, method=method, output=args.output)
    print(f"wrote {stats['n_written']} postings to {args.output} (mean "
          f"{stats['mean_matches']:.2f} matches each; {stats.get('n_partitions', 0)} "
          f"partitions on Dask, method {method})")
    return 0
