"""Train any Keras embedding model under an ArcFace head on label groups, then cut the head.

The seed notebook built ``backbone -> pooling -> ArcMarginProduct -> softmax``, trained it on
``label_group`` and kept ``model.layers[-4]``'s output. Here the embedding model is one named
sub-model of the training model and is taken back with ``get_layer(name)``, so nothing
depends on layer positions.

This module imports Keras; ``shopee_match`` imports it only where training is asked for.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

if TYPE_CHECKING:
    from .data import Postings

__all__ = ["ArcFaceTrainer", "train_arcface", "trainer_for"]

logger = logging.getLogger(__name__)


def _label_codes(labels: Any) -> np.ndarray:
    from .data import Postings

    if isinstance(labels, Postings):
        return labels.groups().astype(np.int32)
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"`labels` must be 1-D (one label per row), got shape {arr.shape}.")
    _, codes = np.unique(arr, return_inverse=True)
    return codes.astype(np.int32)


def _n_rows(x: Any) -> int:
    if isinstance(x, Mapping):
        sizes = {len(v) for v in x.values()}
        if len(sizes) != 1:
            raise ValueError(f"All input arrays must have the same length, got {sorted(sizes)}.")
        return sizes.pop()
    return len(x)


def _use_xla(jit_compile: bool | str) -> bool:
    if jit_compile == "auto":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    return bool(jit_compile)


class ArcFaceTrainer:
    """Put an embedding model under an :class:`~shopee_match.ArcMarginProduct` head and train it.

    Parameters
    ----------
    embedding_model : any Keras model from its inputs to one vector per row.
    n_classes : number of label groups in the training data.
    s, m, easy_margin, ls_eps : the ArcFace head's scale, margin (radians) and options.
    learning_rate : Adam learning rate (shared by the embedding model and the head).
    seed : seeds Keras, NumPy and TensorFlow, and the shuffling.
    jit_compile : XLA; ``"auto"`` uses it only when a GPU is visible.

    Attributes
    ----------
    model_ : the training model ``[inputs, label] -> logits``.
    history_ : per-epoch metrics (``loss``, ``accuracy``) of the last :meth:`fit`.

    Examples
    --------
    >>> import keras, numpy as np
    >>> inp = keras.Input((4,))
    >>> net = keras.Model(inp, keras.layers.Dense(3, name="proj")(inp), name="embedding")
    >>> x = np.random.default_rng(0).normal(size=(40, 4)).astype("float32")
    >>> y = np.arange(40) % 4
    >>> trainer = ArcFaceTrainer(net, n_classes=4, seed=0).fit(x, y, epochs=2)
    >>> trainer.embedding_model_ is net, len(trainer.history_["loss"])
    (True, 2)
    """

    def __init__(
        self,
        embedding_model: keras.Model,
        n_classes: int,
        *,
        s: float = 30.0,
        m: float = 0.5,
        easy_margin: bool = False,
        ls_eps: float = 0.0,
        learning_rate: float = 1e-3,
        seed: int | None = 0,
        jit_compile: bool | str = "auto",
    ) -> None:
        self.embedding_model = embedding_model
        self.n_classes = n_classes
        self.s = s
        self.m = m
        self.easy_margin = easy_margin
        self.ls_eps = ls_eps
        self.learning_rate = learning_rate
        self.seed = seed
        self.jit_compile = jit_compile
        self.model_: keras.Model | None = None
        self.history_: dict[str, list[float]] = {}

    def build(self) -> keras.Model:
        """The training model: the embedding model (by its name) feeding the ArcFace head."""
        from .arcface import ArcMarginProduct

        if self.seed is not None:
            keras.utils.set_random_seed(int(self.seed))
        head = ArcMarginProduct(
            int(self.n_classes), s=self.s, m=self.m, easy_margin=self.easy_margin,
            ls_eps=self.ls_eps, name="arc_margin",
        )
        model = _ArcFaceModel(self.embedding_model, head, name="arcface_training")
        model.compile(
            optimizer=keras.optimizers.Adam(self.learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
            jit_compile=_use_xla(self.jit_compile),
        )
        self.model_ = model
        return model

    @property
    def embedding_model_(self) -> keras.Model:
        """The trained embedding model, cut out of the training model by name."""
        if self.model_ is None:
            raise ValueError("Call `fit` (or `build`) before taking the embedding model.")
        return self.model_.get_layer(self.embedding_model.name)

    def fit(
        self,
        data: Any,
        labels: Any = None,
        *,
        epochs: int = 5,
        batch_size: int = 32,
        shuffle_buffer: int | None = None,
        steps_per_epoch: int | None = None,
        verbose: bool = False,
    ) -> ArcFaceTrainer:
        """Train on ``(data, labels)``.

        ``data`` is an array or dict of arrays with one row per label, or a
        ``tf.data.Dataset`` of unbatched ``(inputs, label)`` pairs (then ``labels`` is
        ``None``; shuffle it upstream, before any expensive decoding, or set
        ``shuffle_buffer``). ``labels`` may be a :class:`~shopee_match.Postings` (its
        ``label_group``) or any 1-D array of group ids.
        """
        import tensorflow as tf

        if not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"`epochs` must be a positive integer, got {epochs!r}.")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}.")
        if isinstance(data, tf.data.Dataset):
            if labels is not None:
                raise ValueError("Pass labels inside the dataset as (inputs, label) pairs.")
            ds = data
            buffer = shuffle_buffer or 0
        else:
            if labels is None:
                raise ValueError("`labels` is required when `data` is not a tf.data.Dataset.")
            codes = _label_codes(labels)
            n = _n_rows(data)
            if n != len(codes):
                raise ValueError(f"Got {n} input rows but {len(codes)} labels; they must match.")
            if int(codes.max(initial=-1)) >= int(self.n_classes):
                raise ValueError(
                    f"Labels have {int(codes.max()) + 1} groups but n_classes={self.n_classes}."
                )
            x = dict(data) if isinstance(data, Mapping) else np.asarray(data)
            ds = tf.data.Dataset.from_tensor_slices((x, codes))
            buffer = shuffle_buffer if shuffle_buffer is not None else n
        if buffer:
            ds = ds.shuffle(buffer, seed=self.seed, reshuffle_each_iteration=True)
        ds = (
            ds.map(lambda xi, yi: ((xi, yi), yi))
            .batch(batch_size)
            .prefetch(tf.data.AUTOTUNE)
        )
        model = self.build()
        cb = keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: logger.info(
                "ArcFace epoch %d/%d: %s", epoch + 1, epochs,
                ", ".join(f"{k}={v:.4f}" for k, v in (logs or {}).items()),
            )
        )
        with warnings.catch_warnings():
            # A dataset that drops unreadable images has no known length: Keras warns at the
            # end of every epoch that it "ran out of data", which is expected here.
            warnings.filterwarnings("ignore", message="Your input ran out of data")
            hist = model.fit(ds, epochs=epochs, steps_per_epoch=steps_per_epoch, shuffle=False,
                             verbose=1 if verbose else 0, callbacks=[cb])
        self.history_ = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
        return self


class _ArcFaceModel(keras.Model):
    """``[inputs, label] -> logits``: the embedding model, then the ArcFace head."""

    def __init__(self, embedding: keras.Model, head: keras.layers.Layer, **kwargs: Any):
        super().__init__(**kwargs)
        self.embedding = embedding
        self.head = head

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        x, y = inputs
        return self.head([self.embedding(x, training=training), y])


def trainer_for(embedder: Any, model: Any, codes: np.ndarray, *,
                learning_rate: float | None = None) -> ArcFaceTrainer:
    """An :class:`ArcFaceTrainer` for ``model`` with an embedder's ArcFace settings
    (``scale``, ``margin``, ``easy_margin``, ``ls_eps``, ``learning_rate``, ``seed``);
    ``learning_rate`` overrides the embedder's (e.g. its resolved default)."""
    return ArcFaceTrainer(
        model, int(codes.max()) + 1, s=embedder.scale, m=embedder.margin,
        easy_margin=embedder.easy_margin, ls_eps=embedder.ls_eps,
        learning_rate=embedder.learning_rate if learning_rate is None else learning_rate,
        seed=embedder.seed,
    )


