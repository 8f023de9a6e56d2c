"""An open vocabulary for a ``fit_on="predict"`` TF-IDF served from an index.

Batch matching relearns the vocabulary and idf weights from every posting it matches. An
index cannot re-weight its catalogue per query, but it can embed the new postings as
batch would: terms the catalogue never saw get columns of their own (they weigh in the
new posting's norm and between new postings, as in batch, instead of being dropped), and
each term's idf counts the documents of catalogue + new postings. The catalogue's
vectors keep the weights they were indexed with. ``add`` makes the new terms and counts
part of the vocabulary.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..text.weighting import block_weights, df_from_idf, join_blocks, smooth_idf, tfidf_block

__all__ = ["OpenVocabulary", "supports_open_vocabulary"]


def supports_open_vocabulary(emb: Any) -> bool:
    """A TF-IDF with no df or size pruning (pruning would change the batch vocabulary)."""
    from ..text.tfidf import TfidfEmbedder

    return (type(emb) is TfidfEmbedder and emb.min_df == 1 and emb.max_features is None
            and bool(getattr(emb, "vectorizers_", None)))


class OpenVocabulary:
    """A fitted ``TfidfEmbedder``'s vocabulary, opened to new terms and counts.

    ``df`` holds the document frequency of every column (catalogue columns first, then
    ``extra`` terms added since, as ``(block, term)``), ``n_docs`` the documents counted.
    """

    name = "open_tfidf"

    def __init__(self, emb: Any, n_docs: int, df: np.ndarray,
                 extra: list[tuple[int, str]]) -> None:
        self.emb = emb
        self.n_docs = int(n_docs)
        self.df = np.asarray(df, np.int64)
        self.extra = list(extra)
        sizes = [len(v.vocabulary_) for _, v in emb.vectorizers_]
        self.offsets = np.r_[0, np.cumsum(sizes)].astype(np.int64)
        self.extra_at = {key: int(self.offsets[-1]) + j for j, key in enumerate(self.extra)}

    @classmethod
    def from_fitted(cls, emb: Any, n_docs: int) -> OpenVocabulary:
        """From a TF-IDF fitted on ``n_docs`` catalogue postings (df read back from idf)."""
        dfs = [df_from_idf(vec.idf_, n_docs) for _, vec in emb.vectorizers_]
        return cls(emb, n_docs, np.concatenate(dfs), [])

    @property
    def width(self) -> int:
        return len(self.df)

    def embed(self, postings: Any) -> sp.csr_matrix:
        return self.embed_with_terms(postings)[0]

    def embed_with_terms(self, postings: Any) -> tuple[sp.csr_matrix, list[tuple[int, str]],
                                                       np.ndarray]:
        """Rows as batch would weigh them, the terms new to the vocabulary (their columns
        follow :attr:`width`, in order), and each column's count among these postings."""
        emb = self.emb
        docs = emb.documents(postings)
        m = len(docs)
        fresh: dict[tuple[int, str], int] = {}
        vecs = emb.vectorizers_
        weights = block_weights([kind for kind, _ in vecs], emb.word_weight)
        cells: list[tuple[np.ndarray, np.ndarray, np.ndarray] | None] = []
        for b, (_, vec) in enumerate(vecs):
            if weights[b] == 0:
                cells.append(None)
                continue
            analyze, vocab, off = vec.build_analyzer(), vec.vocabulary_, int(self.offsets[b])
            rows: list[int] = []
            cols: list[int] = []
            vals: list[float] = []
            for i, doc in enumerate(docs):
                for term, count in Counter(analyze(doc)).items():
                    j = vocab.get(term)
                    if j is not None:
                        col = off + j
                    else:
                        col = self.extra_at.get((b, term), -1)
                        if col < 0:
                            col = self.width + fresh.setdefault((b, term), len(fresh))
                    rows.append(i)
                    cols.append(col)
                    vals.append(float(count))
            cells.append((np.asarray(rows, np.int64), np.asarray(cols, np.int64),
                          np.asarray(vals, np.float32)))
        width = self.width + len(fresh)
        df_q = np.zeros(width, np.int64)
        for cell in cells:
            if cell is not None:
                np.add.at(df_q, cell[1], 1)
        df = np.r_[self.df, np.zeros(len(fresh), np.int64)] + df_q
        idf = smooth_idf(df, self.n_docs + m)  # the one weighting batch uses
        blocks = [None if cell is None else
                  tfidf_block(sp.csr_matrix((cell[2], (cell[0], cell[1])), shape=(m, width)),
                              idf, bool(emb.sublinear_tf))
                  for cell in cells]
        new_terms = [key for key, _ in sorted(fresh.items(), key=lambda kv: kv[1])]
        return join_blocks(blocks, weights, shared_columns=True), new_terms, df_q

    def added(self, postings: Any) -> OpenVocabulary:
        """The vocabulary after ``postings`` joined the catalogue."""
        _, new_terms, df_q = self.embed_with_terms(postings)
        df = np.r_[self.df, np.zeros(len(new_terms), np.int64)] + df_q
        return OpenVocabulary(self.emb, self.n_docs + len(postings), df, self.extra + new_terms)
