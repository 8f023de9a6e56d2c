"""Saving and loading a :class:`~shopee_match.index.MatchIndex`: JSON and ``.npy``.

No pickle anywhere: arrays are ``.npy`` files loaded with ``allow_pickle=False`` (and
memory-mapped, so a large catalogue is paged in as queries touch it), configuration is
JSON, the pipeline is saved by :meth:`Pipeline.save`, estimators come back through the
class registry. The folder is written under a temporary name and swapped in whole.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from .._persist import atomic_dir, estimator_from_json, estimator_to_json
from ._fingerprint import fingerprint
from ._hash import HashSpace
from ._space import CosineSpace, VectorStore
from ._state import State
from ._steps import BlendStep, HashStep, NeighborStep, Step
from ._strings import StringArray
from ._vocab import OpenVocabulary

__all__ = ["load_index", "save_index"]

FORMAT = 1


def _save_matrix(folder: Path, name: str, m: Any) -> dict[str, Any] | None:
    if m is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    if sp.issparse(m):
        m = sp.csr_matrix(m)
        for part in ("data", "indices", "indptr"):
            np.save(folder / f"{name}.{part}.npy", np.asarray(getattr(m, part)), allow_pickle=False)
        return {"sparse": True, "shape": list(m.shape)}
    np.save(folder / f"{name}.npy", np.asarray(m), allow_pickle=False)
    return {"sparse": False}


def _load_matrix(folder: Path, name: str, spec: dict[str, Any] | None, mmap: bool) -> Any:
    if spec is None:
        return None
    mode: Literal["r"] | None = "r" if mmap else None

    def arr(fname: str) -> np.ndarray:
        return np.load(folder / fname, mmap_mode=mode, allow_pickle=False)

    if spec["sparse"]:
        return sp.csr_matrix((arr(f"{name}.data.npy"), arr(f"{name}.indices.npy"),
                              arr(f"{name}.indptr.npy")), shape=tuple(spec["shape"]))
    return arr(f"{name}.npy")


def _save_space(folder: Path, space: CosineSpace, store_key: str) -> dict[str, Any]:
    return {"k": space.k, "backend": space.backend_name, "options": space.options,
            "store": store_key, "rows": _save_matrix(folder, "rows", space.rows),
            "search_floor": space.search_floor}


def _load_space(folder: Path, spec: dict[str, Any], store: VectorStore, mmap: bool) -> CosineSpace:
    return CosineSpace(store, spec["k"], spec["backend"], spec["options"],
                       _load_matrix(folder, "rows", spec["rows"], mmap), spec.get("search_floor"))


def _save_neighbor(folder: Path, step: Any) -> dict[str, Any]:
    return {"space": _save_space(folder, step.space, "")}


def _load_neighbor(folder: Path, entry: dict[str, Any], store: VectorStore, mmap: bool) -> Step:
    return NeighborStep(entry["name"], _load_space(folder, entry["space"], store, mmap))


def _save_blend(folder: Path, step: Any) -> dict[str, Any]:
    return {"raw": _save_space(folder / "raw", step.raw, ""),
            "blended": _save_space(folder / "blended", step.blended, ""),
            "blended_vectors": _save_matrix(folder, "blended_vectors", step.blended.store.x),
            "n_blend": step.n_blend}


def _load_blend(folder: Path, entry: dict[str, Any], store: VectorStore, mmap: bool) -> Step:
    bstore = VectorStore(_load_matrix(folder, "blended_vectors", entry["blended_vectors"], mmap))
    return BlendStep(entry["name"], _load_space(folder / "raw", entry["raw"], store, mmap),
                     _load_space(folder / "blended", entry["blended"], bstore, mmap),
                     entry["n_blend"])


def _save_hash(folder: Path, step: Any) -> dict[str, Any]:
    h = step.space
    np.save(folder / "codes.npy", h.codes, allow_pickle=False)
    np.save(folder / "valid.npy", h.valid, allow_pickle=False)
    return {"n_bits": h.n_bits, "radius": h.radius, "max_bucket": h.max_bucket,
            "rows": _save_matrix(folder, "rows", h.rows)}


def _load_hash(folder: Path, entry: dict[str, Any], store: VectorStore, mmap: bool) -> Step:
    mode: Literal["r"] | None = "r" if mmap else None
    return HashStep(entry["name"], HashSpace(
        np.load(folder / "codes.npy", mmap_mode=mode, allow_pickle=False),
        np.load(folder / "valid.npy", mmap_mode=mode, allow_pickle=False),
        entry["n_bits"], entry["radius"], entry["max_bucket"],
        _load_matrix(folder, "rows", entry["rows"], mmap)))


Saver = Callable[[Path, Any], dict[str, Any]]
Loader = Callable[[Path, dict[str, Any], VectorStore, bool], Step]
#: a step's ``kind`` -> how it is written into its folder (returning its JSON entry's
#: fields) and read back; a step class of your own (an ``IndexKind`` registered in
#: ``INDEX_STEPS``) registers its pair here under its ``kind``
STEP_STORAGE: dict[str, tuple[Saver, Loader]] = {
    "neighbor": (_save_neighbor, _load_neighbor),
    "blend": (_save_blend, _load_blend),
    "hash": (_save_hash, _load_hash),
}


def _storage(kind: str, path: Path) -> tuple[Saver, Loader]:
    if kind not in STEP_STORAGE:
        raise ValueError(f"{path}: no storage for index step kind {kind!r} (known: "
                         f"{sorted(STEP_STORAGE)}); register it in "
                         "shopee_match.index._store.STEP_STORAGE, or the file is damaged.")
    return STEP_STORAGE[kind]


def save_index(index: Any, path: Path) -> Path:
    st = index._state
    with atomic_dir(path) as tmp:
        index.pipeline.save(tmp / "model")
        arrays = tmp / "arrays"
        arrays.mkdir()
        for name, strings in (("ids", st.ids), ("titles", st.titles)):
            np.save(arrays / f"{name}.bytes.npy", np.asarray(strings.data), allow_pickle=False)
            np.save(arrays / f"{name}.offsets.npy", np.asarray(strings.offsets), allow_pickle=False)
        stores = {k: _save_matrix(tmp / "vectors", k, s.x) for k, s in st.stores.items()}
        steps: list[dict[str, Any]] = []
        for step in st.steps:
            folder = tmp / "steps" / step.name
            folder.mkdir(parents=True)
            entry: dict[str, Any] = {"name": step.name, "kind": step.kind}
            entry.update(_storage(step.kind, path)[0](folder, step))
            steps.append(entry)
        embedders: dict[str, Any] = {}
        own = {id(e): name for name, e, _ in index.pipeline.steps}
        for key, emb in st.embedders.items():
            if id(emb) in own:
                embedders[key] = {"from_step": own[id(emb)]}
                continue
            folder = tmp / "embedders" / key
            folder.mkdir(parents=True)
            opened: dict[str, Any] = {}
            if isinstance(emb, OpenVocabulary):
                np.save(folder / "open_df.npy", emb.df, allow_pickle=False)
                opened["open"] = {"n_docs": emb.n_docs, "extra": [list(t) for t in emb.extra]}
                emb = emb.emb
            if hasattr(emb, "save_state"):
                emb.save_state(folder)
            embedders[key] = {"spec": estimator_to_json(emb), **opened}
        from .. import __version__

        guard = getattr(index, "guard", None)
        if guard is not None:  # the shipped model's index of the same catalogue
            save_index(guard, tmp / "guard")
        meta = {"format": FORMAT, "version": __version__, "fingerprint": index.fingerprint,
                "radius": index.radius, "n": len(st.ids), "step_embedder": index.step_embedder,
                "stores": stores, "steps": steps, "embedders": embedders,
                "shift_guard": guard is not None,
                "self_train_point": getattr(index, "self_train_point", None),
                "self_train_evidence": _evidence_json(getattr(index, "self_train_evidence",
                                                              None))}
        (tmp / "index.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return path


def load_index(cls: Any, path: Path, pipeline: Any, mmap: bool) -> Any:
    from .. import __version__
    from ..pipeline import Pipeline

    meta_path = path / "index.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{path} is not a saved MatchIndex (no index.json); build one "
                                "with `MatchIndex.build(pipe, catalogue).save(path)` or "
                                "`shopee-match index`.")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: index format {meta.get('format')!r} is not supported (this "
                         f"library reads format {FORMAT}); rebuild the index.")
    if meta.get("version") != __version__:
        raise ValueError(f"{path}: the index was built by shopee_match {meta.get('version')}, "
                         f"this is {__version__}; rebuild it (`shopee-match index ...`).")
    if pipeline is None:
        pipeline = Pipeline.load(path / "model")
    got = fingerprint(pipeline)
    if got != meta["fingerprint"]:
        raise ValueError(f"{path}: the index was built by another model (fingerprint "
                         f"{meta['fingerprint']}, this pipeline's is {got}); query it with the "
                         "model it was built with, or rebuild the index for this one.")
    mode: Literal["r"] | None = "r" if mmap else None
    arrays = path / "arrays"

    def strings(name: str) -> StringArray:
        return StringArray(np.load(arrays / f"{name}.bytes.npy", mmap_mode=mode, allow_pickle=False),
                           np.load(arrays / f"{name}.offsets.npy", mmap_mode=mode, allow_pickle=False))

    stores = {k: VectorStore(_load_matrix(path / "vectors", k, spec, mmap))
              for k, spec in meta["stores"].items()}
    empty = VectorStore(np.zeros((0, 1), np.float32))
    steps: list[Step] = []
    for entry, key in zip(meta["steps"], meta["step_embedder"]):
        folder = path / "steps" / entry["name"]
        store = stores.get(key, empty)
        steps.append(_storage(entry["kind"], path)[1](folder, entry, store, mmap))
    by_step = {name: e for name, e, _ in pipeline.steps}
    embedders: dict[str, Any] = {}
    for key, spec in meta["embedders"].items():
        if "from_step" in spec:
            embedders[key] = by_step[spec["from_step"]]
            continue
        emb = estimator_from_json(spec["spec"])
        if hasattr(emb, "load_state"):
            emb.load_state(path / "embedders" / key)
        if "open" in spec:
            df = np.load(path / "embedders" / key / "open_df.npy", allow_pickle=False)
            emb = OpenVocabulary(emb, spec["open"]["n_docs"], df,
                                 [(int(b), str(t)) for b, t in spec["open"]["extra"]])
        embedders[key] = emb
    state = State(strings("ids"), strings("titles"), stores, steps, embedders)
    guard = (load_index(cls, path / "guard", None, mmap)
             if meta.get("shift_guard") and getattr(pipeline, "shift_guard", True) else None)
    return cls(pipeline, state, list(meta["step_embedder"]), meta["radius"], meta["fingerprint"],
               guard, meta.get("self_train_point"), _evidence_arrays(meta.get("self_train_evidence")))


def _evidence_json(evidence: Any) -> list[list[float]] | None:
    """The self-training evidence (two arrays of 1,001 bins) as JSON lists."""
    return None if evidence is None else [np.asarray(e, float).tolist() for e in evidence]


def _evidence_arrays(saved: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """What :func:`_evidence_json` wrote (``None`` for indexes saved before it)."""
    if saved is None:
        return None
    counts, hits = (np.asarray(e, dtype=np.float64) for e in saved)
    return counts, hits
