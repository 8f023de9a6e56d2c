"""Title embedders: preprocessing, TF-IDF, and BERT (lazily imported)."""

from ._counts import count_matrix
from .preprocess import TitlePreprocessor, decode_escapes, english_stop_words
from .tfidf import TfidfEmbedder

__all__ = ["TfidfEmbedder", "TitlePreprocessor", "count_matrix", "decode_escapes",
           "english_stop_words"]
