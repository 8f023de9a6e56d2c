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
    p.add_argument("--pairs-out", metavar="pairs.csv",
                   help="also write the matched pairs: left_id,right_id,probability,evidence "
                        "(evidence in words: shared code, sizes differ, ...)")
    p.add_argument("--groups-out", metavar="groups.csv",
                   help="also write each posting's match set: posting_id,group (connected "
                        "match sets numbered from 0)")
    p.add_argument("--memory", metavar="SIZE",
                   help="memory budget of the run, e.g. 4GB: candidate pairs are scored in "
                        "blocks that fit it (default: a quarter of the machine, at most 2GB); "
                        "the matches do not depend on it")
    p.add_argument("--no-shift-guard", action="store_true",
                   help="keep a --model's own cut even on a catalogue unlike those it was "
                        "fitted on (by default it then keeps only the pairs the shipped "
                        "model also keeps, and warns)")
    p.add_argument("--exclusive-sources", action="store_true",
                   help="with a source column (--source-column): each source lists a product "
                        "at most once (shop feeds, two shops to link), so no pair inside a "
                        "source is kept")
    p.add_argument("--one-per-source", action="store_true",
                   help="with --exclusive-sources: also at most one match in each other "
                        "source, the most probable (two catalogues linked one to one)")
    p.add_argument("--no-self-train", action="store_true",
                   help="keep the model's own cut: do not let the catalogue's code "
                        "agreements add back the worded-alike pairs it dropped (the "
                        "shipped model does so by default)")
    p.add_argument("--scheduler", metavar="ADDRESS|local:N",
                   help="run on Dask: a scheduler address, or local:N for N local workers; "
                        "POSTINGS may then be a glob of CSV/Parquet files (no --model: the "
                        "shipped model)")
    p.add_argument("--method", choices=["exact", "ivf"], default="exact",
                   help="distributed search with --scheduler: exact block pairs, or IVF cells "
                        "(approximate)")
    common(p)


def cmd_match(args: argparse.Namespace, verbose: bool) -> int:
    import pandas as pd

    from .._persist import atomic_file

    if args.scheduler:
        if (args.pairs_out or args.groups_out or args.id_column or args.title_column
                or args.source_column or args.memory or args.exclusive_sources):
            raise ValueError("--pairs-out, --groups-out, --id-column, --title-column, "
                             "--source-column, --exclusive-sources and --memory (workers "
                             "size their partitions instead) are "
                             "not supported with --scheduler yet; match on one machine, or "
                             "name the files' columns posting_id and title.")
        return _match_dask(args)
    from .._memory import parse_memory

    memory = parse_memory(args.memory)  # a bad size fails before any work
    postings = read(args, args.postings)
    if args.one_per_source and not args.exclusive_sources:
        raise ValueError("--one-per-source goes with --exclusive-sources.")
    if args.exclusive_sources and not postings.has_sources:
        raise ValueError(f"{args.postings}: --exclusive-sources needs a source column "
                         "(name it `source`, or pass --source-column NAME).")
    pipe = load_or_default(args, postings, verbose)
    if args.no_shift_guard:
        pipe.set_params(shift_guard=False)
    if args.exclusive_sources:
        pipe.set_params(exclusive_sources="one" if args.one_per_source else True)
    _self_train_flag(args, pipe)
    tables = {}
    if (args.pairs_out or args.groups_out) and len(postings):
        from ..review import score_pairs

        scores = score_pairs(pipe, postings)
        sub = scores.submission()
        if args.pairs_out:
            tables[args.pairs_out] = scores.table(kept=True)
        if args.groups_out:
            tables[args.groups_out] = pd.DataFrame({"posting_id": sub["posting_id"],
                                                    "group": scores.groups()})
    else:
        sub = pipe.predict(postings, memory=memory)
        empty = pd.Series([], dtype=str)
        if args.pairs_out:
            tables[args.pairs_out] = pd.DataFrame({"left_id": empty, "right_id": empty,
                                                   "probability": empty, "evidence": empty})
        if args.groups_out:
            tables[args.groups_out] = pd.DataFrame({"posting_id": empty, "group": empty})
    tables[args.output] = sub
    for path, table in tables.items():  # every table made before any file is written
        with atomic_file(path, "w", encoding="utf-8", newline="") as fh:
            table.to_csv(fh, index=False)
    mean = sub["matches"].str.count(" ").mean() + 1 if len(sub) else 0.0
    print(f"wrote {len(sub)} postings to {args.output} (mean {mean:.2f} matches each)")
    for path, table in tables.items():
        if path != args.output:
            print(f"wrote {len(table)} rows to {path}")
    return 0


def _self_train_flag(args: argparse.Namespace, pipe: Any) -> None:
    """``--no-self-train``: the model's own cut (on one machine and on Dask)."""
    if args.no_self_train and "self_train" in getattr(getattr(pipe, "combiner_", None),
                                                      "get_params", dict)():
        pipe.combiner_.set_params(self_train=False)


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
    pipe.set_params(verbose=False, shift_guard=not args.no_shift_guard)
    _self_train_flag(args, pipe)
    stats = predict_dask(pipe, args.postings, scheduler=args.scheduler, image_dir=args.images,
                         encoding=args.encoding, method=args.method, output=args.output)
    print(f"wrote {stats['n_written']} postings to {args.output} (mean "
          f"{stats['mean_matches']:.2f} matches each; {stats.get('n_partitions', 0)} "
          f"partitions on Dask, method {args.method})")
    return 0


COMMANDS = {"match": cmd_match}
