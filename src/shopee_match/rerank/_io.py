"""A fitted :class:`~shopee_match.rerank.PairReranker` on disk, and LightGBM's import.

The state is JSON (``reranker.json``) and one LightGBM text model per stage
(``reranker_model_{stage}.txt``), which LightGBM parses itself: nothing is unpickled.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

__all__ = ["FORMAT", "lightgbm", "read_state", "write_state"]

_IMPORT_LOCK = threading.Lock()

#: 1: scikit-learn trees as ``.npz`` node arrays (before 0.1.0); 2: LightGBM text models;
#: 3: the same with a pair prefilter (``reranker_prefilter.txt``), written only by a
#: model that has one, so a model without it is saved as before and read by older versions.
FORMAT = 3
_READS = (2, 3)


def lightgbm() -> Any:
    """Import LightGBM with its OpenMP threads sleeping, not spinning, while they wait.

    OpenMP's default is to spin at every barrier; on a machine busier than its cores the
    spinning threads take the time slices the working ones need (measured: 2 threads 3x
    slower than 1 and 4.5x the CPU time; passive: 2 threads 2.8x faster than 1 at the
    same CPU time, benchmarks/RESULTS.md "Issue 12"). LightGBM's libgomp reads the policy
    once, when it loads; a policy the user set wins, and the environment is left as found.
    """
    with _IMPORT_LOCK:  # threads training side by side may all ask first
        if "lightgbm" not in sys.modules and "OMP_WAIT_POLICY" not in os.environ:
            os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
            try:
                import lightgbm  # noqa: F401  (loads its libgomp under the policy)
            finally:
                os.environ.pop("OMP_WAIT_POLICY", None)
    import lightgbm as lgb

    return lgb


def write_state(rr: Any, path: Path) -> None:
    """Write fitted reranker ``rr``'s stages and state into folder ``path``."""
    for stage, booster in enumerate(rr.boosters_):
        (path / f"reranker_model_{stage}.txt").write_text(
            booster.model_to_string(), encoding="utf-8")
    state = {"format": FORMAT, "modalities": rr.modalities_,
             "feature_names": rr.feature_names_, "threshold": rr.threshold_,
             "uses_titles": bool(rr.uses_titles_),
             "train_prior": float(getattr(rr, "train_prior_", 0.0)),
             "min_matches": int(getattr(rr, "min_matches_", rr.min_matches)),
             "n_stages": len(rr.boosters_)}
    if hasattr(rr, "self_train_"):  # calibration's choice, when it made one
        state["self_train"] = bool(rr.self_train_)
    pf = getattr(rr, "prefilter_", None)
    if pf is None:
        state["format"] = 2
    else:
        (path / "reranker_prefilter.txt").write_text(pf.model_to_string(), encoding="utf-8")
        state["prefilter"] = {"floor": float(rr.prefilter_floor_),
                              "features": list(rr.prefilter_names_),
                              "kept": float(getattr(rr, "prefilter_kept_", 1.0))}
    (path / "reranker.json").write_text(json.dumps(state, indent=1), encoding="utf-8")


def read_state(rr: Any, path: Path) -> None:
    """Restore into ``rr`` what :func:`write_state` wrote into ``path``."""
    lgb = lightgbm()
    state = json.loads((path / "reranker.json").read_text(encoding="utf-8"))
    fmt = state.get("format")
    if fmt == 1:
        raise ValueError(
            f"{path}: this pair reranker was saved by an earlier shopee_match (format 1, "
            "scikit-learn trees as .npz), which this version no longer reads; refit the "
            "pipeline with this version (e.g. `shopee-match fit TRAIN.csv -o MODEL_DIR`) "
            "and save it again."
        )
    if fmt not in _READS:
        raise ValueError(f"{path}: reranker state format {fmt!r} is not supported "
                         f"(expected one of {_READS}); refit and save again.")
    boosters = [_booster(lgb, path, f"reranker_model_{stage}.txt")
                for stage in range(int(state["n_stages"]))]
    pf = state.get("prefilter")
    rr.prefilter_ = None if pf is None else _booster(lgb, path, "reranker_prefilter.txt")
    if pf is not None:
        rr.prefilter_floor_ = float(pf["floor"])
        rr.prefilter_names_ = list(pf["features"])
        rr.prefilter_kept_ = float(pf.get("kept", 1.0))
    rr.boosters_ = boosters
    rr.modalities_ = list(state["modalities"])
    rr.feature_names_ = list(state["feature_names"])
    rr.threshold_ = float(state["threshold"])
    rr.uses_titles_ = bool(state["uses_titles"])
    rr.train_prior_ = float(state.get("train_prior", 0.0))
    rr.min_matches_ = int(state.get("min_matches", rr.min_matches))
    if "self_train" in state:
        rr.self_train_ = bool(state["self_train"])


def _booster(lgb: Any, path: Path, file: str) -> Any:
    name = path / file
    if not name.is_file():
        raise ValueError(f"{path}: {name.name} is missing; the folder is incomplete.")
    try:
        return lgb.Booster(model_str=name.read_text(encoding="utf-8"))
    except lgb.basic.LightGBMError as e:
        raise ValueError(f"{name}: not a readable LightGBM model ({e}); the file is "
                         "damaged.") from None
