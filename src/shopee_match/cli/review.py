"""The ``shopee-match review`` command: the offline review page of a catalogue."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import common, load_or_default, postings_args, read

__all__ = ["COMMANDS", "add_parsers", "cmd_review"]


def add_parsers(sub: Any) -> None:
    """Register ``review`` on the sub-parsers."""
    p = sub.add_parser("review", help="write one offline HTML page: match sets with evidence "
                                      "in words, and a queue of pairs to label")
    p.add_argument("catalogue", metavar="CATALOGUE.csv")
    postings_args(p)
    p.add_argument("--model", metavar="MODEL_DIR",
                   help="a folder from `fit` (default: the shipped pretrained model)")
    p.add_argument("--queue", type=int, default=200, metavar="N",
                   help="pairs in the labelling queue (default 200)")
    p.add_argument("--seed", type=int, default=0, help="seed of the queue's draw")
    p.add_argument("-o", "--output", required=True, metavar="review.html")
    common(p)


def cmd_review(args: argparse.Namespace, verbose: bool) -> int:
    from ..review import write_review

    if args.queue < 0:
        raise ValueError(f"--queue must be >= 0, got {args.queue}.")
    catalogue = read(args, args.catalogue)
    if len(catalogue) == 0:
        raise ValueError(f"{catalogue.source}: no postings to review (header only).")
    pipe = load_or_default(args, catalogue, verbose)
    path = write_review(pipe, catalogue, args.output, queue=args.queue, random_state=args.seed)
    size = path.stat().st_size / 1e6
    print(f"wrote {args.output} ({size:.1f} MB, {len(catalogue)} postings); open it in a "
          "browser, answer the queue, export labels.csv, then: shopee-match calibrate "
          f"--pairs labels.csv --catalogue {args.catalogue} -o MODEL_DIR")
    return 0


COMMANDS = {"review": cmd_review}
