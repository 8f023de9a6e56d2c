"""Generated catalogues: seller-style titles (no images), and the general catalogues
:meth:`Pipeline.fit <shopee_match.Pipeline.fit>` learns from beside the user's.

Each label group is one product. Its postings share a base title (brand, product, model
number, size) rewritten with seller noise. Groups come in families that share brand and
product but differ in model or size (hard negatives). This module sits in the data
layer, so the pipeline may use it; :mod:`shopee_match.datasets` adds images.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from .data import Postings

__all__ = ["GENERAL_MIXES", "general_catalogues", "make_titles"]

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


#: group-size mixes of the general catalogues, ``(min, max)`` offers per product, each a
#: third of the postings: mostly one-offer products, a spread, and larger groups
GENERAL_MIXES = ((1, 2), (1, 6), (2, 10))


def general_catalogues(n_postings: int, seed: int = 0) -> list[Postings]:
    """Labelled, generated catalogues of about ``n_postings`` titles in all, one per
    group-size mix of :data:`GENERAL_MIXES`.

    They teach a pair model what no single shop shows: products with one offer (so a
    nearest neighbour is often another product) and near-identical titles that differ by
    a model code or a size (other products). Generated, never read from any shop's data.

    >>> cats = general_catalogues(300, seed=1)
    >>> len(cats), all(c.has_labels for c in cats)
    (3, True)
    """
    out = []
    for i, (lo, hi) in enumerate(GENERAL_MIXES):
        n_groups = max(1, round(n_postings / len(GENERAL_MIXES) / ((lo + hi) / 2)))
        df = make_titles(n_groups, (lo, hi), seed=seed * 1000 + 101 + i)
        df["posting_id"] = f"general{i}_" + df["posting_id"]
        out.append(Postings(df, source=f"general catalogue {i} ({lo}-{hi} offers a product)"))
    return out
