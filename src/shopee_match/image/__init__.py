"""Image embedders: perceptual hash, and EfficientNet (lazily imported)."""

from .phash import PhashEmbedder, compute_phash, hashes_to_vectors

__all__ = ["PhashEmbedder", "compute_phash", "hashes_to_vectors"]
