"""Title agreement of candidate pairs, as a person reads two titles.

Every feature is about *this catalogue*: token rarity is its inverse document frequency
among the titles being matched (scaled to [0, 1] by the catalogue's size), so a word
that is rare here weighs more whatever the language or shop. Model codes, sizes with
units and plain numbers are read with :mod:`shopee_match.text.codes`, so ``KX-TS108W``
and ``kxts108w`` are one shared code and ``KXTS108W`` against ``KXTS600W`` a conflict.
Nothing is tied to a word list.

All pair work is sparse-matrix algebra over token incidence matrices: no Python loop
over pairs, and none over titles (tokens come from one batch pass, string tests run
once per distinct token).
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..text.codes import split_kinds
from ..text.preprocess import TitlePreprocessor

__all__ = ["TITLE_FEATURES", "TitleContext", "TitleTokens", "stack_tokens", "title_doc_freq",
           "title_features", "title_tokens"]

#: tokens as matched: lower-case, accents and escapes out, codes and units joined; no
#: stop words or stemming (both are language-bound)
_PREP = TitlePreprocessor(stop_words=None, stem=False)
_TRAILING_LETTERS = re.compile(r"[^\W\d_]+$")
_UNIT = re.compile(r"^\d+(?:\.\d+)?(\D*)$")

#: names of :func:`title_features`' columns, in order
TITLE_FEATURES = (
    "word_jaccard", "idf_jaccard", "idf_cover_min", "idf_shared_max", "idf_diff_max",
    "idf_diff_sum", "ntok_min", "ntok_max", "len_ratio",
    "code_shared", "code_conflict", "code_onesided", "code_missing",
    "core_shared", "core_conflict",
    "qty_shared", "qty_conflict", "qty_onesided", "qty_missing", "qty_unit_conflict",
    "num_shared", "num_conflict", "num_onesided",
)


def _incidence(doc: np.ndarray, term: np.ndarray, n: int, n_terms: int) -> sp.csr_matrix:
    """Binary n x n_terms matrix: row ``doc[t]`` holds ``term[t]`` (repeats once)."""
    keys = np.unique(doc.astype(np.int64) * max(n_terms, 1) + term)
    rows, cols = np.divmod(keys, max(n_terms, 1))
    indptr = np.searchsorted(rows, np.arange(n + 1))
    return sp.csr_matrix((np.ones(len(keys), dtype=np.float32), cols, indptr),
                         shape=(n, max(n_terms, 1)))


def _by_token(tok: np.ndarray, func: Callable[[str], Any]) -> np.ndarray:
    """``func`` of each token (an object array), called once per distinct token."""
    codes, uniq = pd.factorize(tok)
    vals = np.empty(len(uniq), dtype=object)
    vals[:] = [func(u) for u in uniq]
    return vals[codes] if len(tok) else np.empty(0, dtype=object)


def _row_max(x: sp.csr_matrix, weight: np.ndarray) -> np.ndarray:
    """Largest ``weight`` of each row's stored columns (0 for an empty row)."""
    out = np.zeros(x.shape[0])
    filled = np.diff(x.indptr) > 0
    if filled.any():
        out[filled] = np.maximum.reduceat(weight[x.indices], x.indptr[:-1][filled])
    return out


def _kind(t: str) -> str:
    """``"num"``, ``"qty"``, ``"code"`` or ``""``, as :func:`split_kinds` sorts a token."""
    codes, qty, nums = split_kinds([t])
    return "num" if nums else "qty" if qty else "code" if codes else ""


@functools.lru_cache(maxsize=1 << 18)
def _facts(t: str) -> tuple[str, str, str | None]:
    """A token's kind (:func:`_kind`), its code core (a code without its trailing
    letters, a colour or region suffix: kxts108w -> kxts108) and its unit (a quantity's
    letters); remembered, as a Dask worker meets the same tokens in every block."""
    m = _UNIT.match(t)
    return _kind(t), _TRAILING_LETTERS.sub("", t) or t, m.group(1) if m else None


