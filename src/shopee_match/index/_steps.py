"""What each kind of pipeline step keeps in an index, and how new postings change it.

- :class:`NeighborStep` (a :class:`~shopee_match.NeighborMatcher`): one cosine space.
- :class:`BlendStep` (a :class:`~shopee_match.neighbors.blend.BlendMatcher`): the raw
  space's top-``n_blend`` rows (what each blended vector is made of), the blended
  vectors, and the blended space. A new posting that enters a catalogue posting's
  top-``n_blend`` changes that posting's blended vector, and so its blended neighbours.
- :class:`HashStep` (a :class:`~shopee_match.HashMatcher`): one Hamming space.

``plan`` returns the step's row overrides for a query (nothing in the index changes);
``committed`` returns the step with a plan applied (for ``add``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from .._validation import l2_normalize
from ..neighbors.blend import BlendMatcher, blend
from ..neighbors.graph import graph_from_knn
from ..neighbors.hamming import HashMatcher
from ..neighbors.matcher import NeighborMatcher
from ..protocols import ClassRegistry
from ._hash import HashSpace
from ._rows import Overrides, rows_from_lists
from ._space import CosineSpace, VectorStore, with_width

__all__ = ["INDEX_STEPS", "BlendStep", "HashStep", "IndexKind", "NeighborStep", "Plan",
           "build_step", "index_kind"]


@dataclass
class Plan:
    """A step's overrides for one query, and what ``add`` must store of it."""

    over: Overrides
    extra: dict[str, Any]


class NeighborStep:
    kind = "neighbor"

    def __init__(self, name: str, space: CosineSpace) -> None:
        self.name, self.space = name, space

    @property
    def final(self) -> CosineSpace | HashSpace:
        return self.space

    def plan(self, slots: np.ndarray, vecs: Any, n_total: int, rows: bool) -> Plan:
        return Plan(self.space.plan(slots, vecs, n_total, rows), {})

    def committed(self, store: VectorStore, plan: Plan, slots: np.ndarray, vecs: Any) -> NeighborStep:
        return NeighborStep(self.name, self.space.committed(store, plan.over))


class BlendStep:
    kind = "blend"

    def __init__(self, name: str, raw: CosineSpace, blended: CosineSpace, n_blend: int) -> None:
        self.name, self.raw, self.blended, self.n_blend = name, raw, blended, int(n_blend)

    @property
    def final(self) -> CosineSpace | HashSpace:
        return self.blended

    def plan(self, slots: np.ndarray, vecs: Any, n_total: int, rows: bool) -> Plan:
        raw_over = self.raw.plan(slots, vecs, n_total, True)
        redo = np.flatnonzero(raw_over.mask)
        w = raw_over.row_graph(self.raw.rows, redo)
        cols = np.unique(w.indices)
        n = self.raw.store.n
        pos = np.full(n_total, -1, np.int64)
        pos[slots] = np.arange(len(slots))
        fresh = pos[cols] >= 0
        src = self.raw.store.rows(cols[~fresh])
        new = vecs[pos[cols[fresh]]] if fresh.any() else None
        order = np.r_[np.flatnonzero(~fresh), np.flatnonzero(fresh)]
        if sp.issparse(src) or sp.issparse(vecs):
            wd = max(src.shape[1], vecs.shape[1])
            parts = [with_width(sp.csr_matrix(src), wd)]
            if new is not None:
                parts.append(with_width(sp.csr_matrix(new), wd))
            v = sp.vstack(parts, format="csr")
        else:
            v = np.concatenate([np.asarray(src)] + ([np.asarray(new)] if new is not None else []))
        inv = np.empty(len(order), np.int64)
        inv[order] = np.arange(len(order))
        v = v[inv]
        wu = sp.csr_matrix((np.maximum(w.data, 0), np.searchsorted(cols, w.indices), w.indptr),
                           shape=(len(redo), len(cols)), dtype=np.float32)
        bvecs = l2_normalize(wu @ v)
        if sp.issparse(bvecs):
            bvecs = sp.csr_matrix(bvecs, dtype=np.float32)
        del n
        over = self.blended.plan(redo, bvecs, n_total, rows)
        return Plan(over, {"raw": raw_over, "slots": redo, "vecs": bvecs})

    def committed(self, store: VectorStore, plan: Plan, slots: np.ndarray, vecs: Any) -> BlendStep:
        raw = self.raw.committed(store, plan.extra["raw"])
        bstore = self.blended.store.committed(plan.extra["slots"], plan.extra["vecs"],
                                              plan.over.n_total)
        return BlendStep(self.name, raw, self.blended.committed(bstore, plan.over), self.n_blend)


