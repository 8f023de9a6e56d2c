"""All-to-all shuffles on Dask: one task a piece against the two-hop route, side by side.

    python benchmarks/shuffle_tasks.py --parts 40 100 200 400 [--old-max 200]

Each of ``P`` source tasks makes a list of ``P`` small pieces (one per destination, as a
partition's rows split by owner); each destination concatenates its pieces. Two ways of
wiring it, timed one after the other on the same 2-worker ``LocalCluster``:

- ``one-per-piece``: a ``getitem`` task per (source, destination), ``P * P`` tasks (what
  ``distributed/`` did before the ninth session: the IVF shuffle at 2M postings made
  3.8 million tasks that way and stalled the scheduler);
- ``route``: :func:`shopee_match.distributed._route.route`, sources in groups of
  ``sqrt(P)`` to gatherers of ``sqrt(P)`` destinations, about ``2 P sqrt(P)`` tasks.

Prints, for each ``P``, the tasks each made, its wall seconds (submission included),
the ratio, and whether every destination got the same pieces in the same order.
``--old-max``: the largest ``P`` the one-per-piece wiring is run at (its cost is the
square of ``P``).
"""

from __future__ import annotations

import argparse
import operator
import time
from typing import Any

import numpy as np


def _pieces(b: int, n_dest: int) -> list[np.ndarray]:
    return [np.full(4, b * 100_000 + d, dtype=np.int64) for d in range(n_dest)]


def _concat(*pieces: np.ndarray) -> np.ndarray:
    return np.concatenate(pieces)


def one_per_piece(client: Any, split: list[Any], n_dest: int) -> tuple[list[Any], int]:
    out = []
    for d in range(n_dest):
        mine = [client.submit(operator.getitem, s, d, pure=False) for s in split]
        out.append(client.submit(_concat, *mine, pure=False))
    return out, len(split) * n_dest + n_dest


def routed(client: Any, split: list[Any], n_dest: int) -> tuple[list[Any], int]:
    from shopee_match.distributed._route import apply_pieces, route

    handles = route(client, split, n_dest)
    out = [apply_pieces(client, h, _concat) for h in handles]
    gatherers = {g.key for h in handles for g in h[0]}
    # slices (one per source and destination group), gatherers, a getitem per
    # destination and gatherer, the destinations
    n_groups = len({id(h[0]) for h in handles})
    tasks = len(split) * n_groups + len(gatherers) + sum(len(h[0]) for h in handles) + n_dest
    return out, tasks


def run(client: Any, n_parts: int, how: Any) -> tuple[float, int, list[np.ndarray]]:
    t0 = time.perf_counter()
    split = [client.submit(_pieces, b, n_parts, pure=False) for b in range(n_parts)]
    out, tasks = how(client, split, n_parts)
    got = client.gather(out)
    return time.perf_counter() - t0, tasks + n_parts, got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", type=int, nargs="+", default=[40, 100, 200, 400])
    ap.add_argument("--old-max", type=int, default=400,
                    help="largest P for the one-task-a-piece wiring")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        print(f"{'P':>5} {'wiring':>14} {'tasks':>9} {'seconds':>9} {'ratio':>7} same")
        for p in args.parts:
            new_s, new_tasks, new = run(client, p, routed)
            if p <= args.old_max:
                old_s, old_tasks, old = run(client, p, one_per_piece)
                same = all(np.array_equal(a, b) for a, b in zip(old, new))
                print(f"{p:>5} {'one-per-piece':>14} {old_tasks:>9,} {old_s:>9.1f} "
                      f"{'':>7} {'':>4}")
                print(f"{p:>5} {'route':>14} {new_tasks:>9,} {new_s:>9.1f} "
                      f"{old_s / new_s:>6.1f}x {same}")
            else:
                print(f"{p:>5} {'route':>14} {new_tasks:>9,} {new_s:>9.1f}")


if __name__ == "__main__":
    main()
