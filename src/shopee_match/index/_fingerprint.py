"""A fingerprint of a fitted pipeline: what an index was built by.

The configuration of every step (embedder and matcher parameters, and the matcher's
tuned ``threshold_``), the ensemble's parameters and fitted threshold, the number of postings it
was fitted on, and the library version, hashed. An index answers only for the model
that built it: another model's embeddings and candidate rows would be silently wrong.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

__all__ = ["describe", "fingerprint"]


def _plain(value: Any) -> Any:
    if hasattr(value, "get_params") and not isinstance(value, type):
        return {"class": type(value).__name__,
                "params": {k: _plain(v) for k, v in sorted(value.get_params(deep=False).items())}}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float):
        return round(value, 9)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return repr(value)


def _tuned(matcher: Any) -> list[Any]:
    """The matcher's tuned threshold, where it has one (a fitted attribute, not a param)."""
    t = getattr(matcher, "threshold_", None)
    return [] if t is None else [{"threshold_": _plain(float(t))}]


def describe(pipe: Any) -> dict[str, Any]:
    """The JSON-able description the fingerprint hashes."""
    from .. import __version__

    ens = pipe.combiner_
    out = {
        "version": __version__,
        "steps": [[name, _plain(emb), _plain(m), *_tuned(m)] for name, emb, m in pipe.steps],
        "ensemble": _plain(ens),
        "ensemble_threshold": _plain(getattr(ens, "threshold_", None)),
        "ensemble_features": _plain(getattr(ens, "feature_names_", None)),
        "n_postings_fit": int(getattr(pipe, "n_postings_fit_", -1)),
    }
    if getattr(ens, "prefilter_", None) is not None:  # only then: older fingerprints hold
        out["ensemble_prefilter_floor"] = _plain(float(ens.prefilter_floor_))
    return out


def fingerprint(pipe: Any) -> str:
    """SHA-256 of :func:`describe` (hex, 16 characters)."""
    text = json.dumps(describe(pipe), sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
