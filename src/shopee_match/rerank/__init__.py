"""The learned combine step: candidate pairs, their features, and the pair reranker.

- :mod:`~shopee_match.rerank.pair_features`: candidate pairs and their features
  (similarities, ranks both ways, neighbourhood density, title agreement).
- :class:`~shopee_match.rerank.PairReranker`: gradient-boosted trees over those
  features and a tuned probability threshold (``reranker``; training internals in
  ``_fit``, the stored trees in ``_trees``).

>>> from shopee_match.rerank import PairReranker
>>> from shopee_match.rerank.pair_features import candidate_pairs, pair_features
"""

from __future__ import annotations

from ..neighbors.graph import symmetric_graph
from ._fit import THRESHOLD_GRID, stage_features
from ._selftrain import PairScan, either_way, evidence_point, scan_pairs
from .reranker import PairReranker

__all__ = ["THRESHOLD_GRID", "PairReranker", "PairScan", "either_way", "evidence_point",
           "scan_pairs", "stage_features", "symmetric_graph"]
