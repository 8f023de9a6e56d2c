"""The ``shopee-match match`` command: a submission CSV, on one machine or on Dask."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import common, load_or_default, postings_args, read

__all__ = ["COMMANDS", "add_parsers", "cmd_match"]


def add_parsers(sub: Any) -> None:
    """Register ``match`` on the ``shopee-match`` sub-parsers."""
    p = sub.add_parser("match", help="write a submission CSV (posting_id,matches)")
    p.add_argument("postings", metavar="POSTINGS.csv")
    postings_args(p)
    p.add_argument("--model", metavar="MODEL_DIR",
                   help="a folder from `fit` (default: the shipped pretrained model)")
    p.add_argument("-o", "--output", required=True, metavar="submission.csv")
    p.add_argument("--scheduler", metavar="ADDRESS|local:N",
                   help="run on Dask: a scheduler address, or local:N for N local workers; "
                        "POSTINGS may then be a glob of CSV/Parquet files (no --model: the "
                        "shipped model)")
    p.add_argument("--method", choices=["exact", "ivf"], default="exact",
                   help="distributed search with --scheduler: exact block pairs, or IVF cells "
                        "(approximate)")
    common(p)


def cmd_match(args: argparse.Namespace, verbose: bool) -> int:
    from .._persist import atomic_file

    if args.scheduler:
        return _match_dask(args)
    postings = read(args, args.postings)
    pipe = load_or_default(args, postings, verbose)
    sub = pipe.predict(postings)
    with atomic_file(args.output, "w", encoding="utf-8", newline="") as fh:
        sub.to_csv(fh, index=False)
    mean = sub["matches"].str.count(" ").mean() + 1 if len(sub) else 0.0
    print(f"wrote {len(sub)} postings to {args.output} (mean {mean:.2f} matches each)")
    return 0


def _match_dask(args: argparse.Namespace) -> int:
    """``match --scheduler ADDRESS|local:N``: :func:`shopee_match.distributed.predict_dask`
    over the file or glob, the submission streamed to ``--output``."""
    try:
        from ..distributed import predict_dask
    except ImportError as exc:  # pragma: no cover - dask is an extra
        raise ImportError(f"--scheduler needs Dask: pip install 'shopee_match[dask]' ({exc})") from exc
    from ..pipeline import Pipeline

    # no --model: the shipped pretrained model (fitting one would need every posting on
    # one machine; the shipped one learns its vocabulary by a pass over the partitions)
    pipe = Pipeline.load(args.model) if args.model else Pipeline.pretrained()
    pipe.set_params(verbose=False)
    stats = predict_dask(pipe, args.postings, scheduler=args.scheduler, image_dir=args.images,
                         encoding=args.encoding, method=args.method, output=args.output)
    print(f"wrote {stats['n_written']} postings to {args.output} (mean "
          f"{stats['mean_matches']:.2f} matches each; {stats.get('n_partitions', 0)} "
          f"partitions on Dask, method {args.method})")
    return 0


COMMANDS = {"match": cmd_match}
