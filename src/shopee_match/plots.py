"""EDA and evaluation plots as PNG files (matplotlib, drawn off-screen with Agg).

Figures are built with :class:`matplotlib.figure.Figure` on an Agg canvas, never through
``pyplot``: nothing global changes (an interactive backend in a notebook is left alone)
and no window opens. matplotlib is imported inside the functions, so ``import
shopee_match`` stays fast. Every PNG is written atomically.
"""

from __future__ import annotations

import contextlib
import logging
import textwrap
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import scipy.sparse as sp

from ._persist import atomic_file
from .data import Postings
from .metrics import graph_f1_scores

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .pipeline import Pipeline

__all__ = ["eda_plots", "evaluation_plots"]

logger = logging.getLogger(__name__)

_DPI = 100
_THUMB = 160  # pixels of an image tile's longer side
_GREY = 0.82
#: Most pairs scored when looking for the worst missed matches (sampled beyond that).
_MAX_PAIRS = 200_000
#: Largest groups searched for ones with image files, for the EDA image grid.
_SCAN_GROUPS = 2000


# --- shared helpers -----------------------------------------------------------------
def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


@contextlib.contextmanager
def _quiet_glyphs() -> Iterator[None]:
    """Titles may hold emoji or CJK the default font lacks; a missing glyph is not news."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*Glyph .* missing from", category=UserWarning)
        warnings.filterwarnings("ignore", message=r".*Matplotlib currently does not support",
                                category=UserWarning)
        yield


def _save(fig: Figure, path: Path) -> Path:
    with _quiet_glyphs(), atomic_file(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=_DPI)
    logger.debug("wrote %s", path)
    return path


def _wrap(text: Any, width: int = 28, lines: int = 3) -> str:
    """Wrap a title to ``lines`` lines of ``width`` characters, cut with an ellipsis."""
    words = " ".join(str(text).split())
    if not words:
        return "(empty title)"
    parts = textwrap.wrap(words, width=width, break_long_words=True, break_on_hyphens=False)
    if len(parts) > lines:
        parts = parts[:lines]
        parts[-1] = parts[-1][: width - 1].rstrip() + "…"
    return "\n".join(parts)


def _thumbnail(path: Path | None, size: int = _THUMB) -> np.ndarray | None:
    """The image as an RGB array no larger than ``size``, or ``None`` if unreadable."""
    if path is None:
        return None
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # truncated files, EXIF oddities, large images
            with Image.open(path) as img:
                rgb = img.convert("RGB")
            rgb.thumbnail((size, size))
            return np.asarray(rgb)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        logger.debug("cannot read image %s", path)
        return None


def _tile(ax: Axes, image: np.ndarray | None, title: str, *, width: int = 28) -> None:
    """One posting: its image (a grey "missing" tile if unreadable) and its title below."""
    if image is None:
        ax.imshow(np.full((_THUMB, _THUMB, 3), _GREY))
        ax.text(0.5, 0.5, "missing", transform=ax.transAxes, ha="center", va="center",
                color="0.35", fontsize=11)
    else:
        ax.imshow(image)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_anchor("N")  # the square image sits at the top of its slot, the title below it
    ax.set_xlabel(_wrap(title, width), fontsize=8, parse_math=False)


def _text_tile(ax: Axes, title: str) -> None:
    """One posting without an image: its title in a box."""
    ax.axis("off")
    ax.text(0.5, 0.5, _wrap(title, 34, 4), transform=ax.transAxes, ha="center", va="center",
            fontsize=9, parse_math=False, wrap=False,
            bbox={"boxstyle": "round,pad=0.5", "fc": "0.95", "ec": "0.7"})


def _paths(postings: Postings) -> list[Path | None] | None:
    return postings.image_paths() if postings.has_images else None


# --- EDA ----------------------------------------------------------------------------
def eda_plots(
    postings: Postings,
    out_dir: str | Path,
    *,
    top_groups: int = 20,
    grid_groups: int = 3,
    per_group: int = 6,
) -> list[Path]:
    """Exploratory plots of ``postings`` as PNGs in ``out_dir``; returns the files written.

    - ``largest_groups.png``: the ``top_groups`` largest label groups (needs
      ``label_group``; skipped with a warning without it);
    - ``title_lengths.png``: title length in characters and in words;
    - ``group_images.png``: the images of the ``grid_groups`` largest groups that have
      image files, with their titles (the first postings without labels); only with
      images. Missing or corrupt images are drawn as grey "missing" tiles.

    >>> import tempfile
    >>> from shopee_match import make_catalog
    >>> files = eda_plots(make_catalog(n_groups=5, images=False), tempfile.mkdtemp())
    >>> [f.name for f in files]
    ['largest_groups.png', 'title_lengths.png']
    """
    if not isinstance(postings, Postings):
        raise TypeError(
            f"eda_plots expects Postings (see read_postings), got {type(postings).__name__}."
        )
    if len(postings) == 0:
        raise ValueError(f"{postings.source}: no postings to plot.")
    out = Path(out_dir)
    written: list[Path] = []
    if postings.has_labels:
        written.append(_save(_largest_groups(postings, top_groups), out / "largest_groups.png"))
    else:
        warnings.warn(
            f"{postings.source}: no `label_group` column, so the largest-groups plot is skipped.",
            UserWarning,
            stacklevel=2,
        )
    written.append(_save(_title_lengths(postings), out / "title_lengths.png"))
    if postings.has_images:
        written.append(_save(_group_images(postings, grid_groups, per_group),
                             out / "group_images.png"))
    else:
        logger.info("%s: no images (--images DIR), so no image grid", postings.source)
    return written


def _largest_groups(postings: Postings, top: int) -> Figure:
    labels = postings.df["label_group"]
    counts = labels.value_counts(sort=True)
    shown = counts.iloc[:top][::-1]
    first_title = postings.df.groupby("label_group", sort=False)["title"].first()
    names = [f"{g}  ·  {_wrap(first_title[g], 40, 1)}" for g in shown.index]
    fig = _figure(10, max(3.0, 0.32 * len(shown) + 1.4))
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


def _title_lengths(postings: Postings) -> Figure:
    titles = postings.df["title"].astype(str)
    chars = titles.str.len().to_numpy()
    words = np.array([len(t.split()) for t in titles])
    fig = _figure(10, 3.8)
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


def _group_images(postings: Postings, n_groups: int, per_group: int) -> Figure:
    paths = _paths(postings)
    assert paths is not None
    titles = postings.titles
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
    fig = _figure(2.0 * ncols + 0.4, 2.75 * len(rows) + 0.4)
    subfigs = cast("np.ndarray", fig.subfigures(len(rows), 1, squeeze=False)).ravel()
    for sub, (head, members) in zip(subfigs, rows, strict=True):
        axes = np.atleast_1d(sub.subplots(1, ncols))
        for ax, i in zip(axes, members, strict=False):
            _tile(ax, _thumbnail(paths[i]), titles[i], width=24)
        for ax in axes[len(members):]:
            ax.axis("off")
        if head:
            sub.suptitle(head, fontsize=10, ha="left", x=0.01)
    return fig


# --- evaluation ---------------------------------------------------------------------
def evaluation_plots(
    pipe: Pipeline,
    postings: Postings,
    out_dir: str | Path,
    *,
    n_pairs: int = 8,
) -> list[Path]:
    """Threshold-F1 curves and the worst errors of a fitted ``pipe`` on labelled ``postings``.

    - ``threshold_f1.png``: per step, mean F1 of that step alone against its similarity
      threshold, the chosen threshold marked. The curves come from tuning
      (``pipe.tuning_["curves"]``, cross-validated on the training data) when present,
      else they are computed on ``postings``;
    - ``false_matches.png``: the ``n_pairs`` matched pairs from different label groups
      that were matched most confidently (highest similarity above a step's threshold);
    - ``missed_matches.png``: the ``n_pairs`` same-group pairs that were missed by the
      widest margin (images side by side where present, titles always, with each step's
      cosine similarity).

    A pair counts as matched when either posting lists the other in the final graph
    (:meth:`Pipeline.predict_graph`). Each step's embedder runs once here, besides the
    run inside ``predict_graph``.

    >>> import tempfile
    >>> from shopee_match import Pipeline, make_catalog
    >>> data = make_catalog(n_groups=12, images=False, seed=0)
    >>> pipe = Pipeline.default().fit(data)
    >>> [f.name for f in evaluation_plots(pipe, data, tempfile.mkdtemp())]
    ['threshold_f1.png', 'false_matches.png', 'missed_matches.png']
    """
    if not isinstance(postings, Postings):
        raise TypeError(f"evaluation_plots expects Postings, got {type(postings).__name__}.")
    if n_pairs < 1:
        raise ValueError(f"`n_pairs` must be >= 1, got {n_pairs!r}.")
    groups = postings.groups()  # clear error without label_group
    final = pipe.predict_graph(postings)  # also checks that pipe is fitted
    steps = list(pipe.steps)
    embs = {name: emb.embed(postings) for name, emb, _ in steps}
    thresholds = {name: _threshold(pipe, name, m) for name, _, m in steps}
    out = Path(out_dir)

    curves = getattr(pipe, "tuning_", {}).get("curves") or {}
    source = "cross-validated on the training data"
    if not all(name in curves for name, _, _ in steps):
        curves = {name: _curve(m, embs[name], groups) for name, _, m in steps}
        source = f"on these {len(postings)} postings"
    written = [_save(_threshold_figure(curves, thresholds, source), out / "threshold_f1.png")]

    linked = final.tocsr().astype(bool)
    linked = ((linked + linked.T) > 0).tocoo()
    keep = (linked.row < linked.col) & (groups[linked.row] != groups[linked.col])
    false_pairs = np.stack([linked.row[keep], linked.col[keep]], axis=1)
    missed_pairs = _missed_pairs(groups, linked)
    for pairs, worst, name, head, none in (
        (false_pairs, "high", "false_matches.png", "Worst false matches (different label groups)",
         "No false matches: every matched pair shares a label group."),
        (missed_pairs, "low", "missed_matches.png", "Worst missed matches (same label group)",
         "No missed matches: every same-group pair was matched."),
    ):
        sims = _pair_similarities(embs, pairs)
        order = _worst(pairs, sims, thresholds, groups, worst, n_pairs)
        title = f"{head}: {len(order)} of {len(pairs)}" if len(pairs) else none
        fig = _pairs_figure(postings, pairs[order], {s: v[order] for s, v in sims.items()},
                            thresholds, title)
        written.append(_save(fig, out / name))
    return written


def _threshold(pipe: Any, name: str, matcher: Any) -> float:
    """The similarity threshold ``matcher`` applies now (set by tuning, or by hand)."""
    if hasattr(matcher, "similarity_threshold"):
        return float(matcher.similarity_threshold())
    tuned = getattr(pipe, "tuning_", {}).get("thresholds", {})
    return float(tuned.get(name, getattr(matcher, "threshold", np.nan)))


def _worst(pairs: np.ndarray, sims: Mapping[str, np.ndarray], thresholds: Mapping[str, float],
           groups: np.ndarray, worst: str, n: int) -> np.ndarray:
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


def _curve(matcher: Any, emb: Any, groups: np.ndarray) -> dict[str, list[float]]:
    """Mean F1 of ``matcher`` alone over its tuning grid, on these postings."""
    from .neighbors.hamming import HashMatcher
    from .tuning import MAX_TUNED_RADIUS, threshold_grid

    if isinstance(matcher, HashMatcher):
        cand = matcher.candidates(emb, max_distance=MAX_TUNED_RADIUS)
    else:
        cand = matcher.candidates(emb)
    grid = threshold_grid(matcher)
    f1 = [float(graph_f1_scores(matcher.select(cand, threshold=float(t)), groups).mean())
          for t in grid]
    return {"threshold": [float(t) for t in grid], "f1": f1}


def _threshold_figure(curves: Mapping[str, Mapping[str, Sequence[float]]],
                      thresholds: Mapping[str, float], source: str) -> Figure:
    names = list(curves)
    ncols = min(3, len(names))
    nrows = -(-len(names) // ncols)
    fig = _figure(4.2 * ncols + 0.4, 3.4 * nrows + 0.6)
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


def _missed_pairs(groups: np.ndarray, linked: sp.coo_matrix) -> np.ndarray:
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


def _pair_similarities(embs: Mapping[str, Any], pairs: np.ndarray,
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


def _pairs_figure(postings: Postings, pairs: np.ndarray, sims: Mapping[str, np.ndarray],
                  thresholds: Mapping[str, float], head: str) -> Figure:
    if len(pairs) == 0:
        fig = _figure(6, 1.2)
        fig.text(0.5, 0.5, head, ha="center", va="center", fontsize=11)
        return fig
    paths = _paths(postings)
    titles = postings.titles
    labels = postings.df["label_group"].astype(str).tolist()
    ids = postings.posting_id
    per_row = 2
    nrows = -(-len(pairs) // per_row)
    height = 3.4 if paths is not None else 1.5
    fig = _figure(10.5, height * nrows + 0.5)
    subfigs = cast("np.ndarray", fig.subfigures(nrows, per_row, squeeze=False)).ravel()
    for k, sub in enumerate(subfigs):
        if k >= len(pairs):
            continue
        sub.set_facecolor("0.97")
        axes = sub.subplots(1, 2)
        for ax, i in zip(axes, pairs[k], strict=True):
            if paths is not None:
                _tile(ax, _thumbnail(paths[i]), titles[i], width=26)
            else:
                _text_tile(ax, titles[i])
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