def train_arcface(
    embedding_model: keras.Model,
    data: Any,
    labels: Postings | np.ndarray | None = None,
    *,
    n_classes: int | None = None,
    epochs: int = 5,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    s: float = 30.0,
    m: float = 0.5,
    easy_margin: bool = False,
    ls_eps: float = 0.0,
    seed: int | None = 0,
    verbose: bool = False,
) -> keras.Model:
    """Train ``embedding_model`` with an ArcFace head on label groups; return it trained.

    ``labels`` is a :class:`~shopee_match.Postings` (its ``label_group``) or group ids, one
    per row of ``data``; with a ``tf.data.Dataset`` of ``(inputs, label)`` pairs give
    ``n_classes`` instead. The returned model is ``embedding_model`` itself (trained in
    place), taken from the training model by name.

    >>> import keras, numpy as np
    >>> from shopee_match.datasets import make_catalog
    >>> p = make_catalog(n_groups=6, images=False, seed=0)
    >>> x = np.random.default_rng(0).normal(size=(len(p), 8)).astype("float32")
    >>> inp = keras.Input((8,))
    >>> net = keras.Model(inp, keras.layers.Dense(4)(inp), name="embedding")
    >>> train_arcface(net, x, p, epochs=1).output_shape
    (None, 4)
    """
    if n_classes is None:
        if labels is None:
            raise ValueError("Give `n_classes` when the labels are inside a tf.data.Dataset.")
        n_classes = int(_label_codes(labels).max(initial=-1)) + 1
    if n_classes < 1:
        raise ValueError("No label groups to train on.")
    trainer = ArcFaceTrainer(
        embedding_model, n_classes, s=s, m=m, easy_margin=easy_margin, ls_eps=ls_eps,
        learning_rate=learning_rate, seed=seed,
    )
    trainer.fit(data, labels, epochs=epochs, batch_size=batch_size, verbose=verbose)
    return trainer.embedding_model_
