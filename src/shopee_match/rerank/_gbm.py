"""The reranker's gradient-boosted trees: LightGBM parameters, fitting and prediction."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._io import lightgbm

__all__ = ["fit", "lightgbm", "params", "proba"]


def params(rr: Any) -> dict[str, Any]:
    """LightGBM training parameters of PairReranker ``rr`` (one thread: a stage's models
    train side by side instead, so the trees never depend on the thread count)."""
    return {
        "objective": "binary", "num_leaves": int(rr.max_leaf_nodes),
        "learning_rate": float(rr.learning_rate),
        "min_data_in_leaf": int(rr.min_samples_leaf),
        "lambda_l2": float(rr.l2_regularization), "max_bin": 255,
        "deterministic": True, "force_row_wise": True,
        "seed": 0 if rr.random_state is None else int(rr.random_state),
        "num_threads": 1, "verbosity": -1,
    }


def fit(rr: Any, xs: list[np.ndarray], ys: list[np.ndarray]) -> Any:
    """A booster fitted on the blocks' rows ``xs`` (float, NaN = missing) and labels
    ``ys``; the blocks are read as they are, never stacked into one copy."""
    if sum(len(y) for y in ys) == 0:
        raise ValueError(
            "a tuning fold has no candidate pairs to learn from (too few postings, or titles "
            "with no words in common); give more labelled postings, or use fewer folds."
        )
    lgb = lightgbm()
    p = params(rr)
    data = lgb.Dataset(xs, label=np.concatenate(ys),
                       params={"max_bin": p["max_bin"], "verbosity": -1}, free_raw_data=True)
    return lgb.train(p, data, num_boost_round=int(rr.max_iter))


def proba(rr: Any, booster: Any, x: np.ndarray) -> np.ndarray:
    """P(match) of rows ``x`` (LightGBM's native predictor on ``rr.n_jobs`` threads;
    ``None``: OpenMP's default, every core)."""
    threads = 0 if rr.n_jobs is None else int(rr.n_jobs)
    return np.asarray(booster.predict(x, num_threads=threads), dtype=np.float64)
