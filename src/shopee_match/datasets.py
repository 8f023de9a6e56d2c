"""A synthetic product catalogue: seller-style titles and near-duplicate JPEG images.

Each label group is one product. Its postings share a base title (brand, product, model
number, size) rewritten with seller noise, and a base image re-shot with crops,
re-encoding, borders, text overlays and colour shifts. Groups deliberately come in
families that share brand and product but differ in model or size (hard negatives).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._persist import temp_dir
from .data import Postings

__all__ = ["make_catalog", "make_titles"]

_BRANDS = ["Acme", "Nova", "Zenith", "Orion", "Kirin", "Lumo", "Vega", "Miko", "Terra", "Pixel",
           "Aero", "Bolt", "Cora", "Delta", "Echo", "Fuji", "Gala", "Hana", "Iris", "Juno"]
_PRODUCTS = ["Running Shoes", "Water Bottle", "Phone Case", "Face Serum", "Rice Cooker",
             "Backpack", "Wireless Earbuds", "Coffee Beans", "Desk Lamp", "Yoga Mat",
             "Lipstick", "Power Bank", "Baby Wipes", "Hair Dryer", "Notebook", "T-Shirt",
             "Dish Soap", "Cat Food", "Sunscreen", "USB Cable", "Frying Pan", "Hijab Scarf"]
_COLORS = ["Black", "White", "Red", "Blue", "Pink", "Green", "Grey", "Navy", "Beige"]
_UNITS = [("ml", [50, 100, 250, 500, 1000]), ("gr", [100, 250, 500, 1000]),
          ("cm", [20, 30, 45, 60]), ("mAh", [5000, 10000, 20000]), ("pcs", [1, 3, 6, 12])]
_SELLER = ["ORIGINAL", "READY STOCK", "COD", "Promo", "Murah", "BPOM", "Best Seller",
           "Free Gift", "100% Authentic", "Grosir", "Import", "NEW", "Termurah", "Hot Sale"]
_SIZE = re.compile(r"^(\d+)([A-Za-z]+)$")
_PUNCT = ["!", "!!", " -", " |", " /", "*", " ~", "", "", ""]


def _base_titles(n_groups: int, rng: np.random.Generator) -> list[str]:
    titles: list[str] = []
    while len(titles) < n_groups:
        brand = _BRANDS[rng.integers(len(_BRANDS))]
        product = _PRODUCTS[rng.integers(len(_PRODUCTS))]
        unit, sizes = _UNITS[rng.integers(len(_UNITS))]
        letters = "".join(rng.choice(list("ABCDEFGHKLMNPRSTXZ"), size=2))
        family = rng.integers(1, 4)  # a family of 1-3 near-identical products
        for _ in range(family):
            model = f"{letters}{rng.integers(10, 999)}"
            size = sizes[rng.integers(len(sizes))]
            color = _COLORS[rng.integers(len(_COLORS))]
            titles.append(f"{brand} {product} {model} {size}{unit} {color}")
    return titles[:n_groups]


def _noisy(title: str, rng: np.random.Generator) -> str:
    words = title.split()
    if rng.random() < 0.3 and len(words) > 3:  # drop a non-leading word
        del words[int(rng.integers(1, len(words)))]
    if rng.random() < 0.3:  # swap two neighbours
        i = int(rng.integers(0, len(words) - 1))
        words[i], words[i + 1] = words[i + 1], words[i]
    if rng.random() < 0.3:  # split a size at its unit: 500ml -> 500 ml, 6pcs -> 6 pcs
        words = [_SIZE.sub(r"\1 \2", w) for w in words]
    if rng.random() < 0.2:  # a typo
        i = int(rng.integers(len(words)))
        w = words[i]
        if len(w) > 3:
            j = int(rng.integers(1, len(w) - 1))
            words[i] = w[:j] + w[j + 1:]
    out = " ".join(words)
    case = rng.random()
    if case < 0.2:
        out = out.upper()
    elif case < 0.35:
        out = out.lower()
    n_extra = int(rng.integers(0, 3))
    for _ in range(n_extra):
        tag = _SELLER[rng.integers(len(_SELLER))]
        sep = _PUNCT[rng.integers(len(_PUNCT))]
        out = f"{tag}{sep} {out}" if rng.random() < 0.5 else f"{out}{sep} {tag}"
    return " ".join(out.split())


def make_titles(n_groups: int = 50, per_group: tuple[int, int] = (2, 5),
                seed: int | None = 0) -> pd.DataFrame:
    """Titles only: a DataFrame ``posting_id, title, label_group``.

    >>> df = make_titles(3, seed=1)
    >>> sorted(df.columns)
    ['label_group', 'posting_id', 'title']
    """
    rng = np.random.default_rng(seed)
    bases = _base_titles(n_groups, rng)
    rows = []
    for g, base in enumerate(bases):
        for _ in range(int(rng.integers(per_group[0], per_group[1] + 1))):
            rows.append((_noisy(base, rng), g))
    df = pd.DataFrame(rows, columns=["title", "label_group"])
    df.insert(0, "posting_id", [f"p{i:07d}" for i in range(len(df))])
    return df


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
