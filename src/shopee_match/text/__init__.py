"""Title embedders: preprocessing, TF-IDF, and BERT (lazily imported)."""

from .preprocess import TitlePreprocessor, decode_escapes, english_stop_words
from .tfidf import TfidfEmbedder

__all__ = ["TfidfEmbedder", "TitlePreprocessor", "decode_escapes", "english_stop_words"]
