"""The ``shopee-match`` command: fit, match, evaluate, calibrate, review, index, query,
demo and eda over the public API.

One module per group of commands (:mod:`.model`, :mod:`.match`, :mod:`.review`,
:mod:`.index`, :mod:`.explore`); each registers its sub-parsers and names its command
functions. The CLI sits above every other layer: it imports the pipeline, the index and
the Dask runtime, and nothing imports it.

Errors print one line naming the file, row or column and the fix, and exit 2 (1 for
unexpected failures); ``--debug`` shows the traceback. Outputs are written atomically.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from . import explore, index, match, model, review
from ._common import PRETRAINED_MIN_POSTINGS

__all__ = ["PRETRAINED_MIN_POSTINGS", "build_parser", "main"]

logger = logging.getLogger("shopee_match")

_GROUPS = (model, match, review, index, explore)
_COMMANDS: dict[str, Callable[[argparse.Namespace, bool], int]] = {
    name: func for group in _GROUPS for name, func in group.COMMANDS.items()}


def build_parser() -> argparse.ArgumentParser:
    """The ``shopee-match`` argument parser, every command's sub-parser registered.

    >>> build_parser().parse_args(["match", "p.csv", "-o", "s.csv"]).command
    'match'
    """
    parser = argparse.ArgumentParser(
        prog="shopee-match",
        description="Find every product posting that is the same product, from titles and images.",
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"shopee_match {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in _GROUPS:
        group.add_parsers(sub)
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``shopee-match``; returns the exit status.

    >>> main(["--version"])  # doctest: +SKIP
    """
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
            PermissionError, IsADirectoryError, MemoryError) as exc:
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
