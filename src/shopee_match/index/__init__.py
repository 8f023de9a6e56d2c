"""Serve a fitted pipeline: match new postings against an indexed catalogue.

>>> from shopee_match.index import MatchIndex
"""

from __future__ import annotations

from .matchindex import MatchIndex

__all__ = ["MatchIndex"]
