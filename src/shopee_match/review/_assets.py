"""The review page's inline style and script (``page.css``, ``page.js`` beside this
module; no file, font or library is fetched by the page)."""

from __future__ import annotations

from importlib.resources import files

__all__ = ["CSS", "JS"]

CSS = files(__package__).joinpath("page.css").read_text(encoding="utf-8")
JS = files(__package__).joinpath("page.js").read_text(encoding="utf-8")
