"""A synthetic product catalogue: seller-style titles and near-duplicate JPEG images.

Each label group is one product. Its postings share a base title (brand, product, model
number, size) rewritten with seller noise, and a base image re-shot with crops,
re-encoding, borders, text overlays and colour shifts. Groups deliberately come in
families that share brand and product but differ in model or size (hard negatives).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ._generate import _SELLER, GENERAL_MIXES, general_catalogues, make_titles
from ._persist import temp_dir
from .data import Postings

__all__ = ["GENERAL_MIXES", "general_catalogues", "make_catalog", "make_titles"]


def _base_image(rng: np.random.Generator, size: int) -> Any:
    from PIL import Image, ImageDraw

    bg = tuple(int(v) for v in rng.integers(150, 256, size=3))
    img = Image.new("RGB", (size, size), bg)
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 7))):
        color = tuple(int(v) for v in rng.integers(0, 256, size=3))
        x0, y0 = rng.integers(0, size * 3 // 4, size=2)
        w, h = rng.integers(size // 8, size // 2, size=2)
        box = (int(x0), int(y0), int(min(size - 1, x0 + w)), int(min(size - 1, y0 + h)))
        kind = rng.integers(3)
        if kind == 0:
            draw.rectangle(box, fill=color)
        elif kind == 1:
            draw.ellipse(box, fill=color)
        else:
            pts = [tuple(int(v) for v in rng.integers(0, size, size=2)) for _ in range(3)]
            draw.polygon(pts, fill=color)
    return img


def _edit(img: Any, rng: np.random.Generator, size: int) -> Any:
    from PIL import ImageDraw, ImageEnhance, ImageOps

    out = img.copy()
    if rng.random() < 0.6:  # crop and resize back
        m = int(size * rng.uniform(0.0, 0.12))
        left, top = int(rng.integers(0, m + 1)), int(rng.integers(0, m + 1))
        out = out.crop((left, top, size - (m - left), size - (m - top))).resize((size, size))
    if rng.random() < 0.3:  # a border
        b = int(rng.integers(2, max(3, size // 16)))
        fill = tuple(int(v) for v in rng.integers(0, 256, size=3))
        out = ImageOps.expand(out, border=b, fill=fill).resize((size, size))
    if rng.random() < 0.4:  # a text overlay, as sellers stamp their shop name
        draw = ImageDraw.Draw(out)
        draw.text((int(rng.integers(0, size // 2)), int(rng.integers(0, size - 12))),
                  _SELLER[rng.integers(len(_SELLER))], fill=(255, 0, 0))
    if rng.random() < 0.4:
        out = ImageEnhance.Brightness(out).enhance(float(rng.uniform(0.85, 1.15)))
    return out


def make_catalog(
    n_groups: int = 50,
    per_group: tuple[int, int] = (2, 5),
    *,
    images: bool = True,
    image_dir: str | Path | None = None,
    image_size: int = 96,
    seed: int | None = 0,
) -> Postings:
    """Generate labelled postings; with ``images=True`` also write JPEGs to ``image_dir``.

    Returns :class:`~shopee_match.Postings` with ``posting_id, title, label_group`` and,
    with images, ``image`` and ``image_dir`` set (a new temporary folder if not given).

    >>> p = make_catalog(n_groups=4, images=False, seed=0)
    >>> p.has_labels, p.has_images
    (True, False)
    """
    if n_groups < 1:
        raise ValueError(f"`n_groups` must be >= 1, got {n_groups}.")
    lo, hi = per_group
    if not 1 <= lo <= hi:
        raise ValueError(f"`per_group` must be (min, max) with 1 <= min <= max, got {per_group}.")
    df = make_titles(n_groups, per_group, seed)
    if not images:
        return Postings(df, source="make_catalog")
    rng = np.random.default_rng(None if seed is None else seed + 1)
    folder = Path(image_dir) if image_dir is not None else temp_dir("catalog_")
    folder.mkdir(parents=True, exist_ok=True)
    bases = {g: _base_image(rng, image_size) for g in df["label_group"].unique()}
    names = []
    for pid, g in zip(df["posting_id"], df["label_group"]):
        name = f"{pid}.jpg"
        _edit(bases[g], rng, image_size).save(folder / name, "JPEG",
                                              quality=int(rng.integers(60, 96)))
        names.append(name)
    df["image"] = names
    return Postings(df, image_dir=folder, source="make_catalog")
