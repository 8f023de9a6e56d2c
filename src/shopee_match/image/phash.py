"""Perceptual-hash (phash) embeddings: from the ``image_phash`` column or the image files.

A 64-bit hash becomes a ±1/8 float32 vector, so the cosine of two rows is
``1 - 2 * hamming / 64``: exact-hash matches have similarity 1 and a Hamming radius
``r`` is the threshold ``1 - r / 32``. :class:`~shopee_match.neighbors.HashMatcher`
matches these rows by hash lookup, without a dense KNN.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from .._registry import register
from ..embedder import BaseEmbedder

if TYPE_CHECKING:
    from ..data import Postings

__all__ = ["PhashEmbedder", "compute_phash", "hashes_to_vectors"]

logger = logging.getLogger(__name__)


def compute_phash(path: str | Path, hash_size: int = 8) -> str | None:
    """The phash of one image file as hex, or ``None`` (with a warning) if unreadable.

    >>> compute_phash("/no/such/file.jpg") is None
    True
    """
    import imagehash
    from PIL import Image, UnidentifiedImageError

    side = hash_size * 4  # imagehash's highfreq_factor
    try:
        with Image.open(path) as img:
            # Resize in colour, then grey: this reproduces the competition's hashes
            # (23 of 23 real images; grey-first, imagehash's default, gets 21).
            small = img.convert("RGB").resize((side, side), Image.Resampling.LANCZOS)
            return str(imagehash.phash(small.convert("L"), hash_size=hash_size))
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        warnings.warn(
            f"{path}: cannot read image ({type(exc).__name__}); the posting gets no phash "
            "and can still match by title.",
            UserWarning,
            stacklevel=2,
        )
        return None


def hashes_to_vectors(hashes: list[str | None] | np.ndarray, n_bits: int = 64) -> np.ndarray:
    """Hex hashes -> rows of ±1/sqrt(n_bits); a missing hash gives an all-zero row.

    >>> v = hashes_to_vectors(["ffffffffffffffff", None])
    >>> float(v[0] @ v[0]), float(np.abs(v[1]).sum())
    (1.0, 0.0)
    """
    out = np.zeros((len(hashes), n_bits), dtype=np.float32)
    scale = np.float32(1.0 / np.sqrt(n_bits))
    for i, h in enumerate(hashes):
        if not isinstance(h, str) or not h:
            continue
        value = int(h, 16)
        bits = np.array([(value >> (n_bits - 1 - b)) & 1 for b in range(n_bits)], dtype=np.float32)
        out[i] = (2.0 * bits - 1.0) * scale
    return out


@register()
class PhashEmbedder(BaseEmbedder):
    """Perceptual-hash vectors of each posting's image.

    Parameters
    ----------
    source : ``"column"`` reads ``image_phash``; ``"image"`` computes phash from the image
        files with imagehash; ``"auto"`` uses the column where present, else the images.
    hash_size : phash side (8 gives the competition's 64-bit hashes).
    verbose : show a progress bar while hashing images.
    on_missing : ``"warn"`` when postings have neither an ``image_phash`` column nor
        images (the step then matches nothing), ``"ignore"`` for a step that is optional
        by design (the shipped pretrained model's).

    >>> import pandas as pd
    >>> from shopee_match.data import Postings
    >>> p = Postings(pd.DataFrame({"posting_id": ["a"], "title": ["x"],
    ...                            "image_phash": ["94974f937d4c2433"]}))
    >>> PhashEmbedder().embed(p).shape
    (1, 64)
    """

    name = "phash"

    def __init__(self, source: str = "auto", hash_size: int = 8, verbose: bool = False,
                 on_missing: str = "warn") -> None:
        self.source = source
        self.hash_size = hash_size
        self.verbose = verbose
        self.on_missing = on_missing

    def hashes(self, postings: Postings) -> list[str | None]:
        """Each posting's hex phash (``None`` where there is none)."""
        if self.source not in ("auto", "column", "image"):
            raise ValueError(f"`source` must be 'auto', 'column' or 'image', got {self.source!r}.")
        use_column = self.source == "column" or (self.source == "auto" and postings.has_phash)
        if use_column:
            if not postings.has_phash:
                raise ValueError(
                    f"{postings.source}: PhashEmbedder(source='column') needs an `image_phash` "
                    "column; use source='image' with --images DIR to compute it."
                )
            return [h if isinstance(h, str) else None for h in postings.df["image_phash"]]
        if self.on_missing not in ("warn", "ignore"):
            raise ValueError(f"`on_missing` must be 'warn' or 'ignore', got {self.on_missing!r}.")
        if self.source == "auto" and not postings.has_images:
            if self.on_missing == "ignore":
                return [None] * len(postings)
            warnings.warn(
                f"{postings.source}: no `image_phash` column and no images (--images DIR), so "
                "the phash step matches nothing; postings still match by title.",
                UserWarning,
                stacklevel=3,
            )
            return [None] * len(postings)
        paths = postings.image_paths()
        return [
            compute_phash(p, self.hash_size) if p is not None else None
            for p in tqdm(paths, desc="phash", disable=not self.verbose, unit="img")
        ]

    def embed(self, postings: Postings) -> np.ndarray:
        return hashes_to_vectors(self.hashes(postings), n_bits=self.hash_size**2)
