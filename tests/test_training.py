"""ArcFace training of a small real Keras embedding model: learning, seeding, cutting, inputs."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from shopee_match.datasets import make_catalog  # noqa: E402
from shopee_match.metrics import f1_score  # noqa: E402
from shopee_match.neighbors import NeighborMatcher  # noqa: E402
from shopee_match.training import ArcFaceTrainer, train_arcface  # noqa: E402


def clusters(n_groups, per_group, seed):
    """Points around random centres in 32-d, seen through a fixed random distortion that
    hides the groups from cosine similarity until a model learns to undo it."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_groups, 8))
    labels = np.repeat(np.arange(n_groups), per_group)
    z = centres[labels] + 0.35 * rng.normal(size=(len(labels), 8))
    mix = np.random.default_rng(99).normal(size=(8, 32))
    x = np.tanh(z @ mix) + 3.0 * np.random.default_rng(98).normal(size=32)  # big shared offset
    return x.astype(np.float32), labels


THRESHOLDS = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95)


def mlp(seed=0, name="embedding"):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((32,), name="x")
    h = keras.layers.Dense(64, activation="relu", name="hidden")(inp)
    return keras.Model(inp, keras.layers.Dense(16, name="proj")(h), name=name)


def match_f1(model, x, labels, threshold):
    emb = model.predict(x, verbose=0)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    pred = NeighborMatcher(threshold=threshold, k=20).match(emb)
    true = [np.flatnonzero(labels == g) for g in labels]
    return f1_score(true, pred)


def test_training_improves_matching_of_unseen_groups():
    x_tr, y_tr = clusters(30, 6, seed=0)
    x_te, y_te = clusters(15, 4, seed=1)  # new centres: groups never seen in training
    model = mlp()
    before = max(match_f1(model, x_te, y_te, t) for t in THRESHOLDS)
    trainer = ArcFaceTrainer(model, n_classes=30, s=16.0, m=0.3, learning_rate=3e-3, seed=0)
    trainer.fit(x_tr, y_tr, epochs=25, batch_size=32)
    loss = trainer.history_["loss"]
    assert loss[-1] < 0.5 * loss[0]
    after = max(match_f1(trainer.embedding_model_, x_te, y_te, t) for t in THRESHOLDS)
    assert after > before + 0.08, (before, after)


def test_embedding_model_is_cut_by_name_not_position():
    model = mlp(name="my_embedder")
    trainer = ArcFaceTrainer(model, n_classes=4, seed=0)
    x, y = clusters(4, 5, seed=0)
    trainer.fit(x, y, epochs=1, batch_size=8)
    assert trainer.model_.get_layer("arc_margin").n_classes == 4
    cut = trainer.embedding_model_
    assert cut is model and cut.name == "my_embedder"
    assert cut.output_shape == (None, 16)


def test_seeded_runs_are_identical_and_seeds_matter():
    x, y = clusters(6, 5, seed=2)
    runs = []
    for seed in (7, 7, 8):
        m = train_arcface(mlp(seed=0), x, y, epochs=3, batch_size=8, seed=seed)
        runs.append(m.predict(x, verbose=0))
    np.testing.assert_allclose(runs[0], runs[1], rtol=1e-5, atol=1e-6)
    assert not np.allclose(runs[0], runs[2])


def test_postings_labels_dataset_input_and_dict_inputs():
    p = make_catalog(n_groups=5, images=False, seed=0)
    x = np.random.default_rng(0).normal(size=(len(p), 32)).astype(np.float32)
    out = train_arcface(mlp(), x, p, epochs=1, batch_size=8)  # labels from label_group
    assert out.predict(x[:2], verbose=0).shape == (2, 16)

    ds = tf.data.Dataset.from_tensor_slices((x, p.groups().astype("int32")))
    out = train_arcface(mlp(), ds, n_classes=5, epochs=1, batch_size=8)
    assert out.output_shape == (None, 16)

    a = keras.Input((3,), name="a")
    b = keras.Input((2,), name="b")
    merged = keras.layers.Concatenate()([a, b])
    two = keras.Model({"a": a, "b": b}, keras.layers.Dense(4)(merged), name="two_inputs")
    data = {"a": x[:, :3], "b": x[:, 3:5]}
    trainer = ArcFaceTrainer(two, n_classes=5, seed=0).fit(data, p, epochs=2, batch_size=8)
    assert len(trainer.history_["loss"]) == 2


def test_verbose_shows_progress(capsys):
    x, y = clusters(3, 4, seed=0)
    ArcFaceTrainer(mlp(), n_classes=3).fit(x, y, epochs=1, verbose=True)
    assert "loss" in capsys.readouterr().out
    ArcFaceTrainer(mlp(), n_classes=3).fit(x, y, epochs=1, verbose=False)
    assert capsys.readouterr().out == ""


def test_bad_inputs_raise():
    x, y = clusters(3, 4, seed=0)
    with pytest.raises(ValueError, match="labels"):
        ArcFaceTrainer(mlp(), n_classes=3).fit(x, y[:-1], epochs=1)
    with pytest.raises(ValueError, match="epochs"):
        ArcFaceTrainer(mlp(), n_classes=3).fit(x, y, epochs=0)
    with pytest.raises(ValueError, match="n_classes"):
        ArcFaceTrainer(mlp(), n_classes=2).fit(x, y, epochs=1)
    with pytest.raises(ValueError, match="required"):
        ArcFaceTrainer(mlp(), n_classes=3).fit(x, None, epochs=1)
    with pytest.raises(ValueError, match="before"):
        _ = ArcFaceTrainer(mlp(), n_classes=3).embedding_model_
