"""All-to-all shuffles between tasks, in about ``P * sqrt(D) + D`` tasks.

``P`` sources each send one piece to each of ``D`` destinations (a partition's rows to
the buckets holding its cells, graph columns to their owners, ...). One task per piece
is ``P * D`` tasks: at 2M postings in 400 partitions, millions for one shuffle, which
stall the scheduler. Here each source's pieces are sliced a group of about ``sqrt(D)``
destinations at a time, one task gathers a group's slices from every source, and each
destination reads its own pieces from its group's list (:func:`route`); the pieces
arrive in source order, as one task per piece would give them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["apply_pieces", "group_size", "route", "route_by"]


def _slice(pieces: list[Any], lo: int, hi: int) -> list[Any]:
    return pieces[lo:hi]


def _regroup(*slices: list[Any]) -> list[list[Any]]:
    """Slices of the sources (one list each, a piece per destination of the group) as
    one list per destination of its pieces, in source order."""
    return [[s[i] for s in slices] for i in range(len(slices[0]))]


def _apply(fn: Any, group: list[list[Any]], i: int, *args: Any) -> Any:
    return fn(*args, *group[i])


def group_size(n_dest: int) -> int:
    """Destinations whose pieces one task gathers: about ``sqrt(n_dest)``.

    >>> group_size(400), group_size(3)
    (20, 2)
    """
    return max(1, int(np.ceil(np.sqrt(n_dest))))


def route(client: Any, split: list[Any], n_dest: int,
          group: int | None = None) -> list[tuple[Any, int]]:
    """For each of ``n_dest`` destinations, a handle ``(future, index)`` on the list of
    its pieces: piece ``d`` of every future in ``split`` (each a list of ``n_dest``
    pieces), in source order. Use it with :func:`apply_pieces`.

    ``P * G`` slicing tasks and ``G`` gathering ones for ``G = n_dest / group``
    groups, instead of a task per (source, destination).
    """
    return route_by(client, len(split), n_dest,
                    lambda b, lo, hi: client.submit(_slice, split[b], lo, hi, pure=False),
                    group)


def route_by(client: Any, n_src: int, n_dest: int, pieces: Callable[[int, int, int], Any],
             group: int | None = None) -> list[tuple[Any, int]]:
    """:func:`route` where ``pieces(b, lo, hi)`` submits the task giving source ``b``'s
    pieces for destinations ``lo`` to ``hi - 1`` (a list)."""
    group = group_size(n_dest) if group is None else max(1, int(group))
    out: list[tuple[Any, int]] = []
    for lo in range(0, n_dest, group):
        hi = min(lo + group, n_dest)
        gathered = client.submit(_regroup, *[pieces(b, lo, hi) for b in range(n_src)],
                                 pure=False)
        out.extend((gathered, i) for i in range(hi - lo))
    return out


def apply_pieces(client: Any, handle: tuple[Any, int], fn: Any, *args: Any) -> Any:
    """A future of ``fn(*args, *pieces)`` for a destination's ``handle`` (of :func:`route`)."""
    gathered, i = handle
    return client.submit(_apply, fn, gathered, i, *args, pure=False)
