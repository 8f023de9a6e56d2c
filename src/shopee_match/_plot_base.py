"""Shared drawing of the plots: off-screen figures, atomic PNGs, posting tiles.

Figures are built with :class:`matplotlib.figure.Figure` on an Agg canvas, never through
``pyplot``, so nothing global changes and no window opens.
"""

from __future__ import annotations

import contextlib
import logging
import textwrap
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._persist import atomic_file
from .data import Postings
from .text.preprocess import decode_escapes

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["figure", "image_paths", "save", "text_tile", "thumbnail", "tile", "wrap"]

logger = logging.getLogger(__name__)

_DPI = 100
_THUMB = 160  # pixels of an image tile's longer side
_GREY = 0.82


def figure(width: float, height: float) -> Figure:
    """A new figure on its own Agg canvas (``width`` x ``height`` inches)."""
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


def save(fig: Figure, path: Path) -> Path:
    """Write ``fig`` to ``path`` as a PNG, atomically; returns ``path``."""
    with _quiet_glyphs(), atomic_file(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=_DPI)
    logger.debug("wrote %s", path)
    return path


def wrap(text: Any, width: int = 28, lines: int = 3) -> str:
    """Wrap a title to ``lines`` lines of ``width`` characters, cut with an ellipsis.

    Literal ``\\xNN`` byte escapes of scraped titles are decoded first, as the title
    preprocessing does, so a label reads ``☮`` rather than ``\\xe2\\x98\\xae``.
    """
    words = " ".join(decode_escapes(str(text)).split())
    if not words:
        return "(empty title)"
    parts = textwrap.wrap(words, width=width, break_long_words=True, break_on_hyphens=False)
    if len(parts) > lines:
        parts = parts[:lines]
        parts[-1] = parts[-1][: width - 1].rstrip() + "…"
    return "\n".join(parts)


def thumbnail(path: Path | None, size: int = _THUMB) -> np.ndarray | None:
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


def tile(ax: Axes, image: np.ndarray | None, title: str, *, width: int = 28) -> None:
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
    ax.set_xlabel(wrap(title, width), fontsize=8, parse_math=False)


def text_tile(ax: Axes, title: str) -> None:
    """One posting without an image: its title in a box."""
    ax.axis("off")
    ax.text(0.5, 0.5, wrap(title, 34, 4), transform=ax.transAxes, ha="center", va="center",
            fontsize=9, parse_math=False, wrap=False,
            bbox={"boxstyle": "round,pad=0.5", "fc": "0.95", "ec": "0.7"})


def image_paths(postings: Postings) -> list[Path | None] | None:
    """Each posting's image file, or ``None`` when the postings have no images."""
    return postings.image_paths() if postings.has_images else None
