"""Model codes, numbers and units read as a person reads them.

Shops write one model code many ways: ``KX-TS108W``, ``kxts108w``, ``KX TS108W``;
``STR-DE197`` and ``strde197``. A size with its unit is one thing whatever the spacing:
``64 GB``, ``64gb``, ``64-GB``. These helpers turn each into one token, so text vectors
and pair features see one code where a person sees one, and two different codes
(``KXTS108W`` against ``KXTS600W``) as a conflict rather than as four shared letters.

Nothing here depends on a language or a word list: a code is any token mixing letters
and digits; a quantity is a number followed by at most three letters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["code_tokens", "join_codes", "split_kinds"]

# letters/digits pieces joined by -, /, . or _ (at least one separator)
_JOINED = re.compile(r"(?<![^\W_])[^\W_]+(?:[-/._][^\W_]+)+(?![^\W_])")
_DECIMAL = re.compile(r"^\d+(?:[.,]\d+)+$")
_QUANTITY = re.compile(r"^\d+(?:\.\d+)?[^\W\d_]{1,3}$")
_NUMBER = re.compile(r"^\d+(?:\.\d+)?$")


def _mixed(tok: str) -> bool:
    return any(c.isdigit() for c in tok) and any(c.isalpha() for c in tok)


def join_codes(text: str) -> str:
    """Join code pieces split by ``- / . _`` into one token, keeping the pieces too.

    A run is joined only when the joined form mixes letters and digits (a model code or
    a size with its unit); decimals and plain hyphenated words are left alone.

    >>> join_codes("panasonic kx-ts108w phone")
    'panasonic kxts108w kx ts108w phone'
    >>> join_codes("wi-fi 5.5 inch 64-gb")
    'wi-fi 5.5 inch 64gb 64 gb'
    """

    def fix(m: re.Match[str]) -> str:
        run = m.group(0)
        if _DECIMAL.match(run):
            return run
        pieces = [p for p in re.split(r"[-/._]", run) if p]
        joined = "".join(pieces)
        if not _mixed(joined):
            return run
        return " ".join([joined, *pieces])

    return _JOINED.sub(fix, text)


def code_tokens(tokens: list[str]) -> list[str]:
    """``tokens`` plus codes written with a space: a short word (at most 3 letters) right
    before a token holding a digit is also emitted glued (``kx ts108w`` -> ``kxts108w``).

    >>> code_tokens(["panasonic", "kx", "ts108w", "galaxy", "s10"])
    ['panasonic', 'kx', 'ts108w', 'kxts108w', 'galaxy', 's10']
    """
    out: list[str] = []
    prev = ""
    for tok in tokens:
        out.append(tok)
        if (prev and prev.isalpha() and len(prev) <= 3 and any(c.isdigit() for c in tok)
                and not _QUANTITY.match(tok) and not _NUMBER.match(tok)):
            out.append(prev + tok)
        prev = tok
    return out


def split_kinds(tokens: Iterable[str]) -> tuple[set[str], set[str], set[str]]:
    """``(codes, quantities, numbers)`` among ``tokens``.

    >>> split_kinds(["kxts108w", "64gb", "2", "phone"])
    ({'kxts108w'}, {'64gb'}, {'2'})
    """
    codes, qty, nums = set(), set(), set()
    for t in tokens:
        if _NUMBER.match(t):
            nums.add(t)
        elif _QUANTITY.match(t):
            qty.add(t)
        elif _mixed(t):
            codes.add(t)
    return codes, qty, nums