class HashStep:
    kind = "hash"

    def __init__(self, name: str, space: HashSpace) -> None:
        self.name, self.space = name, space

    @property
    def final(self) -> CosineSpace | HashSpace:
        return self.space

    def plan(self, slots: np.ndarray, vecs: Any, n_total: int, rows: bool) -> Plan:
        return Plan(self.space.plan(slots, vecs, n_total, rows), {})

    def committed(self, store: VectorStore, plan: Plan, slots: np.ndarray, vecs: Any) -> HashStep:
        return HashStep(self.name, self.space.committed(slots, vecs, plan.over))


Step = NeighborStep | BlendStep | HashStep


def _knn_rows(matcher: Any, x: Any, k: int | None = None) -> sp.csr_matrix:
    """Batch candidate rows of ``x`` (top-k by the matcher's own backend)."""
    idx, sims = matcher.search(x)
    n = x.shape[0]
    if k is not None:
        idx, sims = idx[:, :k], sims[:, :k]
    return rows_from_lists(sims, idx, np.arange(n), n)


@dataclass(frozen=True)
class IndexKind:
    """How ``MatchIndex`` indexes a matcher class: ``build(name, matcher, store, emb,
    rows, hash_radius, thresholded)`` returns its step (see :func:`build_step`);
    ``vectors``: whether the step searches the embedder's vectors (held once in a
    shared store) rather than keeping its own form of them (hashes)."""

    build: Callable[..., Step]
    vectors: bool = True


#: matcher class -> how it is indexed (exact classes, or declared with
#: ``shopee_match.protocols.register_matcher(cls, like=...)``)
INDEX_STEPS: ClassRegistry[IndexKind] = ClassRegistry("MatchIndex step")


def _neighbor_step(name: str, matcher: Any, store: VectorStore, emb: Any, rows: bool,
                   hash_radius: int | None, thresholded: bool) -> Step:
    matcher.validate()
    space = CosineSpace(store, matcher.k, matcher.backend, matcher.backend_options(),
                        _knn_rows(matcher, emb) if rows else None,
                        matcher.search_floor() if thresholded and not rows else None)
    return NeighborStep(name, space)


def _blend_step(name: str, matcher: Any, store: VectorStore, emb: Any, rows: bool,
                hash_radius: int | None, thresholded: bool) -> Step:
    matcher.validate()
    k_raw = min(int(matcher.n_blend), int(matcher.k))
    raw_idx, raw_sims = matcher.search(emb)
    raw_rows = rows_from_lists(raw_sims[:, :k_raw], raw_idx[:, :k_raw],
                               np.arange(emb.shape[0]), emb.shape[0])
    bl = blend(emb, graph_from_knn(raw_sims, raw_idx, n=emb.shape[0]), int(matcher.n_blend))
    bstore = VectorStore(bl)
    brows = _knn_rows(matcher, bstore.x) if rows else None
    opts = matcher.backend_options()
    floor = matcher.search_floor() if thresholded and not rows else None
    return BlendStep(name, CosineSpace(store, k_raw, matcher.backend, opts, raw_rows),
                     CosineSpace(bstore, matcher.k, matcher.backend, opts, brows, floor),
                     matcher.n_blend)


def _hash_step(name: str, matcher: Any, store: VectorStore, emb: Any, rows: bool,
               hash_radius: int | None, thresholded: bool) -> Step:
    matcher.validate()
    radius = int(matcher.radius() if hash_radius is None else hash_radius)
    cand = matcher.candidates(emb, max_distance=radius) if rows else None
    return HashStep(name, HashSpace.from_vectors(emb, radius, matcher.max_bucket, cand))


INDEX_STEPS.register(NeighborMatcher, IndexKind(_neighbor_step))
INDEX_STEPS.register(BlendMatcher, IndexKind(_blend_step))
INDEX_STEPS.register(HashMatcher, IndexKind(_hash_step, vectors=False))


def index_kind(name: str, matcher: Any) -> IndexKind:
    """The registered :class:`IndexKind` of a step's matcher, or a clear error."""
    kind = INDEX_STEPS.lookup(matcher)
    if kind is None:
        raise TypeError(
            f"Step {name!r}: MatchIndex cannot index a {type(matcher).__name__} matcher; it "
            f"knows {', '.join(INDEX_STEPS.known())}. Declare a class that behaves like one "
            "of them with shopee_match.protocols.register_matcher(cls, like=...) (or "
            "@register(..., like=...)), register an IndexKind in "
            "shopee_match.index.INDEX_STEPS, or match in batch with Pipeline.predict."
        )
    return kind


def build_step(name: str, matcher: Any, store: VectorStore, emb: Any, rows: bool,
               hash_radius: int | None, thresholded: bool = False) -> Step:
    """Index one step over the catalogue's embeddings ``emb`` (held in ``store``).

    ``thresholded``: only the matcher's thresholded matches are read (a union of steps
    with no catalogue rows kept), so searches may skip pairs below its threshold."""
    return index_kind(name, matcher).build(name, matcher, store, emb, rows, hash_radius,
                                           thresholded)
