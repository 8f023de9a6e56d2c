"""A griffe extension (docs build only): read the project's compact numpydoc.

The code's docstrings follow numpydoc with two shortcuts that keep them short:

- a parameter's description on the same line as its name (``k : neighbours searched``),
  where numpydoc puts a *type* after the colon (the types come from the signature);
- doctests (``>>>``) after the last section without an ``Examples`` header;
- several parameters sharing one description (``s, m : the head's scale and margin``);
- Sphinx roles (``:class:`~shopee_match.Postings```), which Markdown does not know.

Left alone, griffe's numpy parser would show those descriptions as types and drop the
doctests with a warning. This extension rewrites each docstring, before it is parsed, into
the long form: one ``name`` per parameter with the description on an indented line, an
``Examples`` header above the first doctest, and roles as inline code. A genuine type
(``int``, ``list of str``, ``float | None``) stays a type.
"""

from __future__ import annotations

import re
from typing import Any

from griffe import Extension, GriffeLoader, Object

_SECTIONS = {"Parameters", "Other Parameters", "Attributes", "Keyword Arguments"}
_NAME = r"\*{0,2}[A-Za-z_]\w*"
_ITEM = re.compile(rf"^(?P<names>{_NAME}(?:,\s*{_NAME})*)\s+:\s+(?P<rest>.+)$")
_TYPE_CHARS = re.compile(r"^[\w.\[\]|, ]+$")
_ROLE = re.compile(r":(?:py:)?[a-z]+:`~?([^`]+)`")


def _is_dashes(line: str) -> bool:
    return len(line) >= 3 and set(line.strip()) == {"-"}


def _looks_like_type(text: str) -> bool:
    text = text.strip()
    if not _TYPE_CHARS.match(text) or text.endswith(".") or len(text.split()) > 4:
        return False
    return " " not in text or any(w in text for w in (" of ", " or ", ", optional", "|", "["))


def rewrite(doc: str) -> str:
    """The long numpydoc form of a compact docstring (see the module docstring)."""
    lines = doc.splitlines()
    out: list[str] = []
    section = None
    has_examples = False
    i = 0
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if line and not line.startswith(" ") and _is_dashes(nxt):
            section = line.strip()
            has_examples = has_examples or section == "Examples"
            out += [line, nxt]
            i += 2
            continue
        if (line.startswith(">>>") and section != "Examples" and not has_examples
                and (not out or not out[-1].strip())):
            out += ["Examples", "--------"]
            section, has_examples = "Examples", True
        m = _ITEM.match(line) if section in _SECTIONS else None
        if m and not _looks_like_type(m.group("rest")):
            names = [n.strip() for n in m.group("names").split(",")]
            more = []  # the description's continuation lines, repeated for each name
            while i + 1 < len(lines) and (lines[i + 1].startswith(" ") or not lines[i + 1]):
                if not lines[i + 1] and not (i + 2 < len(lines) and lines[i + 2].startswith(" ")):
                    break
                more.append(lines[i + 1])
                i += 1
            for name in names:
                out += [name, "    " + m.group("rest"), *more]
        else:
            out.append(line)
        i += 1
    return _ROLE.sub(_code, "\n".join(out))


def _code(m: re.Match[str]) -> str:
    target = m.group(0)
    name = m.group(1)
    return f"``{name.rsplit('.', 1)[-1] if '`~' in target else name}``"


class CompactNumpydoc(Extension):
    """Rewrite every docstring with :func:`rewrite` before griffe parses it."""

    def on_object(self, *, obj: Object, loader: GriffeLoader, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value)
