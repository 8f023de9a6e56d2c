"""EfficientNet image embeddings (``keras.applications``), optionally ArcFace-fine-tuned.

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

__all__ = ["BACKBONES", "ImageEmbedder"]

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
}
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


@register()
class ImageEmbedder(BaseEmbedder):
    """EfficientNet (global average pooling) embeddings of each posting's image.

    Parameters
    ----------
    backbone : ``"efficientnet_b0"`` .. ``"efficientnet_b7"`` (the seed used B3 at 512 px).
    image_size : side in pixels images are resized to (default: the backbone's own size).
    weights : ``None`` (random), ``"imagenet"`` (downloaded by Keras; needs internet) or a
        path to a weights file of the same backbone (``.weights.h5`` or ``.keras``).
    epochs : ArcFace fine-tuning epochs on ``label_group`` in :meth:`fit`; 0 keeps the
        weights as loaded.
    batch_size : images per batch, for training and for embedding (bounds memory).
    learning_rate, margin, scale, easy_margin, ls_eps : ArcFace training options
        (``margin`` in radians).
    train_batchnorm : also train the BatchNormalization layers. Off by default: they then
        run in inference mode while training too, so a few hundred small batches cannot
        leave moving statistics that disagree with the trained weights (the Keras advice
        for fine-tuning EfficientNet).
    seed : seeds initialisation and shuffling.
    verbose : show progress bars.

    Examples
    --------
    >>> from shopee_match.datasets import make_catalog
    >>> p = make_catalog(n_groups=3, seed=0, image_size=64)
    >>> emb = ImageEmbedder("efficientnet_b0", image_size=64, weights=None).fit(p).embed(p)
    >>> emb.shape[0] == len(p), emb.shape[1]
    (True, 1280)
    """

    name = "image"

    def __init__(
        self,
        backbone: str = "efficientnet_b3",
        image_size: int | None = None,
        weights: str | None = "imagenet",
        epochs: int = 0,
        batch_size: int = 32,
        learning_rate: float = 1e-3,
        margin: float = 0.5,
        scale: float = 30.0,
        easy_margin: bool = False,
        ls_eps: float = 0.0,
        train_batchnorm: bool = False,
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
        if self.weights not in (None, "imagenet") and not Path(str(self.weights)).is_file():
            raise ValueError(
                f"`weights` must be None, 'imagenet' or the path of a weights file; "
                f"{self.weights!r} is not a file."
            )

    @property
    def size_(self) -> int:
        """The image side actually used."""
        return int(self.image_size or BACKBONES[self.backbone][1])

    def build_model(self) -> keras.Model:
        """A fresh backbone + global average pooling model, with ``weights`` loaded."""
        import keras

        self._validate()
        if self.seed is not None:
            keras.utils.set_random_seed(int(self.seed))
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
                    "use weights=None or weights='path/to/file.weights.h5'."
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
    def fit(self, postings: Postings) -> ImageEmbedder:
        """Load the backbone; with ``epochs > 0`` fine-tune it with ArcFace on ``label_group``."""
        self._validate()
        model = self.build_model()
        if self.epochs > 0:
            import keras

            from ..training import trainer_for

            if not self.train_batchnorm:
                for layer in model.layers:
                    if isinstance(layer, keras.layers.BatchNormalization):
                        layer.trainable = False
            codes = postings.groups().astype(np.int32)
            rows, paths = self._readable(postings)
            if not rows:
                raise ValueError(f"{postings.source}: no readable images to train on.")
            trainer = trainer_for(self, model, codes)
            ds = self.dataset(paths, codes[rows], shuffle=True)
            trainer.fit(ds, epochs=self.epochs, batch_size=self.batch_size, verbose=self.verbose)
            model = trainer.embedding_model_
            self.history_ = trainer.history_
        self.model_ = model
        self.dim_ = int(model.output_shape[-1])
        return self

    def embed(self, postings: Postings) -> np.ndarray:
        """One L2-normalised float32 row per posting; zero rows for unreadable images."""
        check_is_fitted(self, "model_")
        out = np.zeros((len(postings), self.dim_), dtype=np.float32)
        rows, paths = self._readable(postings)
        if not rows:
            return out
        ds = self.dataset(paths, np.asarray(rows, dtype=np.int64))
        import tensorflow as tf

        ds = ds.batch(self.batch_size).prefetch(tf.data.AUTOTUNE)
        seen = np.zeros(len(postings), dtype=bool)
        n_batches = -(-len(rows) // self.batch_size)
        for images, idx in tqdm(ds, total=n_batches, desc="image embed", unit="batch",
                                disable=not self.verbose):
            i = idx.numpy()
            out[i] = np.asarray(self.model_.predict_on_batch(images), dtype=np.float32)
            seen[i] = True
        bad = [paths[j] for j, r in enumerate(rows) if not seen[r]]
        _warn_unreadable(bad, "could not be decoded")
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

