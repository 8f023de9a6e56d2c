"""What every ``shopee-match`` command shares: common options, reading postings, the
model to use."""

from __future__ import annotations

import argparse
import logging
import warnings
from typing import Any

__all__ = ["PRETRAINED_MIN_POSTINGS", "common", "load_or_default", "postings_args", "read"]

logger = logging.getLogger("shopee_match")

#: smallest file that ``match`` without ``--model`` gives to the shipped pretrained model
PRETRAINED_MIN_POSTINGS = 100


def common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars or log lines")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")


def postings_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", metavar="DIR", help="folder holding the `image` files")
    p.add_argument("--encoding", help="CSV encoding (default: UTF-8, falling back to latin-1)")
    p.add_argument("--id-column", metavar="NAME",
                   help="the CSV's column holding posting ids (default: posting_id)")
    p.add_argument("--title-column", metavar="NAME",
                   help="the CSV's column holding titles (default: title)")
    p.add_argument("--source-column", metavar="NAME",
                   help="the CSV's column naming each posting's shop in a pooled catalogue "
                        "(default: source, when there is one): each shop's pairs are judged "
                        "among its own postings")


def columns(args: argparse.Namespace) -> dict[str, str] | None:
    """``read_postings``' ``columns`` mapping from ``--id-column`` / ``--title-column`` /
    ``--source-column``."""
    out = {}
    if getattr(args, "id_column", None):
        out["posting_id"] = args.id_column
    if getattr(args, "title_column", None):
        out["title"] = args.title_column
    if getattr(args, "source_column", None):
        out["source"] = args.source_column
    return out or None


def read(args: argparse.Namespace, path: str) -> Any:
    """The postings at ``path``, read with the command's ``--images``, ``--encoding``
    and column options; a one-line error for an unknown encoding or an unreadable file."""
    import codecs

    from ..data import read_postings

    if args.encoding:
        try:
            codecs.lookup(args.encoding)
        except LookupError:
            raise ValueError(f"{path}: --encoding {args.encoding!r} is not an encoding Python "
                             "knows; try utf-8, latin-1 or cp1252.") from None
    try:
        return read_postings(path, image_dir=args.images, encoding=args.encoding,
                             columns=columns(args))
    except UnicodeError as exc:  # only with --encoding: by default latin-1 reads anything
        raise ValueError(f"{path}: not readable as {args.encoding} ({exc}); pass the file's "
                         "encoding with --encoding, or leave it out to try UTF-8 then latin-1.") from None


def load_or_default(args: argparse.Namespace, postings: Any, verbose: bool) -> Any:
    """``--model``, else the shipped model, else (tiny or image-only files) the built-in
    pipeline fitted unsupervised on ``postings``."""
    from ..pipeline import Pipeline

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
