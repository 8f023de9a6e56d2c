"""scikit-learn's TF-IDF count matrices, counted without a Python call per title.

``TfidfVectorizer`` analyses each document in Python (a regex, then n-grams in a loop)
and counts into a dict, once to learn the vocabulary and once more to transform. Here
every document is tokenised in one regex pass over all of them; word n-grams are array
concatenations, character n-grams are those of each *distinct* word (from the
vectorizer's own ``_char_wb_ngrams``, which pads and cuts each word on its own) summed
by a sparse product, and counting is a sort. The matrix equals the vectorizer's own
count matrix (float counts, sorted columns), so its own ``TfidfTransformer`` makes the
same vectors, bit for bit. Settings this does not cover return ``None``: the caller
falls back to scikit-learn.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = ["count_matrix"]

_SEP = "\n"
_TOKEN_OR_SEP = re.compile(r"\S+|" + _SEP)


def _supported(vec: Any) -> bool:
    """Whether ``vec`` analyses as plain word (``\\S+``) or ``char_wb`` n-grams of text."""
    plain = (vec.input == "content" and vec.preprocessor is None and vec.tokenizer is None
             and not vec.lowercase and vec.strip_accents is None and not vec.binary)
    if vec.analyzer == "word":
        return plain and vec.token_pattern == r"\S+" and vec.stop_words is None
    return plain and vec.analyzer == "char_wb"


def _tokens(docs: list[str]) -> tuple[np.ndarray, np.ndarray] | None:
    """Whitespace-separated tokens of all documents and the document of each."""
    text = _SEP.join(docs)
    if not docs or text.count(_SEP) != len(docs) - 1:  # a document holding the separator
        return None
    stream = np.array(_TOKEN_OR_SEP.findall(text), dtype=object)
    sep = stream == _SEP
    return stream[~sep], np.cumsum(sep, dtype=np.int64)[~sep]


def _word_terms(vec: Any, tok: np.ndarray, doc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every word n-gram occurrence (tokens joined by a space) and its document."""
    lo, hi = vec.ngram_range
    terms, docs = [], []
    for k in range(lo, hi + 1):
        m = len(tok) - k + 1
        if m <= 0:
            break
        at = np.flatnonzero(doc[:m] == doc[k - 1:k - 1 + m])  # all k tokens in one document
        t = tok[at]
        for s in range(1, k):
            t = t + " " + tok[at + s]
        terms.append(t)
        docs.append(doc[at])
    if not terms:
        return np.empty(0, dtype=object), np.empty(0, dtype=np.int64)
    return np.concatenate(terms), np.concatenate(docs)


def _columns(uniq: list[str], vocabulary: dict[str, int] | None) -> tuple[np.ndarray, dict[str, int]]:
    """Each distinct term's column (-1: not in a fixed ``vocabulary``) and the vocabulary
    (learnt: the terms sorted, as scikit-learn numbers them)."""
    if vocabulary is None:
        vocabulary = {t: i for i, t in enumerate(sorted(uniq))}
    return np.array([vocabulary.get(t, -1) for t in uniq], dtype=np.int64), vocabulary


def _csr(rows: np.ndarray, cols: np.ndarray, counts: np.ndarray, shape: tuple[int, int],
         dtype: Any) -> sp.csr_matrix:
    """CSR from (row, col)-sorted unique entries."""
    indptr = np.searchsorted(rows, np.arange(shape[0] + 1))
    return sp.csr_matrix((counts.astype(dtype), cols.astype(np.int32), indptr), shape=shape)


def count_matrix(vec: Any, docs: list[str], vocabulary: dict[str, int] | None = None
                 ) -> tuple[sp.csr_matrix, dict[str, int]] | None:
    """``vec``'s document-term count matrix of ``docs`` and its vocabulary: learnt from
    ``docs`` (all terms, sorted) when ``vocabulary`` is ``None``, else that one (terms
    outside it dropped). ``None`` when ``vec``'s settings need scikit-learn's analyser."""
    if not _supported(vec):
        return None
    split = _tokens(docs)
    if split is None:
        return None
    tok, doc = split
    n = len(docs)
    if vec.analyzer == "word":
        terms, tdoc = _word_terms(vec, tok, doc)
        codes, uniq = pd.factorize(terms)
        col, vocabulary = _columns(uniq.tolist(), vocabulary)
        keep = col[codes] >= 0
        v = max(len(vocabulary), 1)
        keys, counts = np.unique(tdoc[keep] * v + col[codes[keep]], return_counts=True)
        return _csr(keys // v, keys % v, counts, (n, len(vocabulary)), vec.dtype), vocabulary
    # char_wb: a document's n-grams are those of its words, each word on its own
    wcodes, words = pd.factorize(tok)
    grams = [vec._char_wb_ngrams(w) for w in words.tolist()]
    gcodes, uniq = pd.factorize(np.array([g for gs in grams for g in gs], dtype=object))
    col, vocabulary = _columns(uniq.tolist(), vocabulary)
    gcol = col[gcodes]
    wrow = np.repeat(np.arange(len(grams), dtype=np.int64), [len(gs) for gs in grams])
    keep = gcol >= 0
    v = max(len(vocabulary), 1)
    keys, counts = np.unique(wrow[keep] * v + gcol[keep], return_counts=True)
    # counted in the output's own type (exact: small integer counts), so no float64
    # copy of the whole matrix is made on the way
    exact = vec.dtype if np.dtype(vec.dtype) in (np.float32, np.float64) else np.float64
    word_grams = _csr(keys // v, keys % v, counts, (len(grams), len(vocabulary)), exact)
    nw = max(len(grams), 1)
    keys, counts = np.unique(doc * nw + wcodes, return_counts=True)
    doc_words = _csr(keys // nw, keys % nw, counts, (n, len(grams)), exact)
    x = sp.csr_matrix(doc_words @ word_grams)
    x.sort_indices()
    x.eliminate_zeros()
    return sp.csr_matrix(x, dtype=vec.dtype), vocabulary
