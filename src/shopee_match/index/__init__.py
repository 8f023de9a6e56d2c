"""Serve a fitted pipeline: match new postings against an indexed catalogue.

>>> from shopee_match.index import MatchIndex
"""

from __future__ import annotations

from ._steps import INDEX_STEPS, IndexKind
from .matchindex import INDEX_RADIUS, MatchIndex

__all__ = ["INDEX_RADIUS", "INDEX_STEPS", "IndexKind", "MatchIndex"]
