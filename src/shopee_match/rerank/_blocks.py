"""Scoring candidate pairs a block of query postings at a time, in bounded memory.

The unit of work is a block of rows (query postings): the candidate pairs whose first
posting is in the block are featured (:class:`~shopee_match.rerank.pair_features.PairContext`,
built once per catalogue), scored by a stage's trees and dropped. Between blocks only
one float32 per candidate pair lives (the stage's probability), which the next stage's
neighbourhood features read as a graph. Every block gives the values one block of the
whole catalogue would: a pair's features depend on the two postings' rows of the
candidate graphs, never on which other pairs share its block.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from ..neighbors.graph import keep_entries, row_blocks, symmetric_graph, transposed_positions
from .pair_features import GraphContext, PairContext, pair_pattern

__all__ = ["BYTES_PER_PAIR", "row_blocks", "score_blocks"]

#: peak bytes one candidate pair of a block costs while it is featured and scored
#: (measured on the shipped model's 95 features: the feature matrix, its columns and the
#: sparse row gathers of the title features); sets a block's size from a memory budget
BYTES_PER_PAIR = 4096


def score_blocks(
    cands: Mapping[str, sp.spmatrix],
    titles: Sequence[str] | None,
    boosters: Sequence[Any],
    proba: Callable[[Any, np.ndarray], np.ndarray],
    feature_names: Sequence[str],
    *,
    block_rows: int | None = None,
    max_pairs: int | Callable[[], int] | None = None,
    n_jobs: int | None = None,
    verbose: bool = False,
    keep: Callable[[Sequence[GraphContext], np.ndarray, np.ndarray], np.ndarray | None]
    | None = None,
) -> sp.csr_matrix:
    """The last stage's symmetric probability graph of every candidate pair, scored
    block by block (see the module's docstring).

    ``boosters``: one model per stage; ``proba(model, x)`` its P(match) of rows ``x``;
    ``feature_names``: the features the models were fitted on (checked against the
    features computed here). Memory: the candidate graphs' contexts (O(stored pairs))
    plus one block's features (``max_pairs`` * :data:`BYTES_PER_PAIR`). ``max_pairs`` may
    be a function, asked once the contexts are built (what a memory budget leaves then).

    ``keep(graphs, rows, cols)``: a prefilter (each modality's context, pairs -> whether
    the pair is scored); the pairs it drops are left out of every stage (probability 0,
    not stored). It must be symmetric in the pair, so the kept pattern stays symmetric.
    """
    pattern = pair_pattern(cands)
    n = pattern.shape[0]
    ctx = PairContext(cands, titles, n_jobs)
    if keep is not None:
        pattern = _kept(pattern, ctx, keep, max_pairs() if callable(max_pairs) else max_pairs)
    indptr, indices = pattern.indptr, pattern.indices
    back = transposed_positions(pattern) if len(boosters) else np.empty(0, dtype=np.int64)
    blocks = row_blocks(indptr, block_rows, max_pairs() if callable(max_pairs) else max_pairs)
    stages: list[GraphContext] = []
    # one block: its base features are kept for the later stages, not recomputed
    cached: list[np.ndarray] | None = [] if len(blocks) == 1 else None
    out = sp.csr_matrix((n, n), dtype=np.float32)
    for stage, booster in enumerate(boosters):
        p = np.empty(pattern.nnz, dtype=np.float64)
        bar = tqdm(blocks, desc=f"pairs, stage {stage + 1}", unit="block",
                   disable=not verbose or len(blocks) < 2)
        for b, (lo, hi) in enumerate(bar):
            a, z = int(indptr[lo]), int(indptr[hi])
            rows = np.repeat(np.arange(lo, hi, dtype=np.int64), np.diff(indptr[lo:hi + 1]))
            cols = indices[a:z].astype(np.int64)
            if cached is not None and stage:
                base = cached[b]
            else:
                base, names = ctx.features(rows, cols)
                if stage == 0 and b == 0:
                    _check_names(names, feature_names)
                if cached is not None:
                    cached.append(base)
            x = np.hstack([base, *(s.matrix(rows, cols, prefix=f"stage{t + 1}__")[0]
                                   for t, s in enumerate(stages))]) if stages else base
            del base
            p[a:z] = proba(booster, x) if len(rows) else np.empty(0)
            del x
        out = symmetric_graph(sp.csr_matrix((p, pattern.indices, pattern.indptr),
                                            shape=pattern.shape), back)
        if stage < len(boosters) - 1:
            stages.append(GraphContext(out))
    return out


def _kept(pattern: sp.csr_matrix, ctx: PairContext,
          keep: Callable[[Sequence[GraphContext], np.ndarray, np.ndarray], np.ndarray | None],
          max_pairs: int | None) -> sp.csr_matrix:
    """The pairs of ``pattern`` that ``keep`` keeps, as a canonical pattern; the pairs
    are judged a block at a time (``max_pairs``), each on its own, so the blocks never
    change which are kept."""
    indptr, indices = pattern.indptr, pattern.indices
    mask = np.zeros(pattern.nnz, dtype=bool)
    for lo, hi in row_blocks(indptr, None, max_pairs):
        a, z = int(indptr[lo]), int(indptr[hi])
        rows = np.repeat(np.arange(lo, hi, dtype=np.int64), np.diff(indptr[lo:hi + 1]))
        k = keep(ctx.graphs, rows, indices[a:z].astype(np.int64))
        if k is None:
            return pattern
        mask[a:z] = k
    out = keep_entries(pattern, mask)
    out.has_canonical_format = True
    return out


def _check_names(names: Sequence[str], fitted: Sequence[str]) -> None:
    if list(fitted[:len(names)]) != list(names):
        raise ValueError(
            "This PairReranker was fitted on other pair features than this shopee_match "
            "computes (a model saved by another version); refit it with this version, "
            "e.g. `shopee-match fit TRAIN.csv -o MODEL_DIR`."
        )
