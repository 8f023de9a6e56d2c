"""Safe persistence: estimators as JSON (class name + params), atomic file and folder writes.

Nothing here unpickles or imports by a name read from disk: classes come from the
registry (:mod:`shopee_match._registry`), so a tampered file can only fail to load.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ._registry import get_registered, registered_name

__all__ = ["atomic_dir", "atomic_file", "clean_stale", "estimator_from_json", "estimator_to_json",
           "temp_dir"]

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


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:32] or "host"


def _tmp_prefix(path: Path) -> str:
    """Hidden sibling names of this process's temporary copies of ``path``."""
    return f".{path.name}.{_host()}.{os.getpid()}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: someone else's running process
        return True
    return True


def clean_stale(path: Path) -> None:
    """Remove temporary siblings of ``path`` left by killed writers on this host.

    Only names written by :func:`atomic_file`/:func:`atomic_dir` whose process is gone are
    removed, so a concurrent writer's work in progress is left alone.
    """
    pattern = re.compile(rf"\.{re.escape(path.name)}\.{re.escape(_host())}\.(\d+)\.[0-9a-f]+\.tmp")
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if m is None or _alive(int(m.group(1))):
            continue
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
    old = _old_name(path)
    if not old.is_dir():
        return
    if path.exists():  # a swap finished but its clean-up was cut short
        shutil.rmtree(old, ignore_errors=True)
    else:  # a swap was cut between its two renames: the previous folder comes back
        with contextlib.suppress(OSError):
            os.replace(old, path)


def _old_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.old")


def _new_tmp(path: Path, make: Callable[[str], None]) -> Path:
    """Create a fresh temporary sibling of ``path`` with ``make`` (retrying on a clash)."""
    for _ in range(100):
        tmp = path.with_name(f"{_tmp_prefix(path)}{secrets.token_hex(4)}.tmp")
        try:
            make(str(tmp))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"Cannot create a temporary file beside {path}.")  # pragma: no cover


def temp_dir(prefix: str) -> Path:
    """A new folder under the system temporary folder, with a plain ``mkdir``'s mode
    (``tempfile.mkdtemp`` would make it 0o700, unreadable to anyone else)."""
    import tempfile

    base = Path(tempfile.gettempdir())
    for _ in range(100):
        path = base / f"{prefix}{secrets.token_hex(6)}"
        try:
            os.mkdir(path, 0o777)  # umask applies
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"Cannot create a temporary folder in {base}.")  # pragma: no cover


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[Any]:
    """Write to a temporary file beside ``path`` and move it into place only on success.

    The file gets the mode a plain ``open(path, "w")`` gives a new file: 0o666 less the
    umask (also when it replaces an older file). Data is flushed to disk before the
    rename, so readers see the previous file or the complete new one, never a part.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give a file name for the output.")
    clean_stale(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    tmp = _new_tmp(path, lambda name: os.close(os.open(name, flags, 0o666)))  # umask applies
    try:
        with open(tmp, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Build a folder under a temporary name, then swap it in for ``path`` on success.

    The folder gets the mode a plain ``mkdir`` gives: 0o777 less the umask. A writer
    killed between the two renames of the swap leaves the previous folder as
    ``.NAME.old`` and no ``NAME``; the next write to ``path`` puts it back first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{path} exists and is not a directory; choose another path.")
    clean_stale(path)
    tmp = _new_tmp(path, lambda name: os.mkdir(name, 0o777))  # umask applies
    try:
        yield tmp
        if path.exists():
            old = _old_name(path)
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
