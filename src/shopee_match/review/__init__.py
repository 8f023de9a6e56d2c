"""See, explain, correct: pair explanations, the labelling queue and the offline review
page (:func:`write_review`).

>>> from shopee_match.review import score_pairs, write_review
"""

from __future__ import annotations

from .explain import PairScores, score_pairs

__all__ = ["PairScores", "score_pairs"]
