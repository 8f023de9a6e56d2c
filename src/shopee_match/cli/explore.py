"""The ``shopee-match demo`` and ``eda`` commands."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ._common import common, postings_args, read

__all__ = ["COMMANDS", "add_parsers", "cmd_demo", "cmd_eda"]


def add_parsers(sub: Any) -> None:
    """Register ``demo`` and ``eda`` on the sub-parsers."""
    p = sub.add_parser("demo", help="generate a catalogue, fit, match, print F1")
    p.add_argument("-o", "--output", default="demo_submission.csv", metavar="submission.csv")
    p.add_argument("--groups", type=int, default=300, help="label groups to generate")
    p.add_argument("--workdir", metavar="DIR", help="where to write the catalogue (default: temp)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-rerank", action="store_true", help="union of thresholded steps only")
    common(p)

    p = sub.add_parser("eda", help="exploratory plots of a postings CSV as PNGs")
    p.add_argument("postings", metavar="POSTINGS.csv")
    postings_args(p)
    p.add_argument("-o", "--output", required=True, metavar="DIR")
    common(p)


def cmd_demo(args: argparse.Namespace, verbose: bool) -> int:
    from .._persist import atomic_file, temp_dir
    from ..data import train_test_split_groups
    from ..datasets import make_catalog
    from ..metrics import f1_score, match_nothing_f1
    from ..pipeline import Pipeline

    work = Path(args.workdir) if args.workdir else temp_dir("shopee_match_demo_")
    catalog = make_catalog(n_groups=args.groups, image_dir=work / "images", seed=args.seed)
    with atomic_file(work / "catalog.csv", "w", encoding="utf-8", newline="") as fh:
        catalog.df.to_csv(fh, index=False)
    train, test = train_test_split_groups(catalog, test_size=1 / 3, random_state=args.seed)
    print(f"generated {len(catalog)} postings in {args.groups} groups under {work}")
    pipe = Pipeline.default(rerank=not args.no_rerank, verbose=verbose).fit(train)
    sub = pipe.predict(test)
    ids = test.posting_id
    truth = [set(ids[m]) for m in test.true_matches()]
    print(f"fitted on {len(train)} postings; held-out F1 on {len(test)} postings: "
          f"{f1_score(truth, sub['matches'].tolist()):.4f} (match nothing "
          f"{match_nothing_f1(test.groups()):.4f})")
    print(pipe.evaluate(test).to_string(float_format=lambda v: f"{v:.4f}"))
    with atomic_file(args.output, "w", encoding="utf-8", newline="") as fh:
        sub.to_csv(fh, index=False)
    print(f"wrote submission to {args.output}")
    return 0


def cmd_eda(args: argparse.Namespace, verbose: bool) -> int:
    from ..plots import eda_plots

    postings = read(args, args.postings)
    written = eda_plots(postings, args.output)
    for path in written:
        print(path)
    return 0


COMMANDS = {"demo": cmd_demo, "eda": cmd_eda}
