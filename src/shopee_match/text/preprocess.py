"""Title preprocessing as the seed meant it, done right.

Lower-case, decode escaped bytes, punctuation out, stop words out, Porter stemming,
optional WordNet lemmatising. Works without NLTK's downloadable corpora: stop words
fall back to scikit-learn's built-in English list and lemmatising is skipped with a
warning.
"""

from __future__ import annotations

import functools
import logging
import re
import unicodedata
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pandas as pd

from .._params import BaseEstimator
from .._registry import register
from .codes import code_tokens, join_codes

__all__ = ["TitlePreprocessor", "decode_escapes", "english_stop_words"]

logger = logging.getLogger(__name__)

_ESCAPED_BYTES = re.compile(r"(?:\\x[0-9a-fA-F]{2})+")
# A token is a run of letters/digits, with decimals kept whole ("4,5" -> "4.5").
_TOKEN = re.compile(r"[^\W_]+(?:[.,]\d+)*")
_NUMBER = re.compile(r"^\d+(?:\.\d+)?$")
# "7.0" is "7" and "1.0l" is "1l": a version or size written with zero decimals
_ZERO_DECIMALS = re.compile(r"^(\d+)\.0+(?=[^\W\d_]*$)")
_UNIT = re.compile(r"^[a-z]{1,3}$")
# batch path: titles joined by a separator no step crosses (a non-word starter character)
_SEP = "\n"
_TOKEN_OR_SEP = re.compile(_TOKEN.pattern + "|" + _SEP)
_SPLIT_DOCS = re.compile(" ?" + _SEP + " ?")
_QUANTITY = re.compile(r"^\d+(?:\.\d+)?[^\W\d_]{1,3}$")


def decode_escapes(text: str) -> str:
    r"""Turn literal ``\xNN`` byte escapes (common in scraped titles) back into text.

    >>> decode_escapes(r"Nescafe \xc3\x89clair")
    'Nescafe Éclair'
    """

    def fix(m: re.Match[str]) -> str:
        raw = bytes(int(h, 16) for h in m.group(0).split("\\x")[1:])
        return raw.decode("utf-8", errors="ignore")

    return _ESCAPED_BYTES.sub(fix, text)


@functools.lru_cache(maxsize=1)
def english_stop_words() -> frozenset[str]:
    """NLTK's English stop words when its corpus is installed, else scikit-learn's list."""
    try:
        from nltk.corpus import stopwords

        return frozenset(stopwords.words("english"))
    except LookupError:
        logger.debug("NLTK stopwords corpus not found; using scikit-learn's English list.")
    except ImportError:  # pragma: no cover - nltk is a dependency
        pass
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


@functools.lru_cache(maxsize=1)
def _stemmer() -> Any:
    from nltk.stem import PorterStemmer

    return PorterStemmer()


@functools.lru_cache(maxsize=1)
def _lemmatizer() -> Any:
    """WordNet lemmatizer, or ``None`` (with one warning) when WordNet is missing."""
    try:
        from nltk.stem import WordNetLemmatizer

        lem = WordNetLemmatizer()
        lem.lemmatize("tests")  # raises LookupError when the corpus is absent
        return lem
    except LookupError:
        warnings.warn(
            "NLTK's WordNet corpus is not installed, so lemmatize=True is skipped. "
            "Install it with `python -m nltk.downloader wordnet` where you have internet.",
            UserWarning,
            stacklevel=4,
        )
        return None


