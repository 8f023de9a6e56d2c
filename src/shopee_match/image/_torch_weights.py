"""Read a legacy (non-zip) PyTorch checkpoint into NumPy arrays, without PyTorch and safely.

``torch.save`` (before 1.6, or with ``_use_new_zipfile_serialization=False``) writes, one
after the other: a pickled magic number, a pickled protocol version, a pickled ``sys_info``
dict, the pickled object (a state dict whose tensors refer to storages by *persistent id*),
a pickled list of storage keys, then for each key an int64 element count and the storage's
raw little-endian bytes.

:func:`read_legacy_checkpoint` unpickles every part with an :class:`pickle.Unpickler` whose
``find_class`` allows only ``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2``
and the ``torch.<Type>Storage`` names, each mapped to a harmless local stand-in; any other
global (the usual way a pickle runs code) raises :class:`UnsafeCheckpointError`. The tensors
are then views into the raw storages, built with NumPy strides.
"""

from __future__ import annotations

import io
import pickle
import struct
from collections import OrderedDict
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = ["UnsafeCheckpointError", "read_legacy_checkpoint"]

_MAGIC = 0x1950A86A20F9469CFC6C
_PROTOCOL = 1001

#: ``torch.<name>`` storage types -> their NumPy dtype.
_STORAGES: dict[str, str] = {
    "FloatStorage": "<f4",
    "DoubleStorage": "<f8",
    "HalfStorage": "<f2",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


class UnsafeCheckpointError(pickle.UnpicklingError):
    """The checkpoint asks to load something other than tensors and plain containers."""


class _StorageType:
    """Stand-in for ``torch.FloatStorage`` and friends: it only carries the dtype."""

    __slots__ = ("name",)  # nothing for a pickle BUILD to set

    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def dtype(self) -> np.dtype[Any]:
        return np.dtype(_STORAGES[self.name])


class _TensorRef:
    """A tensor as the pickle describes it: storage key, offset, shape and strides."""

    def __init__(self, storage: tuple[str, _StorageType], offset: int,
                 shape: tuple[int, ...], stride: tuple[int, ...]) -> None:
        self.key, self.storage_type = storage
        self.offset = int(offset)
        self.shape = tuple(int(s) for s in shape)
        self.stride = tuple(int(s) for s in stride)


def _rebuild_tensor_v2(storage: Any, storage_offset: int, size: tuple[int, ...],
                       stride: tuple[int, ...], requires_grad: bool = False,
                       backward_hooks: Any = None, metadata: Any = None) -> _TensorRef:
    if not (isinstance(storage, tuple) and len(storage) == 2):
        raise UnsafeCheckpointError("A tensor refers to something that is not a storage.")
    return _TensorRef(storage, storage_offset, size, stride)


class _RestrictedUnpickler(pickle.Unpickler):
    """Allows only the few globals a state dict of tensors needs; refuses the rest."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGES:
            return _StorageType(name)
        raise UnsafeCheckpointError(
            f"Refusing to load global {module}.{name}: only tensors, storages and "
            "OrderedDict are allowed in a weights checkpoint."
        )

    def persistent_load(self, pid: Any) -> Any:
        # ('storage', storage_type, key, location, numel[, view_metadata])
        if (not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage"
                or not isinstance(pid[1], _StorageType) or not isinstance(pid[2], str)):
            raise UnsafeCheckpointError(f"Unexpected persistent id {pid!r:.80} in the checkpoint.")
        if len(pid) > 5 and pid[5] is not None:
            raise UnsafeCheckpointError("Storage views (pre-1.0 checkpoints) are not supported.")
        return (pid[2], pid[1])


def _load(f: IO[bytes]) -> Any:
    return _RestrictedUnpickler(f).load()


def read_legacy_checkpoint(path: str | Path) -> dict[str, np.ndarray]:
    """Every tensor of a legacy ``torch.save`` state dict, as ``{name: float/int ndarray}``.

    Raises :class:`UnsafeCheckpointError` if the file holds any object other than tensors
    in (ordered) dicts, and ``ValueError`` if it is not a legacy checkpoint or is truncated.
    """
    path = Path(path)
    with open(path, "rb") as raw:
        data = raw.read()
    f = io.BytesIO(data)
    try:
        magic = _load(f)
    except UnsafeCheckpointError:
        raise
    except Exception as exc:
        raise ValueError(f"{path}: not a legacy PyTorch checkpoint ({exc}).") from exc
    if magic != _MAGIC:
        raise ValueError(
            f"{path}: not a legacy (non-zip) PyTorch checkpoint; zip checkpoints "
            "(torch >= 1.6 default) are not supported by this reader."
        )
    if _load(f) != _PROTOCOL:
        raise ValueError(f"{path}: unsupported PyTorch checkpoint protocol version.")
    sys_info = _load(f)
    if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
        raise ValueError(f"{path}: big-endian checkpoints are not supported.")
    state = _load(f)
    keys = _load(f)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise UnsafeCheckpointError(f"{path}: the storage key list is malformed.")
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}.")
    refs = {k: v for k, v in state.items() if isinstance(v, _TensorRef)}
    types = {r.key: r.storage_type for r in refs.values()}
    storages: dict[str, np.ndarray] = {}
    pos = f.tell()
    for key in keys:
        if pos + 8 > len(data):
            raise ValueError(f"{path}: truncated before storage {key!r}.")
        (numel,) = struct.unpack("<q", data[pos:pos + 8])
        pos += 8
        dtype = types[key].dtype if key in types else np.dtype("u1")
        nbytes = numel * dtype.itemsize
        if numel < 0 or pos + nbytes > len(data):
            raise ValueError(f"{path}: truncated in storage {key!r}.")
        storages[key] = np.frombuffer(data, dtype=dtype, count=numel, offset=pos)
        pos += nbytes
    out: dict[str, np.ndarray] = {}
    for name, ref in refs.items():
        if ref.key not in storages:
            raise ValueError(f"{path}: tensor {name!r} refers to a missing storage.")
        buf = storages[ref.key]
        item = buf.dtype.itemsize
        last = ref.offset + sum((s - 1) * st for s, st in zip(ref.shape, ref.stride) if s > 0)
        numel = int(np.prod(ref.shape, dtype=np.int64)) if ref.shape else 1
        if (ref.offset < 0 or min(ref.stride, default=0) < 0 or min(ref.shape, default=0) < 0
                or len(ref.shape) != len(ref.stride) or numel > len(buf)
                or (numel and last >= len(buf))):
            # (numel > storage size: an expanded view, never in a state dict; refusing it
            # keeps a crafted file from asking for an arbitrarily large copy)
            raise ValueError(f"{path}: tensor {name!r} lies outside its storage.")
        arr = np.lib.stride_tricks.as_strided(
            buf[ref.offset:], shape=ref.shape, strides=[s * item for s in ref.stride],
            writeable=False,
        )
        out[str(name)] = np.array(arr, order="C")  # own copy, C-contiguous
    return out
