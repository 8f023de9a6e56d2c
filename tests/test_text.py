"""Title preprocessing and TF-IDF vectors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shopee_match import Postings, TfidfEmbedder, TitlePreprocessor
from shopee_match.text.preprocess import decode_escapes, english_stop_words


def _postings(titles: list[str]) -> Postings:
    return Postings(pd.DataFrame({"posting_id": [f"p{i}" for i in range(len(titles))],
                                  "title": titles}))


# --- preprocessing ------------------------------------------------------------------
def test_preprocessing_changes_titles_and_keeps_content() -> None:
    titles = ["The Running Shoes, 42 cm (NEW!)", "NESCAFE Latte 220 ML", "Double Tape 4,5 m"]
    out = TitlePreprocessor().transform(titles)
    assert out != titles  # the seed's version returned its input unchanged
    assert all(o.strip() for o in out)  # ... and an earlier one emptied them
    assert out[0] == "run shoe 42cm new"
    assert out[1] == "nescaf latt 220ml"
    assert "4.5m" in out[2].split()


def test_decode_escapes() -> None:
    assert decode_escapes(r"Nescafe \xc3\x89clair") == "Nescafe Éclair"
    assert decode_escapes("no escapes") == "no escapes"
    # a broken sequence is dropped, not turned into mojibake
    assert decode_escapes(r"bad \xc3 byte") == "bad  byte"
    assert TitlePreprocessor(stem=False).transform_one(r"Nescafe \xc3\x89clair") == "nescafe eclair"


def test_stop_words_work_without_nltk_corpora() -> None:
    words = english_stop_words()
    assert {"the", "and", "of"} <= words
    toks = TitlePreprocessor(stem=False).tokens("the mug of the year and more")
    assert toks == ["mug", "year"]
    assert TitlePreprocessor(stop_words=None, stem=False).tokens("The Mug") == ["the", "mug"]
    assert TitlePreprocessor(stop_words=["mug"], stem=False).tokens("The Mug") == ["the"]


def test_units_and_model_numbers_stay_whole() -> None:
    pre = TitlePreprocessor(stem=False)
    assert pre.tokens("Susu 397 gr KX-500") == ["susu", "397gr", "kx500", "kx", "500"]
    assert pre.tokens("Susu 397gr") == ["susu", "397gr"]
    assert TitlePreprocessor(join_units=False, stem=False).tokens("397 gr") == ["397", "gr"]


def test_bad_stop_words_message() -> None:
    with pytest.raises(ValueError, match="stop_words"):
        TitlePreprocessor(stop_words="french").transform_one("x")


# --- TF-IDF ---------------------------------------------------------------------------
def test_tfidf_rows_are_l2_normalised(titles_catalog: Postings) -> None:
    emb = TfidfEmbedder().fit(titles_catalog).embed(titles_catalog)
    assert emb.format == "csr" and emb.dtype == np.float32
    norms = np.sqrt(np.asarray(emb.multiply(emb).sum(axis=1)).ravel())
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)


def test_tfidf_empty_title_gives_zero_row() -> None:
    train = _postings(["red mug 300ml", "blue mug", "green tea"])
    with pytest.warns(UserWarning, match="empty title"):
        test = _postings(["red mug", " "])
    emb = TfidfEmbedder().fit(train).embed(test)
    assert emb[1].nnz == 0


def test_tfidf_same_product_closer_than_other(titles_catalog: Postings) -> None:
    emb = TfidfEmbedder().fit_embed(titles_catalog)
    g = titles_catalog.groups()
    sims = (emb @ emb.T).toarray()
    same = (g[:, None] == g[None, :]) & ~np.eye(len(g), dtype=bool)
    assert sims[same].mean() > sims[~same].mean() + 0.3


def test_tfidf_save_load_identical(titles_catalog: Postings, tmp_path) -> None:
    emb = TfidfEmbedder(word_weight=0.4).fit(titles_catalog)
    emb.save_state(tmp_path)
    other = TfidfEmbedder(word_weight=0.4)
    other.load_state(tmp_path)
    a, b = emb.embed(titles_catalog), other.embed(titles_catalog)
    assert (a != b).nnz == 0


def test_tfidf_fit_on_predict_relearns_vocabulary(titles_catalog: Postings) -> None:
    half = titles_catalog.subset(np.arange(len(titles_catalog) // 2))
    other = titles_catalog.subset(np.arange(len(titles_catalog) // 2, len(titles_catalog)))
    a = TfidfEmbedder(fit_on="predict").fit(half).embed(other)
    b = TfidfEmbedder().fit(other).embed(other)
    assert (a != b).nnz == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"word_weight": 1.5}, "word_weight"), ({"word_ngram_range": None, "char_ngram_range": None},
                                             "word_ngram_range"),
     ({"char_ngram_range": (3, 2)}, "char_ngram_range"), ({"fit_on": "test"}, "fit_on")],
)
def test_tfidf_bad_params(titles_catalog: Postings, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TfidfEmbedder(**kwargs).fit(titles_catalog)


def test_fit_on_predict_with_no_usable_titles_warns_and_gives_zero_rows() -> None:
    p = Postings(pd.DataFrame({"posting_id": ["a", "b"], "title": ["!!!", "the"]}))
    emb = TfidfEmbedder(fit_on="predict").fit(p)
    with pytest.warns(UserWarning, match="Every row is zero"):
        x = emb.embed(p)
    assert x.shape[0] == 2 and x.nnz == 0


def test_model_codes_are_one_token_however_written():
    from shopee_match.text.preprocess import TitlePreprocessor

    prep = TitlePreprocessor()
    a = set(prep.tokens("Panasonic KX-TS108W Corded Phone"))
    b = set(prep.tokens("Panasonic Integrated Telephone System - KXTS108W"))
    c = set(prep.tokens("panasonic kx ts108w"))
    d = set(prep.tokens("Panasonic KXTS600W"))
    assert "kxts108w" in a & b & c
    assert "kxts108w" not in d
    assert "strde197" in set(prep.tokens("Sony STR-DE197")) & set(prep.tokens("sony strde197"))
    # a size with its unit is one token whatever the spacing
    for s in ("64 GB", "64GB", "64-gb"):
        assert "64gb" in prep.tokens(f"Samsung {s}")
    # decimals and hyphenated words are not codes
    assert "5.5" in prep.tokens("screen 5.5 inch")
    assert "wifi" not in prep.tokens("wi-fi adapter")
    assert TitlePreprocessor(join_codes=False).tokens("KX-TS108W") == ["kx", "ts108w"]


def test_zero_decimals_read_as_whole_numbers():
    from shopee_match.text.preprocess import TitlePreprocessor

    prep = TitlePreprocessor(stem=False)
    assert "7" in prep.tokens("Adobe Acrobat 7.0 Professional")
    assert "1l" in prep.tokens("Water 1.0 L") and "10.05" in prep.tokens("v 10.05")
