"""ArcMarginProduct: logits against a NumPy reference, numerical safety, serialisation."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from shopee_match.arcface import ArcMarginProduct  # noqa: E402


def reference_logits(x, w, y, s, m, easy_margin, ls_eps):
    """The seed's ArcFace formula, in float64 NumPy."""
    x = x.astype(np.float64)
    w = w.astype(np.float64)
    xn = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    wn = w / np.maximum(np.linalg.norm(w, axis=0, keepdims=True), 1e-12)
    cosine = np.clip(xn @ wn, -1.0, 1.0)
    sine = np.sqrt(np.clip(1.0 - cosine**2, 0.0, 1.0))
    phi = cosine * math.cos(m) - sine * math.sin(m)
    th, mm = math.cos(math.pi - m), math.sin(math.pi - m) * m
    limit, fallback = (0.0, cosine) if easy_margin else (th, cosine - mm)
    phi = np.where(cosine > limit, phi, fallback)
    n_classes = w.shape[1]
    one_hot = np.eye(n_classes)[y]
    if ls_eps > 0:
        one_hot = (1 - ls_eps) * one_hot + ls_eps / n_classes
    return (one_hot * phi + (1 - one_hot) * cosine) * s, cosine


@pytest.mark.parametrize(
    ("m", "easy_margin", "ls_eps", "s"),
    [(0.5, False, 0.0, 30.0), (0.5, True, 0.0, 30.0), (1.2, False, 0.1, 16.0),
     (1.2, True, 0.2, 64.0), (0.0, False, 0.0, 1.0)],
)
def test_logits_match_numpy_reference(m, easy_margin, ls_eps, s):
    rng = np.random.default_rng(0)
    n, d, c = 64, 16, 7
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = rng.integers(0, c, size=n)
    layer = ArcMarginProduct(c, s=s, m=m, easy_margin=easy_margin, ls_eps=ls_eps)
    layer.build([(None, d), (None,)])
    w = keras.ops.convert_to_numpy(layer.W)
    # Point some rows straight away from their class centre: cos θ_y = -1 < th.
    x[:8] = -w[:, y[:8]].T * 3.0
    got = keras.ops.convert_to_numpy(layer([x, y]))
    want, cosine = reference_logits(x, w, y, s, m, easy_margin, ls_eps)
    target_cos = cosine[np.arange(n), y]
    # The test really exercises both branches of the margin.
    if m == 0:
        pass  # no margin: logits are s * cos θ whichever branch
    elif not easy_margin:
        assert (target_cos <= math.cos(math.pi - m)).sum() >= 8
        assert (target_cos > math.cos(math.pi - m)).sum() >= 8
    else:
        assert (target_cos <= 0).sum() >= 8 and (target_cos > 0).sum() >= 8
    assert got.shape == (n, c) and got.dtype == np.float32
    # sin θ is clipped at sqrt(1e-7) ≈ 3e-4, hence the small absolute tolerance at |cos θ| = 1.
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-3 * s)
    np.testing.assert_allclose(got[8:], want[8:], rtol=1e-4, atol=1e-4 * s)


def test_margin_lowers_only_the_true_class_logit():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(10, 8)).astype(np.float32)
    y = rng.integers(0, 5, size=10)
    with_margin = ArcMarginProduct(5, s=1.0, m=0.3)
    no_margin = ArcMarginProduct(5, s=1.0, m=0.0)
    with_margin.build([(None, 8), (None,)])
    no_margin.build([(None, 8), (None,)])
    no_margin.W.assign(with_margin.W)
    a = keras.ops.convert_to_numpy(with_margin([x, y]))
    b = keras.ops.convert_to_numpy(no_margin([x, y]))
    true = np.zeros_like(a, dtype=bool)
    true[np.arange(10), y] = True
    np.testing.assert_allclose(a[~true], b[~true], rtol=1e-6)
    assert np.all(a[true] < b[true])


