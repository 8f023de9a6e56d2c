"""Memory budgets: ``"4GB"`` read as bytes, the machine's default, and blocks sized by them.

A run's memory is bounded by a budget and a block, never by the catalogue: the parts
that grow with the catalogue are O(postings x k) (embeddings, candidate graphs, one
float per candidate pair), and the pair work that would grow with it goes a block of
query postings at a time, the block sized to what the budget leaves.
"""

from __future__ import annotations

import os
import re
import resource
import warnings

__all__ = [
    "BYTES_PER_POSTING",
    "DEFAULT_BUDGET_CAP",
    "block_pairs",
    "check_fits",
    "default_budget",
    "parse_memory",
    "rss_bytes",
]

#: the default budget: a quarter of the machine's memory, at most this (blocks larger
#: than a few hundred thousand pairs are no faster)
DEFAULT_BUDGET_CAP = 2 * 2**30

#: fewest pairs a block holds, whatever the budget (below this, per-block overhead rules)
MIN_BLOCK_PAIRS = 2**14

_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 2**10, "kib": 2**10, "m": 2**20, "mb": 2**20,
          "mib": 2**20, "g": 2**30, "gb": 2**30, "gib": 2**30, "t": 2**40, "tb": 2**40,
          "tib": 2**40}


def parse_memory(memory: str | int | float | None) -> int:
    """Bytes of a budget given as ``"4GB"``, ``"512MiB"``, ``"1.5g"`` or a number of
    bytes; ``None`` is :func:`default_budget`. (Units are binary: 1GB = 2**30 bytes.)

    >>> parse_memory("4GB") == 4 * 2**30, parse_memory("512 MiB") == 512 * 2**20
    (True, True)
    >>> parse_memory(10**9)
    1000000000
    """
    if memory is None:
        return default_budget()
    if isinstance(memory, bool):
        raise TypeError(f"`memory` must be a size such as '4GB' or a number of bytes, got {memory!r}.")
    if isinstance(memory, (int, float)):
        value = float(memory)
    elif isinstance(memory, str):
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", memory)
        if not m or m.group(2).lower() not in _UNITS:
            raise ValueError(
                f"`memory` {memory!r} is not a size; write it as e.g. '4GB', '512MB' or a "
                "number of bytes."
            )
        value = float(m.group(1)) * _UNITS[m.group(2).lower()]
    else:
        raise TypeError(f"`memory` must be a size such as '4GB' or a number of bytes, got "
                        f"{type(memory).__name__}.")
    if value < 2**26:
        raise ValueError(f"`memory` {memory!r} is below 64MB, too small to run in; give e.g. '2GB'.")
    return int(value)


def total_memory() -> int:
    """Bytes of physical memory of this machine (0 where it cannot be read)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


def default_budget() -> int:
    """A quarter of the machine's memory, at most :data:`DEFAULT_BUDGET_CAP`."""
    total = total_memory()
    return min(DEFAULT_BUDGET_CAP, total // 4) if total else DEFAULT_BUDGET_CAP


def rss_bytes() -> int:
    """Resident memory of this process now (its high-water mark where /proc is absent)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except OSError:
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def block_pairs(budget: int, bytes_per_pair: int, *, what: str = "pairs") -> int:
    """Pairs a block may hold: what ``budget`` leaves above this process's memory now,
    divided by ``bytes_per_pair`` (at least :data:`MIN_BLOCK_PAIRS`, with a warning when
    the budget is already spent).

    >>> block_pairs(2**33, 4096) >= 2**14
    True
    """
    free = budget - rss_bytes()
    if free < MIN_BLOCK_PAIRS * bytes_per_pair:
        warnings.warn(
            f"the memory budget ({budget / 2**30:.2f} GiB) is nearly spent before scoring "
            f"{what} ({rss_bytes() / 2**30:.2f} GiB in use): going on in the smallest blocks; "
            "give a larger `memory` (--memory) to go faster.", UserWarning, stacklevel=3,
        )
        return MIN_BLOCK_PAIRS
    return int(free // bytes_per_pair)


#: memory one posting of a catalogue costs outside the pair blocks (its embeddings, the
#: search's dense block, candidate graphs and their contexts; measured with the shipped
#: model on a 62k-title catalogue: 1.2 GiB after the search, 1.8 GiB at the peak)
BYTES_PER_POSTING = 8 * 2**10


def check_fits(n: int, budget: int, *, per_posting: int = BYTES_PER_POSTING) -> None:
    """Refuse up front a catalogue that could not fit in this machine's memory, naming the
    size it would need (rather than being killed for it later); warn when it needs more
    than ``budget`` (the run goes on in the smallest blocks).

    >>> check_fits(1000, 2**31)
    """
    need = n * per_posting + rss_bytes()
    total = total_memory()
    if total and need > total:
        raise MemoryError(
            f"{n:,} postings need about {need / 2**30:.1f} GiB on one machine, more than its "
            f"{total / 2**30:.1f} GiB: match them on Dask instead (shopee_match.distributed."
            "predict_dask, or `shopee-match match ... --scheduler local:N`), or in parts "
            "against an index (`shopee-match index` / `query`)."
        )
    if need > budget:
        warnings.warn(
            f"{n:,} postings need about {need / 2**30:.1f} GiB before their pairs are scored, "
            f"more than the memory budget of {budget / 2**30:.1f} GiB; going on (pairs in the "
            "smallest blocks). Give a larger `memory` (--memory) to silence this.",
            UserWarning, stacklevel=3,
        )
