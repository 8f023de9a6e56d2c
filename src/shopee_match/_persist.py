"""Safe persistence: estimators as JSON (class name + params), atomic file and folder writes.

Nothing here unpickles or imports by a name read from disk: classes come from the
registry (:mod:`shopee_match._registry`), so a tampered file can only fail to load.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ._registry import get_registered, registered_name

__all__ = ["atomic_dir", "atomic_file", "estimator_from_json", "estimator_to_json"]

_EST = "__estimator__"


def _encode(value: Any) -> Any:
    if hasattr(value, "get_params") and not isinstance(value, type):
        return {_EST: estimator_to_json(value)}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(
        f"Cannot save parameter value {value!r} of type {type(value).__name__}: parameters "
        "must be JSON values (numbers, strings, lists) or registered estimators."
    )


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {_EST}:
            return estimator_from_json(value[_EST])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def estimator_to_json(est: Any) -> dict[str, Any]:
    """``{"class": "package>Name", "params": {...}}`` for a registered estimator."""
    params = est.get_params(deep=False) if hasattr(est, "get_params") else {}
    return {"class": registered_name(est), "params": _encode(params)}


def estimator_from_json(spec: Any) -> Any:
    """Rebuild an estimator from :func:`estimator_to_json` output (registered classes only)."""
    if not isinstance(spec, dict) or "class" not in spec or not isinstance(spec["class"], str):
        raise ValueError(f"Expected an estimator spec with a 'class' name, got {spec!r}.")
    cls = get_registered(spec["class"])
    params = _decode(spec.get("params", {}))
    if not isinstance(params, dict):
        raise ValueError(f"Parameters of {spec['class']} must be a JSON object.")
    try:
        return cls(**params)
    except TypeError as exc:
        raise ValueError(f"Cannot rebuild {spec['class']} from saved parameters: {exc}") from exc


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[Any]:
    """Write to a temporary file beside ``path`` and move it into place only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with open(tmp, mode, **kwargs) as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Build a folder under a temporary name, then swap it in for ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{path} exists and is not a directory; choose another path.")
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=False), encoding="utf-8")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path} is missing: not a saved shopee_match pipeline (save one with "
            "Pipeline.save or `shopee-match fit`)."
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is damaged (not valid JSON: {exc}).") from exc
