"""``MatchIndex``: a fitted pipeline over an indexed catalogue.

New postings are embedded with the embedders as fitted on the catalogue (a
``fit_on="predict"`` TF-IDF learns its vocabulary from the catalogue when the index is
built, then keeps it), searched against the catalogue and each other, the catalogue rows
they change are recomputed, and the pipeline's own combine step (union or pair
reranker) runs on the neighbourhood that decides their match sets.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._pipeline_guard import general_model, guard_fires, shared_matches
from ..data import Postings
from ..ensemble import Ensemble
from ..protocols import ClassRegistry
from ..rerank import evidence_point
from ._fingerprint import fingerprint
from ._local import local_graphs, local_pipeline, neighbourhood
from ._selftrain import (
    added_pairs,
    catalogue_df,
    catalogue_evidence,
    new_evidence,
    self_trains,
)
from ._space import VectorStore
from ._state import State
from ._steps import Plan, Step, build_step, index_kind
from ._strings import StringArray
from ._vocab import OpenVocabulary, supports_open_vocabulary

__all__ = ["MatchIndex"]

logger = logging.getLogger(__name__)


def freeze(emb: Any, catalogue: Postings) -> Any:
    """The embedder as it embeds the catalogue, with anything it would relearn at
    predict time (``fit_on="predict"``) learnt once from the catalogue and kept."""
    params = emb.get_params(deep=False) if hasattr(emb, "get_params") else {}
    if params.get("fit_on") == "predict":
        from sklearn.base import clone

        frozen = clone(emb).set_params(fit_on="train")
        return frozen.fit(catalogue)
    return emb


#: combiner class -> the hops of catalogue rows a new posting's answer depends on (see
#: ``_local``); a learned combiner (``uses_candidates``) not registered: its ``n_stages``
INDEX_RADIUS: ClassRegistry[Callable[[Any], int]] = ClassRegistry("MatchIndex radius")
INDEX_RADIUS.register(Ensemble, lambda ens: 1 if ens.symmetric else 0)


def default_radius(pipe: Any) -> int:
    """Hops of catalogue rows a new posting's answer depends on (see ``_local``)."""
    ens = pipe.combiner_
    rule = INDEX_RADIUS.lookup(ens)
    if rule is not None:
        return int(rule(ens))
    if getattr(ens, "uses_candidates", False):
        return int(getattr(ens, "n_stages", 1))
    return 1


@dataclass
class _Query:
    slots: np.ndarray
    n_total: int
    vecs: dict[str, Any]
    plans: list[Plan]


