"""The TF-IDF weighting, defined once: batch (:class:`~shopee_match.TfidfEmbedder`), the
index's open vocabulary and the Dask counting pass all weigh with these functions.

It is scikit-learn's ``TfidfVectorizer`` weighting, computed the way it computes it (in
the count matrix's ``float32``), so vectors built here from counts equal its own, bit
for bit:

- :func:`smooth_idf`: ``idf = ln((1 + n) / (1 + df)) + 1``;
- :func:`tfidf_block`: ``tf`` (``1 + ln(count)`` when sublinear) times idf, each row
  L2-normalised;
- :func:`join_blocks`: the word and character blocks, each L2-normalised and weighted
  by its share of the cosine, side by side, the rows normalised again.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from .._validation import l2_normalize

__all__ = ["block_weights", "df_from_idf", "document_frequency", "join_blocks", "smooth_idf",
           "tfidf_block"]


def document_frequency(counts: sp.spmatrix) -> np.ndarray:
    """Documents (rows) each column occurs in.

    >>> document_frequency(sp.csr_matrix(np.array([[2, 0], [1, 1]], dtype=np.float32))).tolist()
    [2, 1]
    """
    x = sp.csr_matrix(counts)
    return np.bincount(x.indices, minlength=x.shape[1]).astype(np.int64)


def smooth_idf(df: np.ndarray, n_docs: int) -> np.ndarray:
    """Smoothed idf, ``ln((1 + n_docs) / (1 + df)) + 1``, in ``float32`` (as
    ``TfidfTransformer.fit`` computes it from ``float32`` counts).

    >>> smooth_idf(np.array([1, 3]), 3).astype(float).round(4).tolist()
    [1.6931, 1.0]
    """
    d = np.asarray(df).astype(np.float32) + np.float32(1.0)
    idf = np.full_like(d, fill_value=int(n_docs) + 1, dtype=np.float32)
    idf /= d
    np.log(idf, out=idf)
    idf += 1.0
    return idf


def df_from_idf(idf: np.ndarray, n_docs: int) -> np.ndarray:
    """The document frequencies :func:`smooth_idf` made ``idf`` from (its inverse).

    >>> df_from_idf(smooth_idf(np.array([1, 7, 250]), 1000), 1000).tolist()
    [1, 7, 250]
    """
    idf = np.asarray(idf, dtype=np.float64)
    return np.rint((1.0 + n_docs) / np.exp(idf - 1.0) - 1.0).astype(np.int64)


def tfidf_block(counts: sp.spmatrix, idf: np.ndarray, sublinear_tf: bool,
                copy: bool = True) -> sp.csr_matrix:
    """TF-IDF rows from a count matrix, each L2-normalised (``TfidfTransformer.transform``);
    ``copy=False`` weighs a ``float32`` CSR ``counts`` in place (one matrix in memory).

    >>> c = sp.csr_matrix(np.array([[1, 0], [1, 1]], dtype=np.float32))
    >>> tfidf_block(c, smooth_idf(np.array([2, 1]), 2), False).toarray().astype(float).round(3).tolist()
    [[1.0, 0.0], [0.58, 0.815]]
    """
    from sklearn.preprocessing import normalize

    x = sp.csr_matrix(counts, dtype=np.float32, copy=copy)
    if sublinear_tf:
        np.log(x.data, x.data)
        x.data += 1.0
    x.data *= np.asarray(idf)[x.indices]
    return sp.csr_matrix(normalize(x, norm="l2", copy=False))


def block_weights(kinds: Sequence[str], word_weight: float) -> list[float]:
    """Each block's share of the cosine (squared-norm terms): ``word_weight`` for the
    word block, ``1 - word_weight`` for the character one, 1 for a lone block.

    >>> block_weights(["word", "char"], 0.3), block_weights(["char"], 0.3)
    ([0.3, 0.7], [1.0])
    """
    if len(kinds) == 1:
        return [1.0]
    return [float(word_weight) if k == "word" else 1.0 - float(word_weight) for k in kinds]


def join_blocks(blocks: Sequence[sp.csr_matrix | None], weights: Sequence[float],
                shared_columns: bool = False, copy: bool = True) -> sp.csr_matrix:
    """One L2-normalised row per posting from the weighted blocks (blocks of weight 0
    left out): side by side, or summed where ``shared_columns`` (blocks already placed
    in one column space, as the index's open vocabulary places them). ``copy=False``
    normalises and weighs ``float32`` CSR blocks in place: the blocks and the joined
    matrix are then the only copies in memory (the same values).

    >>> a = sp.csr_matrix(np.array([[1.0]], dtype=np.float32))
    >>> join_blocks([a, a], [0.5, 0.5]).toarray().astype(float).round(4).tolist()
    [[0.7071, 0.7071]]
    """
    if copy:
        parts = [l2_normalize(x) * np.float32(np.sqrt(w))
                 for x, w in zip(blocks, weights) if w != 0]
    else:
        parts = [_scaled_in_place(x, np.float32(np.sqrt(w)))
                 for x, w in zip(blocks, weights) if w != 0]
    if shared_columns:
        out = parts[0]
        for p in parts[1:]:
            out = out + p
        return sp.csr_matrix(l2_normalize(sp.csr_matrix(out)), dtype=np.float32)
    if copy:
        return sp.csr_matrix(l2_normalize(sp.hstack(parts, format="csr")))
    from sklearn.preprocessing import normalize

    joined = sp.hstack(parts, format="csr")
    del parts
    return sp.csr_matrix(normalize(joined, norm="l2", copy=False), dtype=np.float32)


def _scaled_in_place(x: sp.csr_matrix, w: np.float32) -> sp.csr_matrix:
    """``l2_normalize(x) * w`` written over ``x``'s own data (``x``: float32 CSR)."""
    from sklearn.preprocessing import normalize

    if not (sp.isspmatrix_csr(x) and x.dtype == np.float32):
        return l2_normalize(x) * w
    x = normalize(x, norm="l2", copy=False)
    x.data *= w
    return x