def _kinds(tok: np.ndarray, doc: np.ndarray, n: int) -> dict[str, sp.csr_matrix]:
    """Each title's set of codes, quantities, numbers, code cores and units, as
    incidence matrices; every string test runs once per distinct token."""
    codes, uniq = pd.factorize(tok)
    facts = [_facts(u) for u in uniq]
    kind, core, unit = (np.array([f[i] for f in facts], dtype=object)[codes]
                        for i in range(3))
    out = {}
    for name, want, value in (("code", "code", tok), ("qty", "qty", tok), ("num", "num", tok),
                              ("core", "code", core), ("unit", "qty", unit)):
        sel = (kind == want) & (value != None)  # noqa: E711 - element-wise
        codes, uniq = pd.factorize(value[sel])
        out[name] = _incidence(doc[sel], codes, n, len(uniq))
    return out


@dataclass
class TitleTokens:
    """Titles tokenized as the title features read them, title by title (rows can be
    taken and stacked, as a Dask partition sends its postings' to others): every
    title's tokens in order, ``tokens[indptr[i]:indptr[i + 1]]``, and its length."""

    tokens: np.ndarray  #: object array of str
    indptr: np.ndarray  #: n + 1 offsets (int64)
    lengths: np.ndarray  #: each title's length in characters (float64)

    @property
    def n(self) -> int:
        return len(self.lengths)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, rows: slice | np.ndarray) -> TitleTokens:
        """:meth:`take` of rows given as positions or a slice (as a row table's arrays)."""
        return self.take(np.arange(self.n)[rows])

    @staticmethod
    def stack(parts: Sequence[TitleTokens]) -> TitleTokens:
        """:func:`stack_tokens` (as a row table's arrays are concatenated)."""
        return stack_tokens(parts)

    def take(self, rows: np.ndarray) -> TitleTokens:
        """The titles ``rows`` (positions), in that order.

        >>> title_tokens(["red mug", "blue cup 2l"]).take(np.array([1])).tokens.tolist()
        ['blue', 'cup', '2l']
        """
        rows = np.asarray(rows, dtype=np.int64)
        counts = np.diff(self.indptr)[rows]
        indptr = np.r_[0, np.cumsum(counts)].astype(np.int64)
        # each taken title's token positions: its start, then one step per token
        pos = np.repeat(self.indptr[rows] - indptr[:-1], counts) + np.arange(indptr[-1])
        return TitleTokens(self.tokens[pos], indptr, self.lengths[rows])

    def doc_freq(self) -> Counter[str]:
        """Titles holding each token (as :func:`title_doc_freq` counts them)."""
        doc = np.repeat(np.arange(self.n, dtype=np.int64), np.diff(self.indptr))
        term, vocab = pd.factorize(self.tokens)
        words = _incidence(doc, term, self.n, len(vocab))
        df = np.asarray(words.sum(axis=0)).ravel().astype(np.int64)
        return Counter(dict(zip(vocab.tolist(), df[:len(vocab)].tolist())))


def title_tokens(titles: Sequence[str]) -> TitleTokens:
    """:class:`TitleTokens` of ``titles``.

    >>> title_tokens(["Red mug", "blue Mug 2l"]).tokens.tolist()
    ['red', 'mug', 'blue', 'mug', '2l']
    """
    tok, doc = _PREP.token_table(titles)
    n = len(titles)
    indptr = np.searchsorted(doc, np.arange(n + 1)).astype(np.int64)
    return TitleTokens(tok, indptr, np.fromiter(map(len, titles), dtype=np.float64, count=n))


def stack_tokens(parts: Sequence[TitleTokens]) -> TitleTokens:
    """The titles of ``parts``, one after the other.

    >>> stack_tokens([title_tokens(["a b"]), title_tokens(["c"])]).indptr.tolist()
    [0, 2, 3]
    """
    starts = np.cumsum([0] + [len(p.tokens) for p in parts])
    indptr = np.concatenate([[0]] + [p.indptr[1:] + s for p, s in zip(parts, starts)])
    return TitleTokens(np.concatenate([p.tokens for p in parts]) if parts
                       else np.empty(0, dtype=object), indptr.astype(np.int64),
                       np.concatenate([p.lengths for p in parts]) if parts else np.empty(0))


