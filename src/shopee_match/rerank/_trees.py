"""Gradient-boosted trees as plain arrays: saved without pickle, evaluated with NumPy.

A fitted binary :class:`~sklearn.ensemble.HistGradientBoostingClassifier` is flattened
into node arrays (``.npz``-ready); :func:`predict_numpy` walks them and equals
scikit-learn's ``predict_proba`` (tested to 1e-6).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["NODE_FIELDS", "predict_numpy", "tree_arrays"]

NODE_FIELDS = ("value", "feature_idx", "num_threshold", "missing_go_to_left", "left",
                "right", "is_leaf")


def tree_arrays(clf: Any) -> dict[str, np.ndarray]:
    """A fitted binary HistGradientBoostingClassifier's trees as flat node arrays."""
    if clf.n_trees_per_iteration_ != 1:  # pragma: no cover - binary target
        raise RuntimeError("PairReranker expects a binary classifier.")
    nodes = [pred[0].nodes for pred in clf._predictors]
    if any(bool(nd["is_categorical"].any()) for nd in nodes):  # pragma: no cover
        raise RuntimeError("categorical splits are not supported.")
    sizes = np.array([len(nd) for nd in nodes], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    flat = np.concatenate(nodes)
    trees = {f: np.asarray(flat[f]) for f in NODE_FIELDS}
    for side in ("left", "right"):
        trees[side] = trees[side].astype(np.int64) + np.repeat(offsets, sizes)
    trees["roots"] = offsets
    trees["baseline"] = np.asarray(clf._baseline_prediction, dtype=np.float64).ravel()
    trees["max_depth"] = np.array([max(int(nd["depth"].max()) for nd in nodes)])
    return trees


def predict_numpy(t: dict[str, np.ndarray], x: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """scikit-learn's HistGradientBoosting probability, from the stored node arrays."""
    leaf = t["is_leaf"].astype(bool)
    left = np.where(leaf, np.arange(len(leaf)), t["left"])
    right = np.where(leaf, np.arange(len(leaf)), t["right"])
    feat = np.where(leaf, 0, t["feature_idx"]).astype(np.intp)
    thr, mleft = t["num_threshold"], t["missing_go_to_left"].astype(bool)
    raw = np.empty(len(x))
    for s in range(0, len(x), chunk):
        xb = x[s:s + chunk]
        node = np.broadcast_to(t["roots"], (len(xb), len(t["roots"]))).copy()
        rows = np.arange(len(xb))[:, None]
        for _ in range(int(t["max_depth"][0])):
            v = xb[rows, feat[node]]
            go_left = np.where(np.isnan(v), mleft[node], v <= thr[node])
            node = np.where(go_left, left[node], right[node])
        raw[s:s + chunk] = t["value"][node].sum(axis=1) + t["baseline"][0]
    return 1.0 / (1.0 + np.exp(-raw))
