"""The stages of a distributed run that the union and the reranked paths add to search:
the catalogue-wide counting pass, and the reranked path's candidates and reranking."""

from __future__ import annotations

import copy
import time
from collections import Counter
from typing import Any, NamedTuple

import numpy as np

from ._tfidf import (
    Counts,
    _predict_fitted,
    count_terms,
    fit_predict_tfidf,
    frame_titles,
    frame_tokens,
    merge_counts,
    partition_counts,
)

__all__ = ["Prepared", "fitted_on_partitions", "reranked_edges"]


def _catalogue_df(counts: Counts) -> tuple[dict[str, int], int] | None:
    """The title tokens' document counts (tokens in one title left out: a token the
    reranker reads is in at least one title), and the number of postings."""
    titles: Counter[str] | None = counts.get("titles")
    if titles is None:
        return None
    return {t: d for t, d in titles.items() if d > 1}, int(counts["n"])


def _one_tree_thread(pipeline: Any) -> Any:
    """The pipeline as workers get it: its reranker's trees on one thread per task
    (a worker runs several tasks at once; ``n_jobs=None`` would give each every core)."""
    rr = getattr(pipeline, "combiner_", None)
    if rr is None or not hasattr(rr, "n_jobs") or rr.n_jobs == 1:
        return pipeline
    out = copy.copy(pipeline)
    out.combiner_ = copy.copy(rr)
    out.combiner_.n_jobs = 1
    return out


class Prepared(NamedTuple):
    """What the counting pass leaves for the rest of a run (:func:`fitted_on_partitions`)."""

    pipe: Any  #: future of the pipeline as every worker uses it
    cat: Any  #: future of the title tokens' catalogue counts (``None``: no titles read)
    tokens: list[Any] | None  #: each partition's title tokens (futures), or ``None``
    counted: list[Any] | None  #: each partition's count matrices (futures), or ``None``


def fitted_on_partitions(c: Any, pipeline: Any, frames: list[Any], reranked: bool,
                         stats: dict[str, Any]) -> Prepared:
    """The pipeline as every worker will use it, scattered once (its ``fit_on="predict"``
    TF-IDF embedders fitted on all the partitions by one counting pass, when it has
    any), with what that pass computed per partition for later: the title tokens (for
    the reranker's title features; tokenized once for the pass and the reranker) and the
    count matrices (:func:`._tfidf.partition_counts`, embedded from without counting
    again)."""
    from distributed import wait

    from ._search import tree_reduce

    rr = pipeline.combiner_
    from ._selftrain import self_trains

    # titles and their catalogue counts: for the title features and for self-training
    uses_titles = reranked and (bool(getattr(rr, "uses_titles_", False) and rr.use_titles)
                                or self_trains(rr))
    pipe_future = c.scatter(_one_tree_thread(pipeline), broadcast=True, hash=False)
    if not (_predict_fitted(pipeline) or uses_titles):
        return Prepared(pipe_future, None, None, None)
    t0 = time.perf_counter()
    tokens = [c.submit(frame_tokens, f, pure=False) for f in frames] if uses_titles else None
    counted = [c.submit(partition_counts, f, pipe_future, pure=False) for f in frames]
    counts = [c.submit(count_terms, f, pipe_future, False if tokens is None else tokens[a],
                       counted[a], pure=False) for a, f in enumerate(frames)]
    merged = tree_reduce(c, counts, merge_counts)
    cat = c.submit(_catalogue_df, merged, pure=False) if uses_titles else None
    if _predict_fitted(pipeline):
        fitted = c.submit(fit_predict_tfidf, pipe_future, merged, pure=False)
        wait([fitted])
        c.replicate([fitted])  # every worker holds one copy, as a broadcast scatter
        pipe_future = fitted
    if cat is not None:
        wait([cat])
    stats["timings"]["vocabulary"] = time.perf_counter() - t0
    return Prepared(pipe_future, cat, tokens, counted if _predict_fitted(pipeline) else None)


def reranked_edges(
    c: Any, pipeline: Any, prepared: Prepared, frames: list[Any], steps: list[Any],
    hash_steps: list[str], image_dir: str | None, stats: dict[str, Any],
    ivf: dict[str, Any] | None = None, block_rows: int | None = None,
    hold_features: bool | None = None,
) -> tuple[list[Any], np.ndarray, list[Any]]:
    """``(ids, offsets, edges)`` of a pipeline whose ensemble is a fitted PairReranker:
    embed, build each step's candidate graph (``ivf``: in IVF cells), rerank (see
    :mod:`._rerank`); ``prepared``: from :func:`fitted_on_partitions`."""
    from distributed import wait

    from ..tuning import MAX_TUNED_RADIUS
    from ._candidates import candidate_rows
    from ._io import embed_parts, part_ids
    from ._rerank import rerank_edges
    from ._selftrain import self_trains

    timings = stats["timings"]
    rr = pipeline.combiner_
    t0 = time.perf_counter()
    pipe_future, cat, tokens = prepared.pipe, prepared.cat, prepared.tokens
    parts, offsets = embed_parts(c, frames, pipe_future, image_dir, hash_steps,
                                 prepared.counted)
    wait(parts)
    ids = [c.submit(part_ids, p, pure=False) for p in parts]
    if cat is not None and tokens is None:
        tokens = [c.submit(frame_tokens, f, pure=False) for f in frames]
    titles = tokens if cat is not None else None
    # self-training reads the titles themselves (its own words, codes out)
    raw = ([c.submit(frame_titles, f, pure=False) for f in frames]
           if cat is not None and self_trains(rr) else None)
    timings["embed"] = time.perf_counter() - t0
    stats.update(n_postings=int(offsets[-1]), n_partitions=len(parts))
    t0 = time.perf_counter()
    cands = candidate_rows(c, parts, offsets, steps, hash_steps, MAX_TUNED_RADIUS, stats, ivf)
    wait([f for fs in cands.values() for f in fs])
    del parts
    timings["candidates"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    edges = rerank_edges(c, pipe_future, rr, cands, titles, offsets, cat, stats, raw,
                         block_rows=block_rows, hold_features=hold_features)
    wait(edges)
    timings["rerank"] = time.perf_counter() - t0
    return ids, offsets, edges
