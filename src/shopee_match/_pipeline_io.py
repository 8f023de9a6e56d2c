"""A fitted :class:`~shopee_match.Pipeline` as a folder: JSON + arrays + .keras, no pickle.

Layout: ``config.json`` (format, versions, parameters, each step's matcher and embedder
as registered class name + parameters, the matcher's tuned ``threshold_`` beside them,
the ensemble, tuning results), ``steps/<name>/``
(each embedder's own state, written by its ``save_state``) and ``ensemble/`` (a learned
ensemble's state). Loading instantiates only registered classes and reads state only
from inside the folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from . import __version__
from ._persist import atomic_dir, estimator_from_json, estimator_to_json, read_json, write_json

if TYPE_CHECKING:
    from .pipeline import Pipeline, Step

__all__ = ["FORMAT", "FORMAT_VERSION", "load_pipeline", "save_pipeline"]

#: Version of the saved-pipeline layout; :meth:`Pipeline.load` refuses newer ones.
FORMAT_VERSION = 1
#: ``config.json``'s ``format``: what marks a folder as a saved pipeline.
FORMAT = "shopee_match.pipeline"

P = TypeVar("P", bound="Pipeline")


def save_pipeline(pipe: Pipeline, steps: list[Step], path: Path) -> None:
    """Write fitted ``pipe`` (its validated ``steps``) to folder ``path``, atomically."""
    with atomic_dir(path) as tmp:
        spec: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "library_version": __version__,
            "params": {
                k: v for k, v in pipe.get_params(deep=False).items()
                if k not in ("steps", "ensemble")
            },
            "steps": [],
            "ensemble": estimator_to_json(pipe.combiner_),
            "n_postings_fit": pipe.n_postings_fit_,
            "tuning": getattr(pipe, "tuning_", {}),
        }
        owner: dict[int, str] = {}
        for name, emb, matcher in steps:
            entry: dict[str, Any] = {"name": name, "matcher": estimator_to_json(matcher)}
            if getattr(matcher, "threshold_", None) is not None:  # tuned: a fitted attribute
                entry["threshold_"] = float(matcher.threshold_)
            if id(emb) in owner:  # the same embedder object as an earlier step
                entry["embedder_of"] = owner[id(emb)]
            else:
                owner[id(emb)] = name
                state = tmp / "steps" / name
                state.mkdir(parents=True)
                if hasattr(emb, "save_state"):
                    emb.save_state(state)
                entry.update({"embedder": estimator_to_json(emb), "state": f"steps/{name}"})
            spec["steps"].append(entry)
        ens = pipe.combiner_
        if hasattr(ens, "save_state"):
            (tmp / "ensemble").mkdir()
            ens.save_state(tmp / "ensemble")
        write_json(tmp / "config.json", spec)


def load_pipeline(cls: type[P], path: Path) -> P:
    """An instance of ``cls`` rebuilt from folder ``path``. Never executes code from it."""
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such pipeline folder (make one with `shopee-match fit`).")
    spec = read_json(path / "config.json")
    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        raise ValueError(f"{path}/config.json is not a shopee_match pipeline.")
    version = spec.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(
            f"{path} was saved by a newer shopee_match (format {version!r}, library "
            f"{spec.get('library_version')}); this is {__version__} (format "
            f"{FORMAT_VERSION}). Upgrade with `pip install -U shopee_match`."
        )
    try:
        steps: list[Step] = []
        by_name: dict[str, Any] = {}
        for s in spec["steps"]:
            matcher = estimator_from_json(s["matcher"])
            if s.get("threshold_") is not None:  # folders saved before: tuned in the params
                matcher.fit_threshold(float(s["threshold_"]))
            if "embedder_of" in s:
                if s["embedder_of"] not in by_name:
                    raise ValueError(f"step {s['name']!r} shares the embedder of an unknown step.")
                emb = by_name[s["embedder_of"]]
            else:
                emb = estimator_from_json(s["embedder"])
                state = (path / s["state"]).resolve()
                if path.resolve() not in state.parents:
                    raise ValueError(f"step state path {s['state']!r} points outside {path}.")
                if hasattr(emb, "load_state"):
                    emb.load_state(state)
            by_name[str(s["name"])] = emb
            steps.append((str(s["name"]), emb, matcher))
        ens = estimator_from_json(spec["ensemble"])
        if hasattr(ens, "load_state") and (path / "ensemble").is_dir():
            ens.load_state(path / "ensemble")
        pipe = cls(steps=steps, ensemble=ens, **spec.get("params", {}))
        pipe.n_postings_fit_ = int(spec["n_postings_fit"])
        pipe.combiner_ = ens
        pipe.tuning_ = spec.get("tuning", {})
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path}/config.json is damaged or incomplete ({exc!r}).") from exc
    pipe.validated_steps()
    return pipe
