"""All-to-all shuffles between tasks, in about ``(P + D) * sqrt(D)`` small tasks.

``P`` sources each send one piece to each of ``D`` destinations (a partition's rows to
the buckets holding its cells, graph columns to their owners, ...). One task per piece
is ``P * D`` tasks: at 2M postings in 400 partitions, millions for one shuffle, which
stall the scheduler. Here the shuffle takes two hops, as Dask's task-based shuffle does:
sources in groups of about ``sqrt(P)`` send, for each group of about ``sqrt(D)``
destinations, their slices to one gathering task (about one partition's worth of data,
``total / sqrt(P * D)``), and each destination takes its pieces from the ``sqrt(P)``
gatherers of its group (:func:`route`). The pieces arrive in source order, as one task
per piece would give them.
"""

from __future__ import annotations

import operator
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


def _apply(fn: Any, n_args: int, *args: Any) -> Any:
    """``fn(*args[:n_args], *pieces)``, the pieces being every later argument's list."""
    return fn(*args[:n_args], *[p for ps in args[n_args:] for p in ps])


def group_size(n: int) -> int:
    """Sources or destinations one gathering task covers: about ``sqrt(n)``.

    >>> group_size(400), group_size(3)
    (20, 2)
    """
    return max(1, int(np.ceil(np.sqrt(n))))


def route(client: Any, split: list[Any], n_dest: int,
          group: int | None = None) -> list[tuple[list[Any], int]]:
    """For each of ``n_dest`` destinations, a handle on its pieces: piece ``d`` of every
    future in ``split`` (each a list of ``n_dest`` pieces), in source order. Use it with
    :func:`apply_pieces`. ``group``: destinations a gathering task covers (default
    about ``sqrt(n_dest)``).
    """
    return route_by(client, len(split), n_dest,
                    lambda b, lo, hi: client.submit(_slice, split[b], lo, hi, pure=False),
                    group)


def route_by(client: Any, n_src: int, n_dest: int, pieces: Callable[[int, int, int], Any],
             group: int | None = None) -> list[tuple[list[Any], int]]:
    """:func:`route` where ``pieces(b, lo, hi)`` submits the task giving source ``b``'s
    pieces for destinations ``lo`` to ``hi - 1`` (a list)."""
    group = group_size(n_dest) if group is None else max(1, int(group))
    src_group = group_size(n_src)
    out: list[tuple[list[Any], int]] = []
    for lo in range(0, n_dest, group):
        hi = min(lo + group, n_dest)
        gathered = [
            client.submit(_regroup, *[pieces(b, lo, hi)
                                      for b in range(s, min(s + src_group, n_src))],
                          pure=False)
            for s in range(0, n_src, src_group)
        ]
        out.extend((gathered, i) for i in range(hi - lo))
    return out


def apply_pieces(client: Any, handle: tuple[list[Any], int], fn: Any, *args: Any) -> Any:
    """A future of ``fn(*args, *pieces)`` for a destination's ``handle`` (of :func:`route`)."""
    gathered, i = handle
    mine = [client.submit(operator.getitem, g, i, pure=False) for g in gathered]
    return client.submit(_apply, fn, len(args), *args, *mine, pure=False)
