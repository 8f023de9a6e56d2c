"""The ``shopee-match index`` and ``shopee-match query`` commands."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import common, load_or_default, postings_args, read

__all__ = ["COMMANDS", "add_parsers", "cmd_index", "cmd_query"]


def add_parsers(sub: Any) -> None:
    """Register ``index`` and ``query`` on the ``shopee-match`` sub-parsers."""
    p = sub.add_parser("index", help="index a catalogue for matching new postings against it")
    p.add_argument("catalogue", metavar="CATALOGUE.csv")
    postings_args(p)
    p.add_argument("--model", metavar="MODEL_DIR",
                   help="a folder from `fit` (default: as for `match`, the shipped pretrained model)")
    p.add_argument("-o", "--output", required=True, metavar="INDEX_DIR")
    p.add_argument("--radius", type=int, default=None,
                   help="hops of catalogue rows a query recomputes (default: exact)")
    p.add_argument("--no-shift-guard", action="store_true",
                   help="keep a --model's own cut even on a catalogue unlike those it was "
                        "fitted on (by default the index then keeps only the pairs the "
                        "shipped model also keeps, and warns, as `match` does)")
    common(p)

    p = sub.add_parser("query", help="match new postings against an index (CSV posting_id,matches)")
    p.add_argument("postings", metavar="NEW.csv")
    postings_args(p)
    p.add_argument("--index", required=True, metavar="INDEX_DIR", help="a folder from `index`")
    p.add_argument("-o", "--output", required=True, metavar="matches.csv")
    p.add_argument("--add", action="store_true", help="then fold the new postings into the index")
    p.add_argument("--replace", action="store_true",
                   help="postings whose ids are indexed replace them (else: an error)")
    common(p)


def cmd_index(args: argparse.Namespace, verbose: bool) -> int:
    catalogue = read(args, args.catalogue)
    pipe = load_or_default(args, catalogue, verbose)
    if args.no_shift_guard:
        pipe.set_params(shift_guard=False)
    from ..index.matchindex import MatchIndex

    index = MatchIndex.build(pipe, catalogue, radius=args.radius)
    index.save(args.output)
    guard = " (shift guard: the shipped model's pairs only)" if index.guard is not None else ""
    print(f"indexed {len(index)} postings to {args.output}{guard}")
    return 0


def cmd_query(args: argparse.Namespace, verbose: bool) -> int:
    from .._persist import atomic_file
    from ..index import MatchIndex

    new = read(args, args.postings)
    index = MatchIndex.load(args.index)
    sub = index.query(new, replace=args.replace)
    with atomic_file(args.output, "w", encoding="utf-8", newline="") as fh:
        sub.to_csv(fh, index=False)
    mean = sub["matches"].str.count(" ").mean() + 1 if len(sub) else 0.0
    print(f"wrote {len(sub)} postings to {args.output} (mean {mean:.2f} matches each)")
    if args.add:
        index.add(new, replace=args.replace)
        index.save(args.index)
        print(f"added them: the index now holds {len(index)} postings")
    return 0


COMMANDS = {"index": cmd_index, "query": cmd_query}
