"""Why two postings match: each candidate pair's probability and its evidence in words.

For a pipeline whose steps are combined by a learned :class:`~shopee_match.PairReranker`
(``Pipeline.default()``, ``Pipeline.pretrained()``), the evidence is what moved the trees
most for that pair: LightGBM's ``pred_contrib`` (per-feature contributions to the log-odds,
SHAP values of the trees) of the last stage, summed over groups of features a person
checks (model codes, sizes, numbers, rare words, rank both ways, similarity) and phrased
with the pair's own titles. For a union pipeline (``Ensemble``) the evidence is each
step's similarity against its threshold.

>>> from shopee_match import Pipeline, make_catalog
>>> cat = make_catalog(n_groups=40, images=False, seed=0)
>>> scores = score_pairs(Pipeline.pretrained(), cat)
>>> table = scores.table()
>>> list(table.columns)
['left_id', 'right_id', 'probability', 'evidence']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from ..data import Postings
from ..neighbors.graph import graph_to_sets, symmetric_graph
from ..rerank.pair_features import PairContext, candidate_pairs, graph_features
from ..rerank.title_features import title_doc_freq
from ._phrases import feature_group, modality_label, phrase

__all__ = ["PairScores", "score_pairs"]


class PairScores:
    """A catalogue's candidate pairs scored by a fitted pipeline (see :func:`score_pairs`).

    Attributes: ``postings``; ``proba`` (n x n, symmetric: each candidate pair's
    probability, or for a union pipeline its best step similarity); ``matches`` (the
    pipeline's match graph, diagonal included); ``threshold`` (the cut on ``proba``);
    ``kind`` (``"reranker"`` or ``"union"``).

    >>> from shopee_match import Pipeline, make_catalog
    >>> s = score_pairs(Pipeline.pretrained(), make_catalog(n_groups=30, images=False, seed=2))
    >>> s.kind, s.proba.shape == s.matches.shape
    ('reranker', True)
    """

    def __init__(self, postings: Postings, proba: sp.csr_matrix, matches: sp.csr_matrix,
                 threshold: float, kind: str, explainer: Any) -> None:
        self.postings = postings
        self.proba = proba
        self.matches = matches
        self.threshold = threshold
        self.kind = kind
        self._explainer = explainer

    def pairs(self, kept: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(left, right)`` row positions (left < right) of the candidate pairs, or of
        only those the pipeline keeps (``kept=True``) or drops (``kept=False``)."""
        both = sp.triu(self.proba + self.matches, k=1).tocoo()
        r, c = both.row.astype(np.int64), both.col.astype(np.int64)
        order = np.lexsort((c, r))
        r, c = r[order], c[order]
        if kept is None:
            return r, c
        on = np.asarray(self.matches[r, c]).ravel() != 0
        return (r[on], c[on]) if kept else (r[~on], c[~on])

    def probability(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """``proba`` of the pairs (0 where not a candidate)."""
        if len(left) == 0:
            return np.empty(0)
        return np.asarray(self.proba[left, right]).ravel().astype(np.float64)

    def groups(self) -> np.ndarray:
        """Match-set label of each posting: connected components of the match graph."""
        _, labels = connected_components(self.matches, directed=False)
        return labels.astype(np.int64)

    def submission(self) -> pd.DataFrame:
        """``posting_id, matches`` (space-separated ids, itself included) of the match
        graph: what ``Pipeline.predict`` returns."""
        ids = np.asarray(self.postings.posting_id, dtype=object)
        sets = graph_to_sets(self.matches)
        return pd.DataFrame({"posting_id": ids.astype(str),
                             "matches": [" ".join(ids[s]) for s in sets]})

    def evidence(self, left: Sequence[int] | np.ndarray, right: Sequence[int] | np.ndarray,
                 top: int = 3) -> list[str]:
        """The evidence of each pair in words: its ``top`` strongest reasons, strongest
        first, each with the log-odds it moved (``+`` towards the same product), read
        from the pair in the direction given (left, right)."""
        return list(self._explainer(np.asarray(left, np.int64), np.asarray(right, np.int64), top))

    def table(self, kept: bool | None = True, top: int = 3) -> pd.DataFrame:
        """``left_id, right_id, probability, evidence`` of the kept pairs (``kept``: as in
        :meth:`pairs`); ``probability`` is empty for a union pipeline."""
        r, c = self.pairs(kept)
        ids = self.postings.posting_id
        prob = self.probability(r, c) if self.kind == "reranker" else np.full(len(r), np.nan)
        return pd.DataFrame({"left_id": ids[r].astype(str), "right_id": ids[c].astype(str),
                             "probability": np.round(prob, 4), "evidence": self.evidence(r, c, top)})


def score_pairs(pipe: Any, postings: Postings, embeddings: Any = None) -> PairScores:
    """Score ``postings``' candidate pairs with fitted ``pipe`` and get their evidence.

    One pass of the pipeline's steps and trees (about the cost of ``pipe.predict``);
    the match graph is the pipeline's own cut of the same probabilities.

    >>> from shopee_match import Pipeline, make_catalog
    >>> cat = make_catalog(n_groups=30, images=False, seed=1)
    >>> s = score_pairs(Pipeline.pretrained(), cat)
    >>> r, c = s.pairs(kept=True)
    >>> len(s.evidence(r[:2], c[:2])) == min(2, len(r))
    True
    """
    if not isinstance(postings, Postings):
        raise TypeError(f"score_pairs expects Postings (see read_postings), got "
                        f"{type(postings).__name__}.")
    ens = getattr(pipe, "combiner_", None)
    if ens is None:
        raise ValueError("score_pairs needs a fitted pipeline (Pipeline.fit, .load or "
                         ".pretrained()).")
    graphs = pipe.step_graphs(postings, embeddings)
    titles = postings.titles if postings.has_titles else None
    if hasattr(ens, "predict_proba_graph"):
        scores = _reranked(ens, graphs, postings, titles)
    else:
        scores = _union(pipe, ens, graphs, postings)
    guard = getattr(pipe, "shift_guarded", None)  # the cut predict makes, guard included
    if callable(guard):
        scores.matches = guard(scores.matches, postings)
    return scores


def _reranked(ens: Any, graphs: dict[str, sp.csr_matrix], postings: Postings,
              titles: list[str] | None) -> PairScores:
    n = len(postings)
    r, c = candidate_pairs(graphs)
    tt = titles if getattr(ens, "uses_titles_", False) else None
    ctx = PairContext(graphs, tt, ens.n_jobs)
    # the pairs the reranker's prefilter drops are never scored (probability 0)
    keep = ens.keep_pairs(ctx.graphs, r, c) if hasattr(ens, "keep_pairs") else None
    dropped = np.empty(0, dtype=np.int64)
    if keep is not None:
        dropped = r[~keep] * n + c[~keep]
        r, c = r[keep], c[keep]
    x, names = ctx.features(r, c)
    del ctx
    proba = sp.csr_matrix((n, n), dtype=np.float32)
    threads = 0 if ens.n_jobs is None else int(ens.n_jobs)
    for stage, booster in enumerate(ens.boosters_):
        if stage:
            f = graph_features(proba, r, c, prefix=f"stage{stage}__")
            x = np.hstack([x, np.column_stack(list(f.values()))]) if len(r) else np.empty(
                (0, x.shape[1] + len(f)))
            names = names + list(f)
        p = (np.asarray(booster.predict(x, num_threads=threads), dtype=np.float64)
             if len(r) else np.empty(0))
        proba = symmetric_graph(sp.coo_matrix((p, (r, c)), shape=(n, n)))
    if list(ens.feature_names_) != names:
        raise ValueError("This PairReranker was fitted on other pair features than this "
                         "shopee_match computes; refit it with this version.")
    if getattr(ens, "adapt_prior", False):  # the model's own probabilities, corrected
        proba = ens.predict_proba_graph(graphs, titles)
    matches = ens.matches(proba, titles)
    threshold = float(getattr(ens, "threshold_", ens.threshold))
    learnt = sp.csr_matrix(matches - ens.select(proba)) if ens.self_train else None
    rarity = title_doc_freq(titles) if titles is not None else {}
    x_last, keys, n_first = x.astype(np.float32), r * n + c, ens.boosters_[0].num_feature()
    groups = [feature_group(f) for f in names]
    uniq = sorted(set(groups))
    member = np.zeros((len(names), len(uniq)))
    member[np.arange(len(names)), [uniq.index(g) for g in groups]] = 1.0

    def explain(left: np.ndarray, right: np.ndarray, top: int) -> list[str]:
        if len(left) == 0:
            return []
        out = []
        # the pair as given (left, right): its probability is the mean of both
        # directions, whose reasons agree but for rank and neighbourhood sides; one
        # direction halves the cost of the SHAP values (most of an explanation's time)
        pos_ij = np.minimum(np.searchsorted(keys, left * n + right), max(len(keys) - 1, 0))
        found = keys[pos_ij] == left * n + right if len(keys) else np.zeros(len(left), bool)
        rows = pos_ij[found]
        contrib = (_contributions(ens.boosters_, x_last[rows].astype(np.float64), n_first,
                                  names, threads) if len(rows)
                   else np.zeros((0, len(names))))
        by_group = contrib @ member
        values = x_last[rows]
        j = 0
        for i in range(len(left)):
            if not found[i]:
                key = int(left[i]) * n + int(right[i])
                at = min(int(np.searchsorted(dropped, key)), max(len(dropped) - 1, 0))
                out.append("dropped by the reranker's prefilter (a plainly wrong candidate "
                           "pair, never scored)" if len(dropped) and dropped[at] == key
                           else "not a candidate pair (no step proposed it)")
                continue
            vals = dict(zip(names, values[j].tolist()))
            g = by_group[j]
            order = np.argsort(-np.abs(g))[:top]
            lt = titles[left[i]] if titles is not None else None
            rt = titles[right[i]] if titles is not None else None
            words = [f"{phrase(uniq[o], vals, lt, rt, g[o], rarity)} ({g[o]:+.1f})"
                     for o in order if abs(g[o]) >= 0.05]
            said = "; ".join(words) or "no strong evidence either way"
            if learnt is not None and learnt[left[i], right[i]] != 0:
                said = (f"kept by self-training on this catalogue: the rest of the titles "
                        f"are as alike as pairs whose codes here mostly agree (the model "
                        f"alone: {said})")
            out.append(said)
            j += 1
        return out

    return PairScores(postings, proba, matches, threshold, "reranker", explain)


def _contributions(boosters: list[Any], x: np.ndarray, n_first: int, names: list[str],
                   threads: int) -> np.ndarray:
    """Per-feature log-odds contributions of the last stage (``pred_contrib``), with the
    part it owes to the first stage's probability (``stage1__*`` features) handed back
    to the first stage's own features in proportion to their contributions there: the
    chain of the two models read as one. What does not map back stays on ``stage1__*``."""
    last = np.asarray(boosters[-1].predict(x, pred_contrib=True, num_threads=threads))[:, :-1]
    if len(boosters) < 2:
        return last
    first = np.asarray(boosters[0].predict(x[:, :n_first], pred_contrib=True,
                                           num_threads=threads))[:, :-1]
    stage = np.array([f.startswith("stage1__") for f in names])
    owed = last[:, stage].sum(axis=1)
    moved = first.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = np.clip(np.where(np.abs(moved) > 1e-6, owed / moved, 0.0), 0.0, 5.0)
    out = last.copy()
    out[:, :n_first] += alpha[:, None] * first
    left = owed - alpha * moved  # what stays with the first-pass probability
    out[:, stage] = 0.0
    out[:, np.flatnonzero(stage)[0]] = left
    return out


def _union(pipe: Any, ens: Any, graphs: dict[str, sp.csr_matrix],
           postings: Postings) -> PairScores:
    n = len(postings)
    matches = sp.csr_matrix(ens.combine(graphs))
    thresholds = {name: float(m.similarity_threshold()) for name, _, m in pipe.steps}
    best = sp.csr_matrix((n, n), dtype=np.float32)
    for g in graphs.values():
        best = best.maximum(sp.csr_matrix(g, dtype=np.float32))
    best.setdiag(0)
    best.eliminate_zeros()
    cut = min(thresholds.values()) if thresholds else 0.0

    def explain(left: np.ndarray, right: np.ndarray, top: int) -> list[str]:
        out = []
        for i, j in zip(left.tolist(), right.tolist()):
            parts = []
            for name, g in graphs.items():
                s = float(max(g[i, j], g[j, i]))
                if s:
                    parts.append(f"{modality_label(name)} similarity {s:.2f} "
                                 f"(cut {thresholds.get(name, float('nan')):.2f})")
            out.append("; ".join(parts[:top]) or "matched through other postings")
        return out

    return PairScores(postings, sp.csr_matrix(best), matches, cut, "union", explain)
