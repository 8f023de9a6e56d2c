"""The evaluation figures of :func:`~shopee_match.plots.evaluation_plots`.

Threshold-F1 curves per step, and the worst false and missed matches: which pairs, each
step's similarity of them, and the figures showing them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import scipy.sparse as sp

from ._plot_base import figure, image_paths, text_tile, thumbnail, tile
from .data import Postings
from .metrics import graph_f1_scores

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "missed_pairs",
    "pair_similarities",
    "pairs_figure",
    "step_threshold",
    "threshold_curve",
    "threshold_figure",
    "worst_pairs",
]

#: Most pairs scored when looking for the worst missed matches (sampled beyond that).
_MAX_PAIRS = 200_000


def step_threshold(pipe: Any, name: str, matcher: Any) -> float:
    """The similarity threshold ``matcher`` applies now (set by tuning, or by hand)."""
    if hasattr(matcher, "similarity_threshold"):
        return float(matcher.similarity_threshold())
    tuned = getattr(pipe, "tuning_", {}).get("thresholds", {})
    return float(tuned.get(name, getattr(matcher, "threshold", np.nan)))


def worst_pairs(pairs: np.ndarray, sims: Mapping[str, np.ndarray],
                thresholds: Mapping[str, float], groups: np.ndarray, worst: str,
                n: int) -> np.ndarray:
    """Row positions of the ``n`` worst pairs, one per group (pair of groups for ``high``).

    A pair's margin is its best step's similarity minus that step's threshold: false
    matches are worst when it is highest, missed matches when it is lowest.
    """
    if not len(pairs):
        return np.empty(0, dtype=np.intp)
    margin = np.max([sims[s] - thresholds[s] for s in sims], axis=0)
    order = np.argsort(-margin if worst == "high" else margin, kind="stable")
    a, b = groups[pairs[order, 0]], groups[pairs[order, 1]]
    if worst == "high":
        key = np.minimum(a, b).astype(np.int64) * (int(groups.max()) + 1) + np.maximum(a, b)
    else:
        key = a
    _, first = np.unique(key, return_index=True)
    return order[np.sort(first)][:n]


def threshold_curve(matcher: Any, emb: Any, groups: np.ndarray) -> dict[str, list[float]]:
    """Mean F1 of ``matcher`` alone over its tuning grid, on these postings."""
    from .tuning import loosest_candidates, threshold_grid

    cand = loosest_candidates(matcher, emb)
    grid = threshold_grid(matcher)
    f1 = [float(graph_f1_scores(matcher.select(cand, threshold=float(t)), groups).mean())
          for t in grid]
    return {"threshold": [float(t) for t in grid], "f1": f1}


def threshold_figure(curves: Mapping[str, Mapping[str, Sequence[float]]],
                     thresholds: Mapping[str, float], source: str) -> Figure:
    """One panel per step: mean F1 against similarity threshold, the chosen one marked."""
    names = list(curves)
    ncols = min(3, len(names))
    nrows = -(-len(names) // ncols)
    fig = figure(4.2 * ncols + 0.4, 3.4 * nrows + 0.6)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, name in zip(axes, names, strict=False):
        t = np.asarray(curves[name]["threshold"], dtype=float)
        f = np.asarray(curves[name]["f1"], dtype=float)
        ax.plot(t, f, color="tab:blue", lw=1.6)
        chosen = thresholds.get(name, np.nan)
        if np.isfinite(chosen) and len(t):
            at = float(f[int(np.argmin(np.abs(t - chosen)))])
            ax.axvline(chosen, color="tab:red", ls="--", lw=1.1)
            ax.plot([chosen], [at], "o", color="tab:red",
                    label=f"chosen {chosen:.3f}: F1 {at:.3f}")
            ax.legend(fontsize=8, loc="lower center")
        if len(f):
            best = int(np.argmax(f))
            ax.set_title(f"{name}: best F1 {f[best]:.3f} at {t[best]:.3f}", fontsize=10)
        ax.set_xlabel("similarity threshold")
        ax.set_ylabel("mean F1 (step alone)")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    for ax in axes[len(names):]:
        ax.axis("off")
    fig.suptitle(f"Threshold vs F1 per step, {source}", fontsize=11)
    return fig


def missed_pairs(groups: np.ndarray, linked: sp.coo_matrix) -> np.ndarray:
    """Same-group pairs ``(i, j)``, ``i < j``, not linked (sampled past ``_MAX_PAIRS``)."""
    order = np.argsort(groups, kind="stable")
    bounds = np.flatnonzero(np.diff(groups[order])) + 1
    chunks = []
    for members in np.split(order, bounds):
        if len(members) > 1:
            a, b = np.triu_indices(len(members), k=1)
            chunks.append(np.stack([members[a], members[b]], axis=1))
    if not chunks:
        return np.empty((0, 2), dtype=np.intp)
    pairs = np.concatenate(chunks)
    lo, hi = np.minimum(pairs[:, 0], pairs[:, 1]), np.maximum(pairs[:, 0], pairs[:, 1])
    pairs = np.stack([lo, hi], axis=1)
    n = len(groups)
    have = linked.row.astype(np.int64) * n + linked.col
    missed = pairs[~np.isin(pairs[:, 0].astype(np.int64) * n + pairs[:, 1], have)]
    if len(missed) > _MAX_PAIRS:
        rng = np.random.default_rng(0)
        missed = missed[np.sort(rng.choice(len(missed), _MAX_PAIRS, replace=False))]
    return missed


def pair_similarities(embs: Mapping[str, Any], pairs: np.ndarray,
                      chunk: int = 4096) -> dict[str, np.ndarray]:
    """Each step's cosine similarity (row dot product) for every pair."""
    out: dict[str, np.ndarray] = {}
    for name, x in embs.items():
        x = sp.csr_matrix(x) if sp.issparse(x) else np.asarray(x)
        sims = np.empty(len(pairs), dtype=np.float32)
        for s in range(0, len(pairs), chunk):
            i, j = pairs[s:s + chunk, 0], pairs[s:s + chunk, 1]
            if sp.issparse(x):
                sims[s:s + chunk] = np.asarray(x[i].multiply(x[j]).sum(axis=1)).ravel()
            else:
                sims[s:s + chunk] = np.einsum("ij,ij->i", x[i], x[j])
        out[name] = sims
    return out