@register()
class TitlePreprocessor(BaseEstimator):
    """Normalise product titles into a space-joined string of tokens.

    Parameters
    ----------
    lowercase, decode : lower-case; decode literal ``\\xNN`` escapes and strip accents.
    stop_words : ``"english"``, ``None``, or a list of words to drop.
    stem : Porter-stem each token (no NLTK data needed).
    lemmatize : WordNet-lemmatise each token (needs NLTK's ``wordnet``; skipped with a
        warning without it).
    join_units : glue a number to a short unit after it ("397 gr" -> "397gr") so sizes
        and model numbers stay one token.
    join_codes : write a model code one way however it is split ("KX-TS108W", "kx ts108w"
        -> "kxts108w", see :mod:`shopee_match.text.codes`), keeping the pieces too.

    >>> TitlePreprocessor().transform_one("The Running Shoes, 42 cm (NEW!)")
    'run shoe 42cm new'
    """

    def __init__(
        self,
        lowercase: bool = True,
        decode: bool = True,
        stop_words: str | list[str] | None = "english",
        stem: bool = True,
        lemmatize: bool = False,
        join_units: bool = True,
        join_codes: bool = True,
    ) -> None:
        self.lowercase = lowercase
        self.decode = decode
        self.stop_words = stop_words
        self.stem = stem
        self.lemmatize = lemmatize
        self.join_units = join_units
        self.join_codes = join_codes

    def _stop_set(self) -> frozenset[str]:
        if self.stop_words is None:
            return frozenset()
        if self.stop_words == "english":
            return english_stop_words()
        if isinstance(self.stop_words, str):
            raise ValueError(
                f"`stop_words` must be 'english', None or a list of words, got {self.stop_words!r}."
            )
        return frozenset(w.lower() for w in self.stop_words)

    def tokens(self, title: str) -> list[str]:
        """The title's tokens after every enabled step."""
        text = title
        if self.decode:
            text = decode_escapes(text)
            text = unicodedata.normalize("NFKD", text)
            text = "".join(c for c in text if not unicodedata.combining(c))
        if self.lowercase:
            text = text.lower()
        if self.join_codes:
            text = join_codes(text)
        toks = [_ZERO_DECIMALS.sub(r"\1", t.replace(",", ".")) for t in _TOKEN.findall(text)]
        if self.join_units:
            toks = _join_units(toks)
        if self.join_codes:
            toks = code_tokens(toks)
        stops = self._stop_set()
        toks = [t for t in toks if t not in stops]
        if self.lemmatize:
            lem = _lemmatizer()
            if lem is not None:
                toks = [_cached_lemma(t) for t in toks]
        if self.stem:
            toks = [_cached_stem(t) for t in toks]
        return toks

    def transform_one(self, title: str) -> str:
        return " ".join(self.tokens(title))

    def transform(self, titles: Iterable[str]) -> list[str]:
        """Preprocess every title (the seed's version returned its input unchanged).

        The same strings as :meth:`transform_one` title by title, computed in one pass:
        text steps on all titles joined, token steps once per distinct token.
        """
        titles = list(titles)
        stream = self._stream(titles)
        if stream is None:
            return [self.transform_one(t) for t in titles]
        docs = _SPLIT_DOCS.split(" ".join(stream.tolist()))
        if len(docs) != len(titles):  # pragma: no cover - guarded by _stream
            return [self.transform_one(t) for t in titles]
        return docs

    def token_table(self, titles: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
        """Every title's tokens in order, as ``(tokens, title index)`` arrays: the
        tokens of :meth:`tokens` for each title, without a Python call per title."""
        titles = list(titles)
        stream = self._stream(titles)
        if stream is None:
            per = [self.tokens(t) for t in titles]
            doc = np.repeat(np.arange(len(titles), dtype=np.int64), [len(p) for p in per])
            return np.array([t for p in per for t in p], dtype=object), doc
        sep = stream == _SEP
        doc = np.cumsum(sep, dtype=np.int64)
        return stream[~sep], doc[~sep]

    def _stream(self, titles: list[str]) -> np.ndarray | None:
        """All titles' tokens as one object array, each title followed by a separator
        (the last excepted); ``None`` where the batch path cannot be used (a separator
        inside a title, or a stop word list holding it)."""
        n = len(titles)
        stops = self._stop_set()
        if n == 0 or _SEP in stops:
            return None
        text = _SEP.join(titles)
        if text.count(_SEP) != n - 1:
            return None
        if self.decode:
            text = decode_escapes(text)
            text = unicodedata.normalize("NFKD", text)
            marks = [c for c in set(text) if unicodedata.combining(c)]
            if marks:
                text = text.translate(dict.fromkeys(map(ord, marks)))
        if self.lowercase:
            text = text.lower()
        if self.join_codes:
            text = join_codes(text)
        if text.count(_SEP) != n - 1:  # a decoded escape made a separator
            return None
        tok = np.array(_TOKEN_OR_SEP.findall(text), dtype=object)
        tok = _per_token(tok, lambda t: _ZERO_DECIMALS.sub(r"\1", t.replace(",", ".")))
        if self.join_units and len(tok) > 1:
            # a number then a short unit: glued (the unit can never start another pair)
            num = _per_token(tok, lambda t: bool(_NUMBER.match(t)), False)
            unit = _per_token(tok, lambda t: bool(_UNIT.match(t)), False)
            at = np.flatnonzero(num[:-1] & unit[1:])
            tok[at] = tok[at] + tok[at + 1]
            tok = np.delete(tok, at + 1)
        if self.join_codes and len(tok) > 1:  # as code_tokens: "kx ts108w" -> + "kxts108w"
            short = _per_token(tok, lambda t: t.isalpha() and len(t) <= 3, False)
            code = _per_token(tok, lambda t: (any(c.isdigit() for c in t)
                                              and not _QUANTITY.match(t)
                                              and not _NUMBER.match(t)), False)
            after = np.flatnonzero(short[:-1] & code[1:]) + 1
            tok = np.insert(tok, after + 1, tok[after - 1] + tok[after])
        if stops:
            tok = tok[~_per_token(tok, lambda t: t in stops, False)]
        if self.lemmatize and _lemmatizer() is not None:
            tok = _per_token(tok, _cached_lemma)
        if self.stem:
            tok = _per_token(tok, _cached_stem)
        return tok

    def fit(self, titles: Iterable[str] | None = None) -> TitlePreprocessor:
        return self


def _per_token(tok: np.ndarray, func: Callable[[str], Any], sep: Any = _SEP) -> np.ndarray:
    """``func`` of each token, called once per distinct token (``sep`` for separators)."""
    if len(tok) == 0:
        return np.array([], dtype=object if sep == _SEP else type(sep))
    codes, uniq = pd.factorize(tok)
    vals = [sep if u == _SEP else func(u) for u in uniq]
    out = np.empty(len(vals), dtype=object) if sep == _SEP else np.array(vals)
    if sep == _SEP:
        out[:] = vals
    return out[codes]


def _join_units(toks: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        if i + 1 < len(toks) and _NUMBER.match(t) and _UNIT.match(toks[i + 1]):
            out.append(t + toks[i + 1])
            i += 2
        else:
            out.append(t)
            i += 1
    return out


@functools.lru_cache(maxsize=200_000)
def _cached_stem(token: str) -> str:
    if not token.isalpha():
        return token
    return str(_stemmer().stem(token))


@functools.lru_cache(maxsize=200_000)
def _cached_lemma(token: str) -> str:
    lem = _lemmatizer()
    return str(lem.lemmatize(token)) if lem is not None else token
