"""The ``shopee-match review`` command (placeholder until the review page lands)."""

from __future__ import annotations

from typing import Any

__all__ = ["COMMANDS", "add_parsers"]


def add_parsers(sub: Any) -> None:
    """Register ``review`` on the sub-parsers."""


COMMANDS: dict[str, Any] = {}
