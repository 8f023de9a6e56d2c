"""``ArcMarginProduct``: the ArcFace (additive angular margin) head, as a Keras 3 layer.

The layer turns embeddings into class logits ``s * cos(θ_j)``, with an angular margin
``m`` (radians) added to the angle of each row's true class: ``s * cos(θ_y + m)``. Trained
with softmax cross-entropy on ``label_group``, it pulls postings of one product together on
the unit sphere; the head is thrown away afterwards and the embeddings are matched by cosine.

This module imports Keras at import time; ``shopee_match`` imports it lazily.
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

__all__ = ["ArcMarginProduct"]

_EPS = 1e-7


@keras.saving.register_keras_serializable(package="shopee_match")
class ArcMarginProduct(keras.layers.Layer):
    """ArcFace head: inputs ``[embeddings, labels]``, output scaled logits ``(batch, n_classes)``.

    For the true class ``y`` of a row the logit is ``s * phi`` with
    ``phi = cos(θ + m)`` where ``cos θ > th = cos(π - m)`` and ``cos θ - mm`` otherwise
    (``mm = sin(π - m) * m``, which keeps the logit monotone in θ past ``π - m``); with
    ``easy_margin`` the margin applies only where ``cos θ > 0``. Every other class gets
    ``s * cos θ_j``. With ``ls_eps > 0`` the one-hot target used to mix ``phi`` and
    ``cos θ`` is label-smoothed: ``(1 - ls_eps) * onehot + ls_eps / n_classes``.

    Embeddings and class centres are L2-normalised with an epsilon, so zero vectors give
    zero cosines (not NaN), and ``sin θ`` is computed from a clipped ``1 - cos² θ``, so
    ``cos θ = ±1`` has finite values and gradients.

    Parameters
    ----------
    n_classes : number of label groups (classes).
    s : logit scale.
    m : additive angular margin, in radians (0.5 rad ≈ 28.6°).
    easy_margin : apply the margin only where ``cos θ > 0``.
    ls_eps : label smoothing of the mixing weights, in [0, 1).

    Examples
    --------
    >>> import numpy as np
    >>> layer = ArcMarginProduct(n_classes=4)
    >>> logits = layer([np.ones((2, 8), "float32"), np.array([0, 3])])
    >>> tuple(logits.shape)
    (2, 4)
    """

    def __init__(
        self,
        n_classes: int,
        s: float = 30.0,
        m: float = 0.50,
        easy_margin: bool = False,
        ls_eps: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(n_classes, int) or isinstance(n_classes, bool) or n_classes < 1:
            raise ValueError(
                "Received an invalid value for `n_classes`, expected a positive integer. "
                f"Received: n_classes={n_classes!r}"
            )
        if not 0.0 <= float(ls_eps) < 1.0:
            raise ValueError(f"`ls_eps` must be in [0, 1), got {ls_eps!r}.")
        if not 0.0 <= float(m) < math.pi:
            raise ValueError(f"`m` is a margin in radians and must be in [0, π), got {m!r}.")
        if float(s) <= 0:
            raise ValueError(f"`s` must be > 0, got {s!r}.")
        self.n_classes = n_classes
        self.s = float(s)
        self.m = float(m)
        self.easy_margin = bool(easy_margin)
        self.ls_eps = float(ls_eps)
        self.cos_m = math.cos(self.m)
        self.sin_m = math.sin(self.m)
        self.th = math.cos(math.pi - self.m)
        self.mm = math.sin(math.pi - self.m) * self.m

    def build(self, input_shape: Any) -> None:
        emb_shape = input_shape[0]
        dim = emb_shape[-1]
        if dim is None:
            raise ValueError("ArcMarginProduct needs a known embedding size (last axis).")
        self.W = self.add_weight(
            name="W",
            shape=(int(dim), self.n_classes),
            initializer="glorot_uniform",
            trainable=True,
        )

    def call(self, inputs: Any) -> Any:
        x, y = inputs
        x = ops.convert_to_tensor(x)
        x = ops.cast(x, self.compute_dtype)
        y = ops.reshape(ops.cast(y, "int32"), (-1,))
        x_n = x / ops.sqrt(ops.maximum(ops.sum(ops.square(x), axis=-1, keepdims=True), _EPS))
        w = ops.cast(self.W, self.compute_dtype)
        w_n = w / ops.sqrt(ops.maximum(ops.sum(ops.square(w), axis=0, keepdims=True), _EPS))
        cosine = ops.clip(ops.matmul(x_n, w_n), -1.0, 1.0)
        sine = ops.sqrt(ops.clip(1.0 - ops.square(cosine), _EPS, 1.0))
        phi = cosine * self.cos_m - sine * self.sin_m
        if self.easy_margin:
            phi = ops.where(cosine > 0.0, phi, cosine)
        else:
            phi = ops.where(cosine > self.th, phi, cosine - self.mm)
        one_hot = ops.one_hot(y, self.n_classes, dtype=self.compute_dtype)
        if self.ls_eps > 0:
            one_hot = (1.0 - self.ls_eps) * one_hot + self.ls_eps / self.n_classes
        return (one_hot * phi + (1.0 - one_hot) * cosine) * self.s

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        return (input_shape[0][0], self.n_classes)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "n_classes": self.n_classes,
            "s": self.s,
            "m": self.m,
            "easy_margin": self.easy_margin,
            "ls_eps": self.ls_eps,
        }
