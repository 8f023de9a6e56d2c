"""``fit_on="predict"`` TF-IDF on Dask: vocabulary and idf from one pass over the partitions.

A :class:`~shopee_match.TfidfEmbedder` with ``fit_on="predict"`` learns its vocabulary
and idf on the postings it embeds. Partitions cannot each do that (every partition
would weigh terms by its own counts), so one counting pass runs first: each partition
counts, with the embedder's own analyzers, the documents (and occurrences) of every
term; the counts are summed in a tree; the vocabulary (sorted, pruned by ``min_df`` and
``max_features``) and the idf are then those scikit-learn computes on all the titles at
once. The embedder becomes a ``fit_on="train"`` copy holding them, so every partition
is embedded into the same vectors as one machine gives. The same pass counts the title
tokens of the pair reranker's rarity features (:func:`~shopee_match.rerank.title_features.title_doc_freq`).
"""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..data import Postings
from ..text import count_matrix
from ..text.weighting import smooth_idf

__all__ = [
    "Counts",
    "count_terms",
    "counted_rows",
    "fit_predict_tfidf",
    "frame_tokens",
    "merge_counts",
    "partition_counts",
]

#: per vectorizer kind, ``{term: (documents, occurrences)}``; ``"titles"``: the title
#: tokens' document counts; ``"n"``: the number of postings
Counts = dict[str, Any]


def _predict_fitted(pipe: Any) -> list[Any]:
    """The distinct ``fit_on="predict"`` TF-IDF embedders of a pipeline."""
    from ..text.tfidf import TfidfEmbedder

    out: dict[int, Any] = {}
    for _, emb, _ in pipe.steps:
        if isinstance(emb, TfidfEmbedder) and emb.fit_on == "predict":
            out[id(emb)] = emb
    return list(out.values())


def frame_tokens(df: pd.DataFrame) -> Any:
    """The title tokens of a partition's postings (:func:`~shopee_match.rerank.title_features.title_tokens`),
    or ``None`` where it has no titles: tokenized once, for the counting pass and for
    the pair reranker's title features."""
    from ..rerank.title_features import title_tokens

    postings = Postings(df, source="partition")
    return title_tokens(postings.titles) if postings.has_titles else None


def frame_titles(df: pd.DataFrame) -> list[str] | None:
    """A partition's titles (for self-training), or ``None`` where it has none."""
    postings = Postings(df, source="partition")
    return list(postings.titles) if postings.has_titles else None


def partition_counts(df: pd.DataFrame, pipe: Any) -> list[dict[str, Any]]:
    """One partition's count matrices for each ``fit_on="predict"`` TF-IDF embedder (by
    position): ``{"steps": its step names, "kinds": {kind: (counts, terms, fast)}}``, the
    terms sorted (the matrix's columns) and ``fast`` whether the single machine's counter
    made it (then :func:`counted_rows` reuses it to embed the partition: the titles are
    preprocessed and counted once). ``kinds[kind]`` is ``None`` for no term."""
    from sklearn.feature_extraction.text import CountVectorizer

    postings = Postings(df, source="partition")
    out = []
    for emb in _predict_fitted(pipe):
        docs = emb.documents(postings)
        kinds: dict[str, Any] = {}
        for kind, vec in emb.make_vectorizers():
            fast = count_matrix(vec, docs)  # the single machine's counter where it applies
            if fast is not None:
                m, vocab = fast
                terms = sorted(vocab, key=vocab.__getitem__)
            else:
                cv = CountVectorizer(analyzer=vec.build_analyzer(), dtype=np.float32)
                try:
                    m = cv.fit_transform(docs)
                except ValueError:  # no term in this partition
                    kinds[kind] = None
                    continue
                terms = cv.get_feature_names_out().tolist()
            kinds[kind] = (sp.csr_matrix(m), [str(t) for t in terms], fast is not None) \
                if terms else None
        out.append({"steps": [name for name, e, _ in pipe.steps if e is emb], "kinds": kinds})
    return out


def counted_rows(counted: dict[str, Any], emb: Any) -> list[sp.csr_matrix] | None:
    """The count matrices of a partition (one embedder's, from :func:`partition_counts`)
    over fitted ``emb``'s vocabularies, for
    :meth:`~shopee_match.TfidfEmbedder.embed_counts`: each matrix's columns renumbered
    (terms outside the vocabulary dropped), the counts ``emb.embed`` would make; ``None``
    where one was counted by scikit-learn's analyser (embed as usual then)."""
    from ..neighbors.graph import keep_entries

    out = []
    for kind, vec in emb.vectorizers_:
        got = counted["kinds"].get(kind)
        if got is None or not got[2]:
            return None
        m, terms, _ = got
        col = np.array([vec.vocabulary_.get(t, -1) for t in terms], dtype=np.int64)[m.indices]
        keep = col >= 0
        shape = (m.shape[0], len(vec.vocabulary_))
        x = sp.csr_matrix((m.data, np.where(keep, col, 0).astype(np.int32), m.indptr),
                          shape=shape)
        if not keep.all():
            x = keep_entries(x, keep)
        x.sort_indices()  # terms and vocabulary are both sorted: already in order
        out.append(x)
    return out


