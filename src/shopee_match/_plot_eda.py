"""The EDA figures of :func:`~shopee_match.plots.eda_plots`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import numpy as np

from ._plot_base import figure, image_paths, thumbnail, tile, wrap
from .data import Postings

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["group_images", "largest_groups", "title_lengths"]

#: Largest groups searched for ones with image files, for the EDA image grid.
_SCAN_GROUPS = 2000


def largest_groups(postings: Postings, top: int) -> Figure:
    """Bar chart of the ``top`` largest label groups, each with its first title."""
    labels = postings.df["label_group"]
    counts = labels.value_counts(sort=True)
    shown = counts.iloc[:top][::-1]
    if postings.has_titles:
        first_title = postings.df.groupby("label_group", sort=False)["title"].first()
        names = [f"{g}  ·  {wrap(first_title[g], 40, 1)}" for g in shown.index]
    else:  # an image-only catalogue
        names = [str(g) for g in shown.index]
    fig = figure(10, max(3.0, 0.32 * len(shown) + 1.4))
    ax = fig.add_subplot()
    bars = ax.barh(range(len(shown)), shown.to_numpy(), color="tab:blue")
    ax.set_yticks(range(len(shown)), names, fontsize=8)
    for label in ax.get_yticklabels():
        label.set_parse_math(False)
    ax.bar_label(bars, padding=2, fontsize=8)
    ax.set_xlabel("postings in the group")
    ax.margins(x=0.08)
    ax.set_title(f"Largest label groups: {len(counts)} groups, {len(postings)} postings, "
                 f"median size {int(counts.median())}", fontsize=11)
    return fig


def title_lengths(postings: Postings) -> Figure:
    """Histograms of title length in characters and in words, medians marked."""
    titles = postings.df["title"].astype(str)
    chars = titles.str.len().to_numpy()
    words = np.array([len(t.split()) for t in titles])
    fig = figure(10, 3.8)
    axes = fig.subplots(1, 2)
    for ax, values, unit in ((axes[0], chars, "characters"), (axes[1], words, "words")):
        bins = min(50, max(5, int(values.max() - values.min()) + 1))
        ax.hist(values, bins=bins, color="tab:blue", alpha=0.8)
        med = float(np.median(values))
        ax.axvline(med, color="tab:red", ls="--", lw=1.2, label=f"median {med:g}")
        ax.set_xlabel(f"title length ({unit})")
        ax.set_ylabel("postings")
        ax.legend(fontsize=8)
    fig.suptitle(f"Title lengths of {len(postings)} postings", fontsize=11)
    return fig


def group_images(postings: Postings, n_groups: int, per_group: int) -> Figure:
    """Image tiles of the largest groups with image files (the first postings unlabelled)."""
    paths = image_paths(postings)
    assert paths is not None
    titles = postings.titles if postings.has_titles else list(postings.posting_id)
    rows: list[tuple[str, np.ndarray]] = []
    if postings.has_labels:
        by_group = postings.df.groupby("label_group", sort=False).indices
        order = postings.df["label_group"].value_counts(sort=True).index
        chosen: list[tuple[Any, np.ndarray]] = []
        for g in order[:_SCAN_GROUPS]:  # the largest groups with image files on disk
            members = np.asarray(by_group[g])
            exists = np.array([paths[i] is not None and paths[i].is_file() for i in members])
            if exists.any():
                chosen.append((g, members[np.argsort(~exists, kind="stable")]))
            if len(chosen) >= max(1, n_groups):
                break
        if not chosen:  # no image files at all: show the largest groups' "missing" tiles
            chosen = [(g, np.asarray(by_group[g])) for g in order[:max(1, n_groups)]]
        for g, members in chosen:
            rows.append((f"label_group {g}: {len(members)} postings", members[:per_group]))
    else:
        idx = np.arange(min(len(postings), max(1, n_groups) * per_group))
        head = f"The first {len(idx)} postings (no label_group to group them by)"
        for r in range(0, len(idx), per_group):
            rows.append((head if r == 0 else "", idx[r:r + per_group]))
    ncols = max(len(m) for _, m in rows)
    fig = figure(2.0 * ncols + 0.4, 2.75 * len(rows) + 0.4)
    subfigs = cast("np.ndarray", fig.subfigures(len(rows), 1, squeeze=False)).ravel()
    for sub, (head, members) in zip(subfigs, rows, strict=True):
        axes = np.atleast_1d(sub.subplots(1, ncols))
        for ax, i in zip(axes, members, strict=False):
            tile(ax, thumbnail(paths[i]), titles[i], width=24)
        for ax in axes[len(members):]:
            ax.axis("off")
        if head:
            sub.suptitle(head, fontsize=10, ha="left", x=0.01)
    return fig