class MatchIndex:
    """A fitted :class:`~shopee_match.Pipeline` over an indexed catalogue.

    Build it with :meth:`build` (``MatchIndex.build(pipe, catalogue)``); :meth:`query`
    matches new postings against the catalogue and each other, :meth:`add` folds them
    in, :meth:`save` / :meth:`load` keep it on disk (no pickle; large arrays
    memory-mapped). Queries may run from several threads at once; ``add`` swaps the
    catalogue in one step, so a query sees it before or after.

    ``radius`` is how many hops of catalogue rows around the new postings are
    recomputed (default: what makes answers equal to batch matching, 0 for a union of
    steps, the number of stages for a pair reranker); lower it to trade exactness for
    speed.

    A pipeline with ``shift_guard`` on checks the catalogue when the index is built, as
    :meth:`Pipeline.predict <shopee_match.Pipeline.predict>` checks the catalogue it
    matches: where it looks unlike every catalogue the model was fitted on (the same
    warning), the shipped model indexes it too (``guard``, kept with the index) and each
    answer keeps only the matches both list.

    >>> from shopee_match import MatchIndex, Pipeline, make_catalog
    >>> cat = make_catalog(n_groups=40, images=False, seed=0)
    >>> pipe = Pipeline.default(rerank=False, phash=False).fit(cat)
    >>> index = MatchIndex.build(pipe, cat.subset(range(100)))
    >>> new = cat.subset(range(100, 110))
    >>> index.query(new).shape
    (10, 2)
    >>> len(index.add(new))
    110
    """

    def __init__(self, pipeline: Any, state: State, step_embedder: list[str], radius: int,
                 fingerprint_: str, guard: MatchIndex | None = None,
                 self_train_point: float | None = None,
                 self_train_evidence: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        self.pipeline = pipeline
        self.guard = guard
        #: the catalogue's self-training point, learnt at build and read again by
        #: :meth:`add` (``None``: none)
        self.self_train_point = self_train_point
        #: the evidence behind it (pairs and agreeing pairs per similarity bin)
        self.self_train_evidence = self_train_evidence
        self._df: Any = None  # the catalogue's title-token counts, read at first query
        self._state = state
        self.step_embedder = step_embedder
        self.radius = int(radius)
        self.fingerprint = fingerprint_
        self._write = threading.Lock()

    # --- construction ---------------------------------------------------------------
    @classmethod
    def build(cls, pipeline: Any, catalogue: Postings, radius: int | None = None,
              vocabulary: str = "open") -> MatchIndex:
        """Index ``catalogue`` for the fitted ``pipeline``.

        ``vocabulary``: for a ``fit_on="predict"`` TF-IDF, ``"open"`` embeds new postings
        as batch would (their unseen terms and the idf of catalogue + new postings; see
        ``_vocab``), ``"frozen"`` with the catalogue's vocabulary and weights only."""
        if vocabulary not in ("open", "frozen"):
            raise ValueError(f"`vocabulary` must be 'open' or 'frozen', got {vocabulary!r}.")
        from ..tuning import MAX_TUNED_RADIUS

        pipeline.check_is_fitted()
        if not isinstance(catalogue, Postings):
            raise TypeError(f"index expects Postings (see read_postings), got "
                            f"{type(catalogue).__name__}.")
        steps = pipeline.validated_steps()
        r = default_radius(pipeline) if radius is None else int(radius)
        uses_cands = getattr(pipeline.combiner_, "uses_candidates", False)
        keys: dict[int, str] = {}
        embedders: dict[str, Any] = {}
        x: dict[str, Any] = {}
        for name, emb, _ in steps:
            if id(emb) not in keys:
                keys[id(emb)] = name
                frozen = freeze(emb, catalogue)
                x[name] = frozen.embed(catalogue)
                embedders[name] = frozen
                if (vocabulary == "open" and frozen is not emb
                        and supports_open_vocabulary(frozen)):
                    embedders[name] = OpenVocabulary.from_fitted(frozen, len(catalogue))
        step_embedder = [keys[id(emb)] for _, emb, _ in steps]
        cosine = {k for k, (name, _, m) in zip(step_embedder, steps) if index_kind(name, m).vectors}
        stores = {k: VectorStore(x[k]) for k in sorted(cosine)}
        built = []
        for (name, _, matcher), key in zip(steps, step_embedder):
            store = stores.get(key) or VectorStore(np.zeros((0, 1), np.float32))
            built.append(build_step(name, matcher, store, x[key], r >= 1,
                                    MAX_TUNED_RADIUS if uses_cands else None,
                                    thresholded=not uses_cands))
        state = State(StringArray.from_list(list(catalogue.posting_id)),
                      StringArray.from_list(catalogue.titles), stores, built, embedders)
        point, evidence = None, None
        if uses_cands and self_trains(pipeline.combiner_) and catalogue.has_titles:
            # learnt on the catalogue: a query's neighbourhood is too small for it
            evidence = catalogue_evidence([getattr(s.final, "rows", None) for s in built],
                                          catalogue.titles)
            point = None if evidence is None else evidence_point(*evidence)
        logger.info("indexed %d postings (%d steps, radius %d)", len(catalogue), len(built), r)
        guard = None
        if guard_fires(pipeline, catalogue):  # the shift guard, decided on the catalogue
            guard = cls.build(general_model(pipeline), catalogue, vocabulary=vocabulary)
        return cls(pipeline, state, step_embedder, r, fingerprint(pipeline), guard, point,
                   evidence)

    def __len__(self) -> int:
        return self._state.n

    def __repr__(self) -> str:
        return (f"MatchIndex({len(self)} postings, steps {[s.name for s in self._state.steps]}, "
                f"radius {self.radius}{', shift guard' if self.guard is not None else ''})")

    @property
    def posting_ids(self) -> list[str]:
        """The indexed posting ids, in index order."""
        return self._state.ids.all()

    # --- queries ------------------------------------------------------------------------
    def _plan(self, st: State, new: Postings, replace: bool) -> _Query:
        if not isinstance(new, Postings):
            raise TypeError(f"expected Postings (see read_postings), got {type(new).__name__}.")
        at = st.id_index().get_indexer(pd.Index(new.posting_id)) if st.n else np.full(len(new), -1)
        at = np.asarray(at, np.int64)
        if (at >= 0).any() and not replace:
            dup = [str(p) for p in np.asarray(new.posting_id)[at >= 0][:5]]
            raise ValueError(
                f"{int((at >= 0).sum())} posting id(s) of {new.source} are already in the index "
                f"(e.g. {dup}); pass replace=True (CLI: --replace) to update them, or give "
                "new postings new ids."
            )
        fresh = at < 0
        slots = at.copy()
        slots[fresh] = st.n + np.arange(int(fresh.sum()))
        n_total = st.n + int(fresh.sum())
        vecs = {k: emb.embed(new) for k, emb in st.embedders.items()}
        plans = [step.plan(slots, vecs[k], n_total, self.radius >= 1)
                 for step, k in zip(st.steps, self.step_embedder)]
        return _Query(slots, n_total, vecs, plans)

    def query(self, new: Postings, replace: bool = False) -> pd.DataFrame:
        """Matches of each new posting among the catalogue and the other new postings,
        as a submission table ``posting_id, matches`` (itself included). The index is
        not changed; ``replace=True`` answers as if postings whose ids are indexed
        replaced those."""
        st = self._state
        if len(new) == 0:
            return pd.DataFrame({"posting_id": pd.Series([], dtype=str),
                                 "matches": pd.Series([], dtype=str)})
        q = self._plan(st, new, replace)
        out = self._answer(st, new, q)
        if self.guard is not None:
            out = shared_matches(out, self.guard.query(new, replace))
        return out

    def _answer(self, st: State, new: Postings, q: _Query) -> pd.DataFrame:
        pipe = local_pipeline(self.pipeline)  # the catalogue's point instead (below)
        ens = pipe.combiner_
        uses_cands = getattr(ens, "uses_candidates", False)
        spaces = [s.final for s in st.steps]
        overs = [p.over for p in q.plans]
        row_nodes, nodes = neighbourhood(spaces, overs, q.slots, self.radius)
        graphs = local_graphs(spaces, overs, row_nodes, nodes)
        pos = np.full(q.n_total, -1, np.int64)
        pos[q.slots] = np.arange(len(q.slots))
        old = nodes[pos[nodes] < 0]
        names = [s.name for s in st.steps]
        if uses_cands:  # the reranker reads titles, and each modality's global presence
            new_titles = new.titles
            old_titles = dict(zip(old.tolist(), st.titles.get(old)))
            titles = [new_titles[pos[s]] if pos[s] >= 0 else old_titles[int(s)] for s in nodes]
            graphs, titles = self._witnesses(st, graphs, titles)
            local = Postings(pd.DataFrame({"posting_id": [str(i) for i in range(len(titles))],
                                           "title": titles}), source="index query")
            combined = pipe.combine_graphs(dict(zip(names, graphs)), local)
            if self.self_train_point is not None:  # the catalogue's point, from build
                if self._df is None:
                    self._df = catalogue_df(st.titles.all())
                combined = sp.csr_matrix(combined + added_pairs(
                    graphs, titles, combined, len(q.slots), self.self_train_point, self._df))
        else:  # thresholded step graphs, combined as Pipeline.predict_graph combines them
            combined = ens.combine({name: m.select(g) for name, g, (_, _, m)
                                    in zip(names, graphs, pipe.steps)})
        final = sp.csr_matrix(combined)[: len(q.slots)]
        new_ids = np.asarray(new.posting_id, dtype=object)
        old_ids = dict(zip(old.tolist(), st.ids.get(old)))
        matches = []
        for r in range(len(q.slots)):
            cols = final.indices[final.indptr[r]:final.indptr[r + 1]]
            cols = cols[cols < len(nodes)]
            found = np.sort(nodes[cols])
            matches.append(" ".join(new_ids[pos[s]] if pos[s] >= 0 else old_ids[int(s)]
                                    for s in found))
        return pd.DataFrame({"posting_id": new_ids.astype(str), "matches": matches})

    def _witnesses(self, st: State, graphs: list[sp.csr_matrix], titles: list[str]
                   ) -> tuple[list[sp.csr_matrix], list[str]]:
        add = []
        for j, g in enumerate(graphs):
            coo = g.tocoo()
            if not (coo.row != coo.col).any():
                w = st.witness(j)
                if w is not None:
                    add.append((j, w))
        if not add:
            return graphs, titles
        n0 = len(titles)
        big = n0 + 2 * len(add)
        out = [sp.csr_matrix((g.data, g.indices, np.r_[g.indptr, np.full(big - n0, g.indptr[-1])]),
                             shape=(big, big)) for g in graphs]
        titles = list(titles)
        for t, (j, (a, b, s)) in enumerate(add):
            u = n0 + 2 * t
            pair = sp.csr_matrix(([s], ([u], [u + 1])), shape=(big, big), dtype=np.float32)
            out[j] = sp.csr_matrix(out[j] + pair)
            titles.extend(st.titles.get([a, b]))
        return out, titles

    def add(self, new: Postings, replace: bool = False) -> MatchIndex:
        """Fold ``new`` into the catalogue, so later queries see it; ``replace=True``
        updates postings whose ids are already indexed. With self-training, the new
        postings' candidate pairs join the evidence and the point is read again (a
        replaced posting's earlier pairs stay counted). Returns ``self``."""
        if len(new) == 0:
            return self
        with self._write:
            st = self._state
            q = self._plan(st, new, replace)
            stores = {k: s.committed(q.slots, q.vecs[k], q.n_total) for k, s in st.stores.items()}
            steps: list[Step] = []
            for step, k, plan in zip(st.steps, self.step_embedder, q.plans):
                store = stores.get(k) or VectorStore(np.zeros((0, 1), np.float32))
                steps.append(step.committed(store, plan, q.slots, q.vecs[k]))
            ids = st.ids.replaced(q.slots, [str(p) for p in new.posting_id])
            titles = st.titles.replaced(q.slots, new.titles)
            embedders = {k: (e.added(new) if isinstance(e, OpenVocabulary) else e)
                         for k, e in st.embedders.items()}
            if self.guard is not None:
                self.guard.add(new, replace)
            self._state = State(ids, titles, stores, steps, embedders)
            self._df = None  # word rarity read again at the next query
            if self.self_train_evidence is not None:  # the new pairs' evidence counts too
                self._df = catalogue_df(titles.all())
                more = new_evidence([getattr(s.final, "rows", None) for s in steps],
                                    titles.get, q.slots, self._df)
                counts, hits = (a + b for a, b in zip(self.self_train_evidence, more))
                self.self_train_evidence = (counts, hits)
                self.self_train_point = evidence_point(counts, hits)
        return self

    # --- persistence --------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the index (and its pipeline) to folder ``path``, atomically."""
        from ._store import save_index

        return save_index(self, Path(path))

    @classmethod
    def load(cls, path: str | Path, pipeline: Any = None, mmap: bool = True) -> MatchIndex:
        """Load a folder written by :meth:`save`. ``pipeline``: the fitted pipeline to
        answer with (default: the copy saved with the index); an index built by another
        model or library version is refused."""
        from ._store import load_index

        return load_index(cls, Path(path), pipeline, mmap)