class TitleContext:
    """A catalogue's titles, read once: token incidence matrices (words, codes, sizes,
    numbers, code cores, units), the catalogue's idf and each title's counts, so that
    any block of pairs is then featured by row gathers alone (:meth:`features`).
    ``catalogue_df`` as for :func:`title_features`. Memory: O(tokens).

    >>> ctx = TitleContext(["Panasonic KX-TS108W phone", "panasonic kxts108w",
    ...                     "Panasonic KXTS600W"])
    >>> ctx.features(np.array([0, 0]), np.array([1, 2]))["code_shared"].tolist()
    [1.0, 0.0]
    """

    def __init__(self, titles: Sequence[str],
                 catalogue_df: tuple[Mapping[str, int], int] | None = None) -> None:
        tok, doc = _PREP.token_table(titles)
        self._set(tok, doc, np.fromiter(map(len, titles), dtype=np.float64, count=len(titles)),
                  catalogue_df)

    @classmethod
    def from_tokens(cls, tokens: TitleTokens,
                    catalogue_df: tuple[Mapping[str, int], int] | None = None) -> TitleContext:
        """The context of titles tokenized already (:func:`title_tokens`, rows of several
        stacked with :meth:`TitleTokens.take` and :func:`stack_tokens`): the same as
        ``TitleContext(titles, catalogue_df)``.

        >>> t = ["Panasonic KX-TS108W phone", "panasonic kxts108w", "Panasonic KXTS600W"]
        >>> tokens = stack_tokens([title_tokens(t[:1]), title_tokens(t[1:])])
        >>> TitleContext.from_tokens(tokens).features(np.array([0]), np.array([1]))["code_shared"]
        array([1.])
        """
        out = cls.__new__(cls)
        out._set(tokens.tokens, np.repeat(np.arange(tokens.n, dtype=np.int64),
                                          np.diff(tokens.indptr)), tokens.lengths, catalogue_df)
        return out

    def _set(self, tok: np.ndarray, doc: np.ndarray, lengths: np.ndarray,
             catalogue_df: tuple[Mapping[str, int], int] | None) -> None:
        n = len(lengths)
        self.n = n
        term, vocab = pd.factorize(tok)
        self.words = _incidence(doc, term, n, len(vocab))
        df = np.asarray(self.words.sum(axis=0)).ravel()
        n_cat = n
        if catalogue_df is not None:
            counts, n_cat = catalogue_df[0], int(catalogue_df[1])
            df = np.zeros_like(df)
            df[:len(vocab)] = [counts.get(t, 1) for t in vocab]
        # idf scaled by its largest possible value, so catalogues of any size compare
        self.idf = (np.log((n_cat + 1) / (df + 1)) + 1) / (np.log(n_cat + 1) + 1)
        self.size = np.asarray(self.words.sum(axis=1)).ravel().astype(np.float64)
        self.lengths = np.asarray(lengths, dtype=np.float64)
        self.kinds = {kind: (m, np.asarray(m.sum(axis=1)).ravel().astype(np.float64))
                      for kind, m in _kinds(tok, doc, n).items()}

    def features(self, rows: np.ndarray, cols: np.ndarray) -> dict[str, np.ndarray]:
        """The title features of pairs ``(rows[p], cols[p])`` (see :func:`title_features`)."""
        rows = np.asarray(rows, dtype=np.int64)
        cols = np.asarray(cols, dtype=np.int64)
        idf = self.idf
        a, b = self.words[rows], self.words[cols]
        both = a.multiply(b).tocsr()
        one = (a + b).tocsr()  # 2 where both titles have the token: dropped
        one.data[one.data == 2] = 0
        one.eliminate_zeros()
        wi, wj = np.asarray(a @ idf).ravel(), np.asarray(b @ idf).ravel()
        del a, b
        ws = np.asarray(both @ idf).ravel()
        # counts from the products above, not a second pass over the pairs
        shared_n = np.asarray(both.sum(axis=1)).ravel().astype(np.float64)
        ni, nj = self.size[rows], self.size[cols]
        with np.errstate(invalid="ignore", divide="ignore"):
            f: dict[str, np.ndarray] = {
                "word_jaccard": np.where(ni + nj - shared_n > 0,
                                         shared_n / (ni + nj - shared_n), np.nan),
                "idf_jaccard": np.where(wi + wj - ws > 0, ws / (wi + wj - ws), np.nan),
                "idf_cover_min": np.where(np.minimum(wi, wj) > 0, ws / np.minimum(wi, wj),
                                          np.nan),
            }
        f["idf_shared_max"] = _row_max(both, idf)
        f["idf_diff_max"] = _row_max(one, idf)
        f["idf_diff_sum"] = np.asarray(one @ idf).ravel()
        f["ntok_min"], f["ntok_max"] = np.minimum(ni, nj), np.maximum(ni, nj)
        li, lj = self.lengths[rows], self.lengths[cols]
        f["len_ratio"] = np.minimum(li, lj) / np.maximum(np.maximum(li, lj), 1.0)
        for kind, (m, size) in self.kinds.items():
            shared = np.asarray(m[rows].multiply(m[cols]).sum(axis=1)).ravel().astype(np.float64)
            ci, cj = size[rows], size[cols]
            f[f"{kind}_shared"] = shared
            f[f"{kind}_conflict"] = ((ci > 0) & (cj > 0) & (shared == 0)).astype(np.float64)
            f[f"{kind}_onesided"] = ((ci > 0) ^ (cj > 0)).astype(np.float64)
            f[f"{kind}_missing"] = ci + cj - 2 * shared
        # a unit both titles use, with no quantity of it in common: 64gb against 128gb
        f["qty_unit_conflict"] = (f["unit_shared"] > f["qty_shared"]).astype(np.float64)
        return {k: f[k] for k in TITLE_FEATURES}


