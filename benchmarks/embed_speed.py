"""Throughput of ImageEmbedder and BertEmbedder next to a bare ``model.predict``.

The bare call runs the same Keras model on the same, already decoded / tokenised batch, so
``overhead = embedder time / bare time`` is what the library's input pipeline (file reading,
JPEG decode, resize, tokenising, chunking, normalising) costs on top of the network.

Usage::

    python benchmarks/embed_speed.py --n-images 256 --image-size 128 --n-titles 2000 \
        --csv ../shared/data/shopee/train_dev.csv
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

from shopee_match import make_catalog, read_postings


def timed(fn, repeats: int) -> float:
    fn()  # warm-up: graph tracing, first allocations
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def images(args: argparse.Namespace) -> None:
    import tensorflow as tf

    from shopee_match.image.efficientnet import ImageEmbedder, _load_image

    p = make_catalog(n_groups=max(1, args.n_images // 3), per_group=(3, 3),
                     image_size=args.image_size, seed=0)
    p = p.subset(np.arange(min(args.n_images, len(p))))
    emb = ImageEmbedder(args.backbone, image_size=args.image_size, weights=None,
                        batch_size=args.batch_size).fit(p)
    batch = np.stack([_load_image(tf.constant(str(f)), args.image_size).numpy()
                      for f in p.image_paths()])
    t_emb = timed(lambda: emb.embed(p), args.repeats)
    t_bare = timed(lambda: emb.model_.predict(batch, batch_size=args.batch_size, verbose=0),
                   args.repeats)
    n = len(p)
    print(f"{args.backbone} @ {args.image_size}px, {n} JPEGs, batch {args.batch_size}: "
          f"ImageEmbedder.embed {n / t_emb:.1f} images/s | bare model.predict on decoded "
          f"array {n / t_bare:.1f} images/s | overhead x{t_emb / t_bare:.2f}")


def titles(args: argparse.Namespace) -> None:
    from shopee_match.text.bert import BertEmbedder

    if args.csv:
        p = read_postings(args.csv)
        p = p.subset(np.arange(min(args.n_titles, len(p))))
    else:
        p = make_catalog(n_groups=args.n_titles // 3, per_group=(3, 3), images=False, seed=0)
    emb = BertEmbedder(max_len=args.max_len, batch_size=args.batch_size).fit(p)
    x = emb.tokenize(p.titles)
    t_emb = timed(lambda: emb.embed(p), args.repeats)
    t_bare = timed(lambda: emb.model_.predict(x, batch_size=args.batch_size, verbose=0),
                   args.repeats)
    t_tok = timed(lambda: emb.tokenize(p.titles), args.repeats)
    n = len(p)
    print(f"MiniLM-L6 max_len {args.max_len}, {n} titles, batch {args.batch_size}: "
          f"BertEmbedder.embed {n / t_emb:.1f} titles/s | bare model.predict on token ids "
          f"{n / t_bare:.1f} titles/s | overhead x{t_emb / t_bare:.2f} "
          f"(tokenising alone {n / t_tok:.0f} titles/s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-images", type=int, default=256)
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--backbone", default="efficientnet_b0")
    ap.add_argument("--n-titles", type=int, default=2000)
    ap.add_argument("--csv", help="postings CSV for real titles (default: synthetic titles)")
    ap.add_argument("--max-len", type=int, default=70)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--part", choices=("image", "text", "all"), default="all")
    args = ap.parse_args()
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    print(f"device: {'GPU ' + str(gpus) if gpus else 'CPU only (no GPU on this machine)'}, "
          f"{os.cpu_count()} CPU cores visible")
    if args.part in ("image", "all"):
        images(args)
    if args.part in ("text", "all"):
        titles(args)


if __name__ == "__main__":
    main()
