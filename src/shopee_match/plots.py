"""EDA and evaluation plots as PNG files (matplotlib, drawn off-screen with Agg).

Figures are built with :class:`matplotlib.figure.Figure` on an Agg canvas, never through
``pyplot``: nothing global changes (an interactive backend in a notebook is left alone)
and no window opens. matplotlib is imported inside the functions, so ``import
shopee_match`` stays fast. Every PNG is written atomically.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._plot_base import save as _save
from ._plot_eda import group_images as _group_images
from ._plot_eda import largest_groups as _largest_groups
from ._plot_eda import title_lengths as _title_lengths
from ._plot_eval import missed_pairs as _missed_pairs
from ._plot_eval import pair_similarities as _pair_similarities
from ._plot_eval import pairs_figure as _pairs_figure
from ._plot_eval import step_threshold as _threshold
from ._plot_eval import threshold_curve as _curve
from ._plot_eval import threshold_figure as _threshold_figure
from ._plot_eval import worst_pairs as _worst
from .data import Postings

if TYPE_CHECKING:
    from .pipeline import Pipeline

__all__ = ["eda_plots", "evaluation_plots"]

logger = logging.getLogger(__name__)


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
    if postings.has_titles:
        written.append(_save(_title_lengths(postings), out / "title_lengths.png"))
    else:
        logger.info("%s: no titles (image-only), so no title-length plot", postings.source)
    if postings.has_images:
        written.append(_save(_group_images(postings, grid_groups, per_group),
                             out / "group_images.png"))
    else:
        logger.info("%s: no images (--images DIR), so no image grid", postings.source)
    return written


def evaluation_plots(
    pipe: Pipeline,
    postings: Postings,
    out_dir: str | Path,
    *,
    n_pairs: int = 8,
    embeddings: Mapping[str, Any] | None = None,
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
    (:meth:`Pipeline.predict_graph`). Each step's embedder runs once; pass
    ``embeddings=pipe.embed_steps(postings)`` to reuse embeddings computed already.

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
    embs = dict(embeddings) if embeddings is not None else pipe.embed_steps(postings)
    final = pipe.predict_graph(postings, embs)  # also checks that pipe is fitted
    steps = list(pipe.steps)
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
