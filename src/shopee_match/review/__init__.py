"""See, explain, correct: pair explanations (:func:`score_pairs`), the labelling queue
(:func:`review_queue`) and the offline review page (:func:`write_review`).

>>> from shopee_match.review import score_pairs, write_review
"""

from __future__ import annotations

from .explain import PairScores, score_pairs
from .page import review_page, write_review
from .queue import review_queue

__all__ = ["PairScores", "review_page", "review_queue", "score_pairs", "write_review"]
