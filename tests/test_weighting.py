"""One TF-IDF weighting (``shopee_match.text.weighting``) for batch, index and Dask: it is
scikit-learn's, and the three runtimes give the same vectors with it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfTransformer

from shopee_match import Pipeline, Postings, TfidfEmbedder, make_catalog
from shopee_match.index._vocab import OpenVocabulary
from shopee_match.text.weighting import document_frequency, smooth_idf, tfidf_block


@pytest.mark.parametrize("sublinear", [True, False])
def test_the_weighting_is_scikit_learns_bit_for_bit(sublinear):
    rng = np.random.default_rng(0)
    dense = rng.poisson(0.3, size=(60, 40)).astype(np.float32)
    dense[5] = 0  # an empty row stays empty
    counts = sp.csr_matrix(dense)
    ref = TfidfTransformer(sublinear_tf=sublinear).fit(counts)
    idf = smooth_idf(document_frequency(counts), counts.shape[0])
    assert idf.dtype == ref.idf_.dtype and np.array_equal(idf, ref.idf_)
    got = tfidf_block(counts, idf, sublinear)
    want = sp.csr_matrix(ref.transform(counts))
    assert got.dtype == want.dtype and (got != want).nnz == 0


def _by_term(x: sp.csr_matrix, names: list[tuple[int, str]]) -> list[dict[tuple[int, str], float]]:
    out = []
    for r in range(x.shape[0]):
        lo, hi = x.indptr[r], x.indptr[r + 1]
        out.append({names[c]: float(v) for c, v in zip(x.indices[lo:hi], x.data[lo:hi])})
    return out


def _batch_names(emb: TfidfEmbedder) -> list[tuple[int, str]]:
    names: list[tuple[int, str]] = []
    for b, (_, vec) in enumerate(emb.vectorizers_):
        names += [(b, t) for t in sorted(vec.vocabulary_, key=vec.vocabulary_.__getitem__)]
    return names


def test_index_and_dask_weigh_as_batch():
    from shopee_match.distributed._tfidf import count_terms, fit_predict_tfidf, merge_counts

    cat = make_catalog(n_groups=40, images=False, seed=30)
    new = make_catalog(n_groups=10, images=False, seed=31)  # other products: unseen terms
    new = Postings(new.df.assign(posting_id="n" + new.df.posting_id))
    both = Postings(pd.concat([cat.df, new.df], ignore_index=True))
    batch = TfidfEmbedder().fit(both)
    want = _by_term(batch.embed(new), _batch_names(batch))

    # the index: a catalogue's vocabulary opened to the new postings' terms and counts
    opened = OpenVocabulary.from_fitted(TfidfEmbedder().fit(cat), len(cat))
    x, terms, _ = opened.embed_with_terms(new)
    names = _batch_names(opened.emb) + [(int(b), t) for b, t in terms]
    got = _by_term(x, names)
    assert [set(r) for r in got] == [set(r) for r in want]
    for g, w in zip(got, want):
        assert [g[k] for k in w] == pytest.approx([w[k] for k in w], rel=1e-6, abs=1e-7)

    # Dask: counted per partition, weighted once: the very same vectors
    pipe = Pipeline([("tfidf", TfidfEmbedder(fit_on="predict"), None)], tune=False)
    frames = np.array_split(np.arange(len(both)), 3)
    counts = [count_terms(both.df.iloc[f], pipe, titles=False) for f in frames]
    merged = counts[0]
    for c in counts[1:]:
        merged = merge_counts(merged, c)
    fitted = fit_predict_tfidf(pipe, merged).steps[0][1]
    assert (fitted.embed(new) != batch.embed(new)).nnz == 0
    for (_, a), (_, b) in zip(fitted.vectorizers_, batch.vectorizers_):
        assert np.array_equal(a.idf_, b.idf_)
