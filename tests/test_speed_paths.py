"""The batch and vectorised hot paths give what the plain per-title / per-pair code gives.

Issue 12 replaced Python loops over titles and pairs (preprocessing, TF-IDF counting,
title and pair features, phash pairs, repeated k-NN searches) with batch versions; the
saved models depend on these values, so each is checked against the straightforward
computation, bit for bit where the old code was deterministic.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

from shopee_match import HashMatcher, NeighborMatcher, TfidfEmbedder
from shopee_match._validation import l2_normalize
from shopee_match.datasets import make_catalog
from shopee_match.neighbors.blend import BlendMatcher
from shopee_match.neighbors.hamming import _all_pairs, _popcount
from shopee_match.neighbors.matcher import shared_searches
from shopee_match.rerank._graph_context import _SharedNeighbours
from shopee_match.rerank.pair_features import candidate_pairs
from shopee_match.rerank.title_features import _PREP, title_doc_freq, title_features
from shopee_match.text._counts import count_matrix
from shopee_match.text.codes import split_kinds
from shopee_match.text.preprocess import TitlePreprocessor

TRICKY = [
    "Panasonic KX-TS108W phone", "panasonic kx ts108w", "Nescafe \\xc3\\x89clair 4,5 m",
    "", "ΣΑΣ Σ σ", "İstanbul café 1.0l 7.0 v", "64 GB x 2 kg", "a\\x0ab 5 kg",
    "new\nline title 12 cm", "  spaced   out  ", "wi-fi 5.5 inch 64-gb", "The Running Shoes!!",
]


def _titles() -> list[str]:
    return make_catalog(n_groups=40, images=False, seed=3).titles + TRICKY


@pytest.mark.parametrize("prep", [
    TitlePreprocessor(), TitlePreprocessor(stop_words=None, stem=False),
    TitlePreprocessor(decode=False, stem=False, join_units=False),
    TitlePreprocessor(lowercase=False, join_codes=False, stop_words=["new", "x"]),
])
def test_batch_preprocessing_equals_per_title(prep: TitlePreprocessor) -> None:
    titles = _titles()
    assert prep.transform(titles) == [prep.transform_one(t) for t in titles]
    for part in (titles[-3:], TRICKY[7:9], TRICKY[3:4], []):  # separator inside a title
        assert prep.transform(part) == [prep.transform_one(t) for t in part]
    tok, doc = prep.token_table(titles)
    per = [prep.tokens(t) for t in titles]
    assert tok.tolist() == [t for p in per for t in p]
    assert doc.tolist() == [i for i, p in enumerate(per) for _ in p]


@pytest.mark.parametrize("vec", [
    TfidfVectorizer(analyzer="word", token_pattern=r"\S+", ngram_range=(1, 2), lowercase=False,
                    dtype=np.float32),
    TfidfVectorizer(analyzer="word", token_pattern=r"\S+", ngram_range=(2, 3), lowercase=False),
    TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), lowercase=False, dtype=np.float32),
    TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 5), lowercase=False),
])
def test_fast_counts_equal_scikit_learn(vec: TfidfVectorizer) -> None:
    docs = [*TitlePreprocessor().transform(_titles()), "", "x", "ab ab ab"]
    ref = clone(vec).fit(docs)
    x_ref = CountVectorizer.transform(ref, docs)
    out = count_matrix(vec, docs)
    assert out is not None
    x, vocab = out
    assert vocab == ref.vocabulary_
    for a in ("data", "indices", "indptr"):
        assert np.array_equal(getattr(x, a), getattr(x_ref, a))
    assert x.dtype == x_ref.dtype and x.shape == x_ref.shape
    other = ["zz unseen words", docs[0], ""]  # a fixed vocabulary drops unseen terms
    x2, _ = count_matrix(vec, other, ref.vocabulary_)  # type: ignore[misc]
    assert (x2 != CountVectorizer.transform(ref, other)).nnz == 0


def test_fast_counts_decline_other_settings() -> None:
    assert count_matrix(TfidfVectorizer(lowercase=True), ["a b"]) is None
    assert count_matrix(TfidfVectorizer(analyzer="char", lowercase=False), ["a b"]) is None
    vec = TfidfVectorizer(token_pattern=r"\S+", lowercase=False)
    assert count_matrix(vec, ["a\nb", "c"]) is None  # the separator inside a document


def test_tfidf_vectors_equal_scikit_learn_fit_then_transform() -> None:
    p = make_catalog(n_groups=30, images=False, seed=1)
    emb = TfidfEmbedder(fit_on="predict").fit(p)
    x = emb.embed(p)
    docs = TitlePreprocessor().transform(p.titles)
    blocks = []
    for _, vec in emb.make_vectorizers():
        blocks.append(l2_normalize(vec.fit(docs).transform(docs)) * np.float32(np.sqrt(0.5)))
    ref = sp.csr_matrix(l2_normalize(sp.hstack(blocks, format="csr")))
    for a in ("data", "indices", "indptr"):
        assert np.array_equal(getattr(x, a), getattr(ref, a))
    # a vocabulary learnt by the fast counter transforms as scikit-learn's own would
    fitted = TfidfEmbedder().fit(p)
    for _, vec in fitted.vectorizers_:
        assert (fitted._tfidf(vec, docs) != vec.transform(docs)).nnz == 0


@pytest.mark.parametrize("radius", [0, 1, 3, 10])
def test_hash_pairs_equal_every_pair_compared(radius: int) -> None:
    rng = np.random.default_rng(radius)
    base = rng.integers(0, 2**63, size=40, dtype=np.uint64)
    flips = np.uint64(1) << rng.integers(0, 64, size=(400, 3)).astype(np.uint64)
    codes = base[rng.integers(0, 40, 400)] ^ flips[:, 0] ^ (flips[:, 1] * (rng.random(400) < .5))
    bits = ((codes[:, None] >> np.arange(63, -1, -1, dtype=np.uint64)) & np.uint64(1)).astype(bool)
    emb = np.where(bits, 1.0, -1.0).astype(np.float32)
    g = HashMatcher(max_distance=radius).candidates(emb)
    d = _popcount(codes[:, None] ^ codes[None, :])
    want = (d <= radius) & ~np.eye(len(codes), dtype=bool)
    assert np.array_equal(g.toarray() != 0, want)
    assert np.allclose(g.toarray()[want], (1 - 2 * d / 64)[want])
    uniq = np.unique(codes)
    i, j, dd = _all_pairs(uniq, radius)
    du = _popcount(uniq[:, None] ^ uniq[None, :])
    assert sorted(zip(i.tolist(), j.tolist())) == sorted(zip(*np.nonzero(np.triu(du <= radius, 1))))
    assert np.array_equal(dd, du[i, j])


def test_shared_searches_answer_repeats_from_the_first() -> None:
    emb = TfidfEmbedder().fit_embed(make_catalog(n_groups=30, images=False, seed=2))
    plain = NeighborMatcher(k=8).candidates(emb)
    blended = BlendMatcher(k=8, n_blend=3).candidates(emb)
    with shared_searches():
        a = NeighborMatcher(k=8).candidates(emb)
        idx, _ = NeighborMatcher(k=8).neighbors(emb)
        idx[:] = 0  # callers get copies: the shared result stays intact
        b = BlendMatcher(k=8, n_blend=3).candidates(emb)
        c = NeighborMatcher(k=5).candidates(emb)  # another k: its own search
    assert (a != plain).nnz == 0 and (b != blended).nnz == 0
    assert (c != NeighborMatcher(k=5).candidates(emb)).nnz == 0


@pytest.mark.parametrize("stored_zero", [False, True])
def test_shared_neighbours_equal_row_products(stored_zero: bool) -> None:
    g = sp.random(300, 300, density=0.04, format="csr", random_state=0, dtype=np.float64)
    g = sp.csr_matrix(g + g.T)
    g.setdiag(0)
    g.eliminate_zeros()
    if stored_zero:
        g.data[::7] = 0.0
    r, c = candidate_pairs({"g": g})
    shared, sim2 = _SharedNeighbours(g, chunk=1000)(r, c)
    b = g.copy()
    b.data[:] = 1.0
    want2 = np.asarray(g[r].multiply(g[c]).sum(axis=1)).ravel()
    deg = np.diff(g.indptr)
    with np.errstate(invalid="ignore", divide="ignore"):
        want = np.asarray(b[r].multiply(b[c]).sum(axis=1)).ravel() / np.minimum(deg[r], deg[c])
    assert np.array_equal(sim2, want2)
    assert np.array_equal(shared, want, equal_nan=True)


def test_title_features_equal_per_title_sets() -> None:
    titles = _titles()
    n = len(titles)
    rng = np.random.default_rng(0)
    rows, cols = rng.integers(0, n, 500), rng.integers(0, n, 500)
    f = title_features(titles, rows, cols)
    sets = [set(_PREP.tokens(t)) for t in titles]
    kinds = [split_kinds(s) for s in sets]
    df = title_doc_freq(titles)
    assert df == {t: sum(t in s for s in sets) for t in set().union(*sets)}
    # the library's idf is computed from float32 counts: compared to 1e-6
    idf = {t: (np.log((n + 1) / (d + 1)) + 1) / (np.log(n + 1) + 1) for t, d in df.items()}
    for p, (i, j) in enumerate(zip(rows, cols)):
        a, b = sets[i], sets[j]
        union = len(a | b)
        assert f["word_jaccard"][p] == pytest.approx(len(a & b) / union if union else np.nan,
                                                    nan_ok=True)
        wa, wb, ws = (sum(idf[t] for t in s) for s in (a, b, a & b))
        if wa + wb - ws > 0:
            assert f["idf_jaccard"][p] == pytest.approx(ws / (wa + wb - ws), rel=1e-6)
        assert f["idf_diff_max"][p] == pytest.approx(max((idf[t] for t in a ^ b), default=0.0),
                                                     rel=1e-6)
        for k, name in enumerate(("code", "qty", "num")):
            assert f[f"{name}_shared"][p] == len(kinds[i][k] & kinds[j][k])


def test_threshold_sweep_equals_scoring_each_setting() -> None:
    from shopee_match import Pipeline
    from shopee_match.ensemble import Ensemble
    from shopee_match.tuning import collect_folds, tune_thresholds

    data = make_catalog(n_groups=60, images=False, seed=4)
    steps = Pipeline.default(phash=False).validated_steps()
    folds = collect_folds(steps, data, 3, random_state=0)
    union = Ensemble()
    fast = tune_thresholds(steps, folds, union.combine)
    slow = tune_thresholds(steps, folds, lambda g: union.combine(g))  # not the sweep's case
    assert fast == slow
    fixed = tune_thresholds(steps, folds, union.combine, fixed=["tfidf_qe"])
    assert fixed == tune_thresholds(steps, folds, lambda g: union.combine(g), fixed=["tfidf_qe"])
