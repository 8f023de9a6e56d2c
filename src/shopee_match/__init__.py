"""shopee_match: find every posting that is the same product, from titles and images.

>>> from shopee_match import Pipeline, make_catalog
>>> postings = make_catalog(n_groups=20, images=False, seed=0)
>>> pipe = Pipeline.default(images=False).fit(postings)
>>> sub = pipe.predict(postings)
>>> list(sub.columns)
['posting_id', 'matches']
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# Light imports only: TensorFlow, keras-hub, faiss, CuPy and cuML load where used.
from ._registry import register
from ._validation import NotFittedError
from .data import Postings, PostingsError, group_kfold, read_postings, train_test_split_groups
from .datasets import make_catalog
from .embedder import BaseEmbedder, Embedder
from .image.phash import PhashEmbedder
from .metrics import f1_score, f1_scores, precision_score, recall_score
from .neighbors import BlendMatcher, HashMatcher, NeighborMatcher
from .protocols import Combiner, Matcher, register_matcher

_LAZY = {
    "TfidfEmbedder": "shopee_match.text.tfidf",
    "TitlePreprocessor": "shopee_match.text.preprocess",
    "Pipeline": "shopee_match.pipeline",
    "Ensemble": "shopee_match.ensemble",
    "PairReranker": "shopee_match.rerank",
    "MatchIndex": "shopee_match.index",
    "tune_thresholds": "shopee_match.tuning",
    "ArcMarginProduct": "shopee_match.arcface",
    "ImageEmbedder": "shopee_match.image.efficientnet",
    "BertEmbedder": "shopee_match.text.bert",
    "train_arcface": "shopee_match.training",
}

__all__ = [
    "BaseEmbedder",
    "BlendMatcher",
    "Combiner",
    "Embedder",
    "HashMatcher",
    "Matcher",
    "NeighborMatcher",
    "NotFittedError",
    "PhashEmbedder",
    "Postings",
    "PostingsError",
    "__version__",
    "f1_score",
    "f1_scores",
    "group_kfold",
    "make_catalog",
    "precision_score",
    "read_postings",
    "recall_score",
    "register",
    "register_matcher",
    "train_test_split_groups",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'shopee_match' has no attribute {name!r}")