def count_terms(df: pd.DataFrame, pipe: Any, titles: Any,
                counted: list[dict[str, Any]] | None = None) -> Counts:
    """One partition's term counts for each ``fit_on="predict"`` TF-IDF embedder (by
    position), and its title-token counts when ``titles`` (``True``: tokenize the
    titles; or their :class:`~shopee_match.rerank.title_features.TitleTokens`, from
    :func:`frame_tokens`). ``counted``: the partition's :func:`partition_counts`."""
    if counted is None:
        counted = partition_counts(df, pipe)
    out: Counts = {"n": len(df), "tfidf": []}
    for one in counted:
        kinds: dict[str, dict[str, tuple[int, float]]] = {}
        for kind, got in one["kinds"].items():
            if got is None:
                kinds[kind] = {}
                continue
            m, terms, _ = got
            x = sp.csc_matrix(m)
            dfs = np.diff(x.indptr)
            tfs = np.asarray(x.sum(axis=0)).ravel()
            kinds[kind] = {t: (int(d), float(f)) for t, d, f in zip(terms, dfs, tfs)}
        out["tfidf"].append(kinds)
    if titles is True:
        from ..rerank.title_features import title_doc_freq

        part = Postings(df, source="partition")
        if part.has_titles:  # a catalogue without titles has no title counts
            out["titles"] = title_doc_freq(part.titles)
    elif titles is not None and titles is not False:
        out["titles"] = titles.doc_freq()
    return out


def merge_counts(a: Counts, b: Counts) -> Counts:
    """The counts of two sets of partitions together."""
    out: Counts = {"n": a["n"] + b["n"], "tfidf": []}
    for ka, kb in zip(a["tfidf"], b["tfidf"]):
        kinds = {}
        for kind in ka:
            big, small = (ka[kind], kb[kind]) if len(ka[kind]) >= len(kb[kind]) else \
                (kb[kind], ka[kind])
            merged = dict(big)
            for t, (d, f) in small.items():
                d0, f0 = merged.get(t, (0, 0.0))
                merged[t] = (d0 + d, f0 + f)
            kinds[kind] = merged
        out["tfidf"].append(kinds)
    if "titles" in a:
        titles: Counter[str] = Counter(a["titles"])
        titles.update(b["titles"])
        out["titles"] = titles
    return out


def _vocabulary(emb: Any, vec: Any, kind: str, counts: dict[str, tuple[int, float]],
                n: int) -> None:
    """Set ``vec``'s vocabulary and idf as ``vec.fit`` on all ``n`` titles would."""
    if not counts:
        raise ValueError(
            f"TfidfEmbedder: no {kind} terms in any title (the titles are empty after "
            "preprocessing); check the `title` column."
        )
    terms = sorted(counts)  # scikit-learn sorts its features
    dfs = np.array([counts[t][0] for t in terms], dtype=np.int64)
    # CountVectorizer._limit_features: document-frequency bounds, then max_features
    mask = dfs >= emb.min_df
    if emb.max_features is not None and mask.sum() > emb.max_features:
        tfs = np.array([counts[t][1] for t in terms], dtype=np.float32)
        inds = (-tfs[mask]).argsort()[: emb.max_features]
        keep = np.zeros(len(dfs), dtype=bool)
        keep[np.flatnonzero(mask)[inds]] = True
        mask = keep
    if not mask.any():
        raise ValueError(f"TfidfEmbedder: after pruning, no {kind} terms remain; lower "
                         "`min_df` or raise `max_features`.")
    kept = np.flatnonzero(mask)
    vec.vocabulary_ = {terms[i]: j for j, i in enumerate(kept)}
    vec.idf_ = smooth_idf(dfs[kept], n)  # the one weighting batch uses


def fit_predict_tfidf(pipe: Any, counts: Counts) -> Any:
    """A copy of ``pipe`` whose ``fit_on="predict"`` TF-IDF embedders are ``fit_on="train"``
    ones holding the vocabulary and idf of all the counted postings.

    >>> from shopee_match import Pipeline, make_catalog
    >>> data = make_catalog(n_groups=8, images=False, seed=0)
    >>> pipe = Pipeline.default(rerank=False, phash=False).fit(data)
    >>> fitted = fit_predict_tfidf(pipe, count_terms(data.df, pipe, titles=False))
    >>> x, y = fitted.steps[0][1].embed(data), pipe.steps[0][1].embed(data)
    >>> bool(abs(x - y).max() == 0)
    True
    """
    from sklearn.base import clone

    swap = {}
    for emb, kinds in zip(_predict_fitted(pipe), counts["tfidf"]):
        new = clone(emb).set_params(fit_on="train")
        new.validate()
        vecs = new.make_vectorizers()
        for kind, vec in vecs:
            _vocabulary(new, vec, kind, kinds[kind], int(counts["n"]))
        new.vectorizers_ = vecs
        swap[id(emb)] = new
    out = copy.copy(pipe)
    out.steps = [(name, swap.get(id(emb), emb), m) for name, emb, m in pipe.steps]
    return out
