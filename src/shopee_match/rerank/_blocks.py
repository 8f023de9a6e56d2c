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

from ..neighbors.graph import keep_entries
from .pair_features import GraphContext, PairContext, pair_pattern

__all__ = ["BYTES_PER_PAIR", "row_blocks", "score_blocks"]

#: peak bytes one candidate pair of a block costs while it is featured and scored
#: (measured on the shipped model's 95 features: the feature matrix, its columns and the
#: sparse row gathers of the title features); sets a block's size from a memory budget
BYTES_PER_PAIR = 4096


def row_blocks(indptr: np.ndarray, block_rows: int | None = None,
               max_pairs: int | None = None) -> list[tuple[int, int]]:
    """Consecutive row ranges ``[lo, hi)`` of at most ``block_rows`` rows and (unless a
    single row has more) ``max_pairs`` stored pairs; one range when both are ``None``.

    >>> row_blocks(np.array([0, 3, 3, 8, 9]), max_pairs=4)
    [(0, 2), (2, 3), (3, 4)]
    >>> row_blocks(np.array([0, 3, 3, 8, 9]), block_rows=3)
    [(0, 3), (3, 4)]
    """
    n = len(indptr) - 1
    if n <= 0:
        return []
    step = n if block_rows is None else max(1, int(block_rows))
    out = []
    lo = 0
    while lo < n:
        hi = min(n, lo + step)
        if max_pairs is not None:
            # the last row whose end stays within the block's pair allowance
            fit = int(np.searchsorted(indptr, indptr[lo] + max(1, int(max_pairs)), side="right")) - 1
            hi = max(lo + 1, min(hi, fit))
        out.append((lo, hi))
        lo = hi
    return out


def _transposed(pattern: sp.csr_matrix) -> np.ndarray:
    """For each stored pair ``(i, j)`` of a symmetric canonical pattern, the position of
    ``(j, i)``: column ``j`` of the pattern's CSC form lists the pairs ``(i, j)`` in the
    order row ``j`` lists ``(j, i)``."""
    nnz = pattern.nnz
    pos = np.arange(nnz, dtype=np.int32 if nnz < 2**31 else np.int64)
    return sp.csr_matrix((pos, pattern.indices, pattern.indptr), shape=pattern.shape).tocsc().data


def _symmetric(p: np.ndarray, pattern: sp.csr_matrix, back: np.ndarray,
               chunk: int = 1 << 22) -> sp.csr_matrix:
    """Graph of the mean of P(i, j) and P(j, i) over a symmetric pattern (``back``:
    :func:`_transposed`), as :func:`~shopee_match.rerank.symmetric_graph` makes it
    (float64 sums, float32 means, pairs whose sum is 0 left out), ``chunk`` pairs at a time."""
    out = np.empty(len(p), dtype=np.float32)
    zero = False
    for s in range(0, len(p), chunk):
        total = p[s:s + chunk] + p[back[s:s + chunk]]
        zero = zero or not total.all()
        out[s:s + chunk] = total * 0.5
    g = sp.csr_matrix((out, pattern.indices, pattern.indptr), shape=pattern.shape)
    if zero:  # as a sparse sum drops them (on copies: the pattern's arrays are shared)
        g = sp.csr_matrix((out, pattern.indices.copy(), pattern.indptr.copy()), shape=pattern.shape)
        g.eliminate_zeros()
    g.has_canonical_format = True
    return g


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
    back = _transposed(pattern) if len(boosters) else np.empty(0, dtype=np.int64)
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
        out = _symmetric(p, pattern, back)
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