def test_no_nan_for_zero_vectors_and_cos_at_plus_minus_one():
    layer = ArcMarginProduct(3, s=30.0, m=0.5)
    layer.build([(None, 4), (None,)])
    layer.W.assign(np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]], dtype=np.float32))
    x = np.array([[0, 0, 0, 0], [1, 0, 0, 0], [-1, 0, 0, 0], [0, 2, 0, 0]], dtype=np.float32)
    y = np.array([0, 0, 0, 1])
    xt = tf.Variable(x)
    with tf.GradientTape() as tape:
        logits = layer([xt, y])
        loss = tf.reduce_sum(
            keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
        )
    gx, gw = tape.gradient(loss, [xt, layer.W])
    out = logits.numpy()
    assert np.all(np.isfinite(out))
    assert np.all(np.isfinite(gx.numpy())) and np.all(np.isfinite(gw.numpy()))
    # Zero vector: cos θ = 0 for every class, so the true class gets cos(π/2 + m).
    np.testing.assert_allclose(out[0, 1:], 0.0, atol=1e-5)
    assert out[0, 0] == pytest.approx(-30 * math.sin(0.5), abs=1e-3)
    assert out[1, 0] == pytest.approx(30 * math.cos(0.5), abs=0.02)  # cos θ = 1
    assert out[2, 0] == pytest.approx(30 * (-1 - math.sin(math.pi - 0.5) * 0.5), abs=0.02)


def test_labels_of_shape_n_by_1_are_accepted():
    layer = ArcMarginProduct(4)
    x = np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32)
    a = keras.ops.convert_to_numpy(layer([x, np.array([[1], [2], [3]])]))
    b = keras.ops.convert_to_numpy(layer([x, np.array([1, 2, 3])]))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"n_classes": 0}, "n_classes"), ({"n_classes": 2.5}, "n_classes"),
     ({"n_classes": 3, "ls_eps": 1.0}, "ls_eps"), ({"n_classes": 3, "m": -0.1}, "radians"),
     ({"n_classes": 3, "s": 0}, "`s`")],
)
def test_invalid_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ArcMarginProduct(**kwargs)


def test_config_round_trip():
    layer = ArcMarginProduct(9, s=12.5, m=0.3, easy_margin=True, ls_eps=0.05, name="arc")
    cfg = layer.get_config()
    assert {k: cfg[k] for k in ("n_classes", "s", "m", "easy_margin", "ls_eps")} == {
        "n_classes": 9, "s": 12.5, "m": 0.3, "easy_margin": True, "ls_eps": 0.05}
    clone = ArcMarginProduct.from_config(cfg)
    assert clone.get_config() == cfg
    ser = keras.saving.serialize_keras_object(layer)
    assert ser["registered_name"] == "shopee_match>ArcMarginProduct"


def test_keras_file_loads_in_a_fresh_process(tmp_path):
    emb_in = keras.Input((6,), name="emb")
    lab_in = keras.Input((), dtype="int32", name="label")
    out = ArcMarginProduct(5, s=10.0, m=0.4, ls_eps=0.1, name="arc")([emb_in, lab_in])
    model = keras.Model([emb_in, lab_in], out)
    x = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
    y = np.array([0, 1, 2, 4], dtype=np.int32)
    want = model.predict([x, y], verbose=0)
    path = tmp_path / "arc.keras"
    model.save(path)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "want.npy", want)
    code = textwrap.dedent(
        f"""
        import numpy as np, keras
        import shopee_match
        layer_cls = shopee_match.ArcMarginProduct  # registers the class
        d = {str(tmp_path)!r}
        model = keras.saving.load_model(d + "/arc.keras")
        assert isinstance(model.get_layer("arc"), layer_cls)
        got = model.predict([np.load(d + "/x.npy"), np.load(d + "/y.npy")], verbose=0)
        np.testing.assert_allclose(got, np.load(d + "/want.npy"), rtol=1e-6)
        print("OK")
        """
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "OK" in res.stdout