def pairs_figure(postings: Postings, pairs: np.ndarray, sims: Mapping[str, np.ndarray],
                 thresholds: Mapping[str, float], head: str) -> Figure:
    """The given pairs side by side with each step's similarity (``head`` if none)."""
    if len(pairs) == 0:
        fig = figure(6, 1.2)
        fig.text(0.5, 0.5, head, ha="center", va="center", fontsize=11)
        return fig
    paths = image_paths(postings)
    titles = postings.titles if postings.has_titles else list(postings.posting_id)
    labels = postings.df["label_group"].astype(str).tolist()
    ids = postings.posting_id
    per_row = 2
    nrows = -(-len(pairs) // per_row)
    height = 3.4 if paths is not None else 1.5
    fig = figure(10.5, height * nrows + 0.5)
    subfigs = cast("np.ndarray", fig.subfigures(nrows, per_row, squeeze=False)).ravel()
    for k, sub in enumerate(subfigs):
        if k >= len(pairs):
            continue
        sub.set_facecolor("0.97")
        axes = sub.subplots(1, 2)
        for ax, i in zip(axes, pairs[k], strict=True):
            if paths is not None:
                tile(ax, thumbnail(paths[i]), titles[i], width=26)
            else:
                text_tile(ax, titles[i])
            ax.set_title(f"{ids[i]}  (group {labels[i]})", fontsize=7, color="0.3",
                         parse_math=False)
        desc = ",  ".join(
            f"{s} {float(v[k]):.2f}" + ("*" if float(v[k]) >= thresholds[s] - 1e-6 else "")
            for s, v in sims.items()
        )
        sub.suptitle(f"similarity: {desc}", fontsize=9)
    limits = ",  ".join(f"{s} {t:.2f}" for s, t in thresholds.items())
    fig.suptitle(f"{head}\nthresholds: {limits}   (* = at or above the step's threshold)",
                 fontsize=11)
    return fig
