"""The labelling queue: the candidate pairs whose answers teach the cut the most.

Half the queue is drawn near the cut (where an answer can move it), the rest across the
other probability ranges (so the calibration sees the whole curve), each stratum spread
over as many match sets as it holds before any set is drawn twice. Every queued pair
records its stratum and its weight (candidate pairs of the stratum per queued pair): the
inverse of how often the queue sampled its kind. The queue samples by probability alone,
so calibration reads P(same | probability) from the answers as they are and sums the F1
it predicts over every candidate pair (each stratum with its share of the catalogue).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..calibration import STRATA, pair_strata
from .explain import PairScores

__all__ = ["QUEUE_SHARES", "review_queue"]

#: share of the queue drawn from each stratum (``unlikely``, ``below``, ``near``, ``above``)
QUEUE_SHARES = (0.1, 0.2, 0.5, 0.2)


def _allocate(sizes: np.ndarray, n: int) -> np.ndarray:
    """Pairs to draw per stratum: the shares of ``n``, capped by what a stratum holds,
    the rest handed to strata that have more."""
    want = np.floor(np.asarray(QUEUE_SHARES) * n).astype(int)
    want[int(np.argmax(QUEUE_SHARES))] += n - int(want.sum())
    take = np.minimum(want, sizes)
    while take.sum() < min(n, sizes.sum()):
        room = sizes - take
        take[int(np.argmax(room))] += 1
    return take


def review_queue(scores: PairScores, n: int = 200, random_state: int | None = 0) -> pd.DataFrame:
    """``n`` candidate pairs to label, as ``left, right`` (row positions), ``left_id,
    right_id, probability, stratum, weight``; near-cut pairs first.

    >>> from shopee_match import Pipeline, make_catalog
    >>> from shopee_match.review import score_pairs
    >>> q = review_queue(score_pairs(Pipeline.pretrained(),
    ...                              make_catalog(n_groups=40, images=False, seed=0)), n=20)
    >>> len(q), sorted(set(q.stratum)) <= sorted(STRATA)
    (20, True)
    """
    if n < 0:
        raise ValueError(f"the queue's size must be >= 0, got {n}.")
    left, right = scores.pairs(kept=None)
    p = scores.probability(left, right)
    strata = pair_strata(p, scores.threshold)
    sizes = np.bincount(strata, minlength=len(STRATA))
    take = _allocate(sizes, n)
    group = scores.groups()
    rng = np.random.default_rng(random_state)
    chosen, weight = [], []
    for s in np.argsort(-np.asarray(QUEUE_SHARES), kind="stable"):  # near first
        if take[s] == 0:
            continue
        rows = rng.permutation(np.flatnonzero(strata == s))
        # spread over match sets: a pair's turn is the later of its two sets' turns
        gl, gr = group[left[rows]], group[right[rows]]
        turn = np.maximum(pd.Series(gl).groupby(gl).cumcount().to_numpy(),
                          pd.Series(gr).groupby(gr).cumcount().to_numpy())
        picked = rows[np.argsort(turn, kind="stable")[:take[s]]]
        chosen.append(picked)
        weight.append(np.full(len(picked), sizes[s] / take[s]))
    idx = np.concatenate(chosen) if chosen else np.empty(0, np.int64)
    ids = scores.postings.posting_id.astype(str)
    return pd.DataFrame({
        "left": left[idx], "right": right[idx],
        "left_id": ids[left[idx]], "right_id": ids[right[idx]],
        "probability": p[idx], "stratum": [STRATA[i] for i in strata[idx]],
        "weight": np.concatenate(weight) if weight else np.empty(0),
    })
