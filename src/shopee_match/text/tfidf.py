"""TF-IDF title vectors: word and character n-grams, sparse L2-normalised rows."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

from .._registry import register
from .._validation import check_is_fitted, check_scalar
from ..embedder import BaseEmbedder
from ._counts import count_matrix
from .preprocess import TitlePreprocessor
from .weighting import block_weights, document_frequency, join_blocks, smooth_idf, tfidf_block

if TYPE_CHECKING:
    from ..data import Postings

__all__ = ["TfidfEmbedder"]


@register()
class TfidfEmbedder(BaseEmbedder):
    """Sparse TF-IDF title vectors from word and character n-grams.

    Word and character blocks are each L2-normalised, weighted by ``word_weight`` and
    ``1 - word_weight`` (in squared-norm terms), stacked and normalised again, so the
    cosine of two rows is the weighted mean of the word and character cosines.

    Parameters
    ----------
    word_ngram_range, char_ngram_range : n-gram ranges; ``None`` drops that block.
    word_weight : share of the word block in the cosine, in [0, 1].
    sublinear_tf : use 1 + log(tf).
    min_df, max_features : vocabulary pruning, as in scikit-learn.
    preprocessor : a :class:`TitlePreprocessor` (default: the standard one).
    fit_on : ``"train"`` learns the vocabulary in :meth:`fit`; ``"predict"`` relearns it on
        the postings being embedded (as the competition notebooks did on the test set).

    >>> from shopee_match.datasets import make_catalog
    >>> p = make_catalog(n_groups=5, seed=0, images=False)
    >>> emb = TfidfEmbedder().fit(p).embed(p)
    >>> emb.shape[0] == len(p), round(float(emb[0].multiply(emb[0]).sum()), 4)
    (True, 1.0)
    """

    name = "tfidf"
    sparse_output = True

    def __init__(
        self,
        word_ngram_range: tuple[int, int] | None = (1, 2),
        char_ngram_range: tuple[int, int] | None = (2, 4),
        word_weight: float = 0.5,
        sublinear_tf: bool = True,
        min_df: int = 1,
        max_features: int | None = None,
        preprocessor: TitlePreprocessor | None = None,
        fit_on: str = "train",
    ) -> None:
        self.word_ngram_range = word_ngram_range
        self.char_ngram_range = char_ngram_range
        self.word_weight = word_weight
        self.sublinear_tf = sublinear_tf
        self.min_df = min_df
        self.max_features = max_features
        self.preprocessor = preprocessor
        self.fit_on = fit_on

    # --- fitting ------------------------------------------------------------------
    def validate(self) -> TfidfEmbedder:
        """Check the parameters (a ValueError names a bad one); returns ``self``."""
        check_scalar(self.word_weight, "word_weight", (int, float), min_val=0.0, max_val=1.0)
        check_scalar(self.min_df, "min_df", int, min_val=1)
        if self.word_ngram_range is None and self.char_ngram_range is None:
            raise ValueError("TfidfEmbedder needs `word_ngram_range` or `char_ngram_range`.")
        for nm in ("word_ngram_range", "char_ngram_range"):
            r = getattr(self, nm)
            if r is not None and (len(r) != 2 or not 1 <= r[0] <= r[1]):
                raise ValueError(f"`{nm}` must be (min_n, max_n) with 1 <= min_n <= max_n, got {r!r}.")
        if self.fit_on not in ("train", "predict"):
            raise ValueError(f"`fit_on` must be 'train' or 'predict', got {self.fit_on!r}.")
        return self

    def _prep(self) -> TitlePreprocessor:
        return self.preprocessor if self.preprocessor is not None else TitlePreprocessor()

    def make_vectorizers(self) -> list[tuple[str, TfidfVectorizer]]:
        """Unfitted scikit-learn vectorizers, one per block (``word``, ``char``), with this
        embedder's analysers; :meth:`fit` fits them."""
        common: dict[str, Any] = {
            "sublinear_tf": self.sublinear_tf,
            "min_df": self.min_df,
            "max_features": self.max_features,
            "dtype": np.float32,
            "lowercase": False,
        }
        out = []
        if self.word_ngram_range is not None:
            out.append(
                ("word", TfidfVectorizer(analyzer="word", token_pattern=r"\S+",
                                         ngram_range=tuple(self.word_ngram_range), **common))
            )
        if self.char_ngram_range is not None:
            out.append(
                ("char", TfidfVectorizer(analyzer="char_wb",
                                         ngram_range=tuple(self.char_ngram_range), **common))
            )
        return out

    def _learn(self, docs: list[str]) -> list[tuple[str, TfidfVectorizer]]:
        return [(kind, vec) for kind, vec, _ in self._learn_counts(docs)]

    def _learn_counts(self, docs: list[str]
                      ) -> list[tuple[str, TfidfVectorizer, sp.csr_matrix]]:
        """Fit each vectorizer on ``docs`` (the state ``TfidfVectorizer.fit`` leaves:
        vocabulary, idf); with each, the count matrix of ``docs``."""
        out = []
        for kind, vec in self.make_vectorizers():
            try:
                fast = (count_matrix(vec, docs) if self.min_df == 1 and self.max_features is None
                        else None)
                if fast is None:  # scikit-learn's counting, with its pruning
                    counts = CountVectorizer.fit_transform(vec, docs)
                else:
                    counts, vocabulary = fast
                    if not vocabulary:
                        raise ValueError("empty vocabulary; perhaps the documents only contain "
                                         "stop words")
                    vec.vocabulary_ = vocabulary
                vec.idf_ = smooth_idf(document_frequency(counts), counts.shape[0])
                out.append((kind, vec, sp.csr_matrix(counts)))
            except ValueError as exc:  # empty vocabulary
                raise ValueError(
                    f"TfidfEmbedder: no {kind} terms in the titles ({exc}). The titles are "
                    "empty after preprocessing; check the `title` column."
                ) from exc
        return out

    def documents(self, postings: Postings) -> list[str]:
        """The postings' titles as the vectorizers read them (preprocessed)."""
        return self._prep().transform(postings.titles)

    def counts(self, vec: TfidfVectorizer, docs: list[str]) -> sp.csr_matrix:
        """The count matrix of ``docs`` over fitted ``vec``'s vocabulary."""
        fast = count_matrix(vec, docs, vec.vocabulary_)
        return fast[0] if fast is not None else CountVectorizer.transform(vec, docs)

    def _tfidf(self, vec: TfidfVectorizer, docs: list[str],
               counts: sp.csr_matrix | None = None) -> sp.csr_matrix:
        """``vec.transform(docs)``: from ``counts`` (weighed in place: the caller's
        counts are spent), or counted here."""
        if counts is None:
            counts = self.counts(vec, docs)
        return tfidf_block(counts, vec.idf_, bool(vec.sublinear_tf), copy=False)

    def fit(self, postings: Postings) -> TfidfEmbedder:
        """Learn the vocabulary and idf weights from the postings' titles.

        With ``fit_on="predict"`` there is nothing to learn here: :meth:`embed` learns
        them on the postings it is given.
        """
        self.validate()
        if self.fit_on == "predict":
            self.vectorizers_: list[tuple[str, TfidfVectorizer]] = []
            return self
        self.vectorizers_ = self._learn(self.documents(postings))
        return self

    # --- embedding ----------------------------------------------------------------
    def embed(self, postings: Postings) -> sp.csr_matrix:
        """One L2-normalised sparse row per posting (all-zero for an empty title)."""
        check_is_fitted(self, "vectorizers_")
        docs = self.documents(postings)
        if self.fit_on == "predict":
            try:
                vecs = self._learn_counts(docs)
            except ValueError as exc:  # no usable word in any title
                warnings.warn(f"{postings.source}: {exc} Every row is zero: these postings "
                              "match only by other steps.", UserWarning, stacklevel=2)
                return sp.csr_matrix((len(docs), 1), dtype=np.float32)
        else:
            vecs = [(kind, vec, None) for kind, vec in self.vectorizers_]
        weights = block_weights([kind for kind, _, _ in vecs], self.word_weight)
        # one matrix per block in memory: each count matrix becomes its TF-IDF block in
        # place, the blocks are normalised and weighed in place, then joined
        blocks = []
        for i, w in enumerate(weights):
            _, vec, counts = vecs[i]
            vecs[i] = (vecs[i][0], vec, None)
            blocks.append(self._tfidf(vec, docs, counts) if w != 0 else None)
            del counts
        return join_blocks(blocks, weights, copy=False)

    def embed_counts(self, counts: list[sp.csr_matrix]) -> sp.csr_matrix:
        """:meth:`embed` of postings counted already: ``counts``, their count matrices
        over each fitted vectorizer's vocabulary, in :attr:`vectorizers_` order (what
        :meth:`embed` would count; e.g. kept from a distributed counting pass). The
        matrices are spent (weighed in place).

        >>> from shopee_match import make_catalog
        >>> p = make_catalog(n_groups=5, images=False, seed=0)
        >>> emb = TfidfEmbedder().fit(p)
        >>> docs = emb.documents(p)
        >>> x = emb.embed_counts([emb.counts(vec, docs) for _, vec in emb.vectorizers_])
        >>> bool((x != emb.embed(p)).nnz == 0)
        True
        """
        check_is_fitted(self, "vectorizers_")
        if len(counts) != len(self.vectorizers_):
            raise ValueError(f"`counts` holds {len(counts)} matrices; this embedder has "
                             f"{len(self.vectorizers_)} vectorizers (one matrix each).")
        weights = block_weights([kind for kind, _ in self.vectorizers_], self.word_weight)
        blocks = [tfidf_block(c, vec.idf_, bool(vec.sublinear_tf), copy=False) if w != 0
                  else None for (_, vec), c, w in zip(self.vectorizers_, counts, weights)]
        return join_blocks(blocks, weights, copy=False)

    # --- persistence (JSON + npy, no pickle) -----------------------------------------
    def save_state(self, path: Path) -> None:
        check_is_fitted(self, "vectorizers_")
        for kind, vec in self.vectorizers_:
            terms = sorted(vec.vocabulary_, key=vec.vocabulary_.__getitem__)
            (path / f"{kind}_vocabulary.json").write_text(json.dumps(terms), encoding="utf-8")
            np.save(path / f"{kind}_idf.npy", vec.idf_.astype(np.float64), allow_pickle=False)

    def load_state(self, path: Path) -> None:
        self.validate()
        if self.fit_on == "predict":  # nothing was learned at fit time
            self.vectorizers_ = []
            return
        vecs = self.make_vectorizers()
        for kind, vec in vecs:
            terms = json.loads((path / f"{kind}_vocabulary.json").read_text(encoding="utf-8"))
            idf = np.load(path / f"{kind}_idf.npy", allow_pickle=False)
            if len(terms) != len(idf):
                raise ValueError(f"{path}: {kind} vocabulary and idf lengths differ; the file is damaged.")
            vec.vocabulary_ = {str(t): i for i, t in enumerate(terms)}
            vec.idf_ = idf
        self.vectorizers_ = vecs