def title_features(titles: Sequence[str], rows: np.ndarray, cols: np.ndarray,
                   catalogue_df: tuple[Mapping[str, int], int] | None = None,
                   ) -> dict[str, np.ndarray]:
    """Agreement of the titles of pairs ``(rows[p], cols[p])``, one array per feature.

    ``idf_*``: rarity-weighted word agreement (Jaccard, cover of the shorter title, the
    rarest shared and the rarest unshared token); ``code_*``, ``qty_*``, ``num_*``: shared
    and conflicting model codes, sizes with units and plain numbers (a conflict: both
    titles have one, none shared); ``core_*``: codes less trailing letters.
    ``catalogue_df``: ``(titles containing each token, number of titles)`` of the whole
    catalogue when ``titles`` are part of it (distributed matching, from
    :func:`title_doc_freq`); a token it lacks is in one title. Rarity is then the
    catalogue's, as if every title were given. The titles are read for each call: to
    feature many blocks of pairs, build one :class:`TitleContext`.

    >>> f = title_features(["Panasonic KX-TS108W phone", "panasonic kxts108w",
    ...                     "Panasonic KXTS600W"], np.array([0, 0]), np.array([1, 2]))
    >>> f["code_shared"].tolist(), f["code_conflict"].tolist()
    ([1.0, 0.0], [0.0, 1.0])
    """
    return TitleContext(titles, catalogue_df).features(rows, cols)


def title_doc_freq(titles: Sequence[str]) -> Counter[str]:
    """Titles containing each token, tokenised as :func:`title_features` reads them
    (add the counts of a catalogue's parts for its ``catalogue_df``).

    >>> title_doc_freq(["Red mug", "red MUG red"])["red"]
    2
    """
    return title_tokens(titles).doc_freq()
