"""ImageEmbedder on a real EfficientNet-B0 (random weights) and real JPEG/PNG files."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from PIL import Image  # noqa: E402

from shopee_match._registry import get_registered, registered_name  # noqa: E402
from shopee_match._validation import NotFittedError  # noqa: E402
from shopee_match.data import Postings, PostingsError  # noqa: E402
from shopee_match.datasets import make_catalog  # noqa: E402
from shopee_match.image.efficientnet import ImageEmbedder  # noqa: E402
from shopee_match.neighbors import NeighborMatcher  # noqa: E402

SIZE = 64


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    return make_catalog(n_groups=6, per_group=(2, 3), image_dir=tmp_path_factory.mktemp("img"),
                        image_size=SIZE, seed=0)


@pytest.fixture(scope="module")
def untrained(catalog):
    emb = ImageEmbedder("efficientnet_b0", image_size=SIZE, weights=None, batch_size=8)
    return emb.fit(catalog)


@pytest.fixture(scope="module")
def clean_embeddings(untrained, catalog):
    return untrained.embed(catalog)


def test_embed_shape_norm_and_batching(untrained, catalog, clean_embeddings):
    x = clean_embeddings
    assert x.shape == (len(catalog), 1280) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-5)
    untrained.set_params(batch_size=3)  # other chunking, same rows in the same order
    try:
        np.testing.assert_allclose(untrained.embed(catalog), x, atol=1e-5)
    finally:
        untrained.set_params(batch_size=8)
    sets = NeighborMatcher(threshold=0.9, k=10).match(x)
    assert all(i in s for i, s in enumerate(sets))


def test_missing_and_corrupt_images_warn_and_get_zero_rows(untrained, catalog, clean_embeddings,
                                                            tmp_path):
    df = catalog.df.copy()
    src = catalog.image_dir
    for name in df["image"]:
        (tmp_path / name).write_bytes((src / name).read_bytes())
    (tmp_path / df["image"][0]).write_bytes(b"this is not an image")
    data = (tmp_path / df["image"][1]).read_bytes()
    (tmp_path / df["image"][1]).write_bytes(data[: len(data) // 3])  # truncated JPEG
    (tmp_path / df["image"][2]).unlink()
    df.loc[3, "image"] = None  # a posting without an image
    broken = Postings(df, image_dir=tmp_path)
    with pytest.warns(UserWarning) as record:
        x = untrained.embed(broken)
    text = " ".join(str(w.message) for w in record)
    for i in (0, 1, 2):
        assert df["image"][i] in text
    assert "row 3" in text
    np.testing.assert_array_equal(x[:4], 0.0)
    np.testing.assert_allclose(x[4:], clean_embeddings[4:], atol=1e-5)
    # Zero rows still let the posting match itself (and only itself) by image.
    sets = NeighborMatcher(threshold=0.5, k=5).match(x)
    assert sets[0].tolist() == [0]


def test_png_rgba_and_greyscale_images(untrained, catalog, clean_embeddings, tmp_path):
    df = catalog.df.iloc[:3].copy()
    img = Image.open(catalog.image_dir / df["image"][0])
    img.convert("RGBA").save(tmp_path / "a.png")
    img.convert("L").save(tmp_path / "b.jpg")
    Image.open(catalog.image_dir / df["image"][2]).save(tmp_path / "c.png")
    df["image"] = ["a.png", "b.jpg", "c.png"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x = untrained.embed(Postings(df, image_dir=tmp_path))
    assert np.all(np.linalg.norm(x, axis=1) > 0.99)
    # A lossless PNG of the same pixels (decoded by PIL, not TF) embeds like the JPEG.
    assert float(x[2] @ clean_embeddings[2]) > 0.999


@pytest.mark.slow
def test_arcface_training_save_and_load(catalog, clean_embeddings, tmp_path):
    emb = ImageEmbedder("efficientnet_b0", image_size=SIZE, weights=None, epochs=2,
                        batch_size=8, learning_rate=1e-3, seed=0)
    emb.fit(catalog)
    assert len(emb.history_["loss"]) == 2
    trained = emb.embed(catalog)
    assert not np.allclose(trained, clean_embeddings, atol=1e-3)
    params = json.loads(json.dumps(emb.get_params(deep=False)))
    emb.save_state(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"image_model.keras", "image_state.json"}
    loaded = get_registered(registered_name(emb))(**params)
    loaded.load_state(tmp_path)
    np.testing.assert_allclose(loaded.embed(catalog), trained, atol=1e-6)


def test_weights_from_a_local_file(untrained, catalog, clean_embeddings, tmp_path):
    path = tmp_path / "b0.weights.h5"
    untrained.model_.save_weights(path)
    other = ImageEmbedder("efficientnet_b0", image_size=SIZE, weights=str(path), seed=123)
    np.testing.assert_allclose(other.fit(catalog).embed(catalog), clean_embeddings, atol=1e-5)


def test_errors(catalog, tmp_path):
    with pytest.raises(NotFittedError):
        ImageEmbedder(weights=None).embed(catalog)
    with pytest.raises(ValueError, match="efficientnet_b0"):
        ImageEmbedder("resnet50", weights=None).fit(catalog)
    with pytest.raises(ValueError, match="not a file"):
        ImageEmbedder(weights=str(tmp_path / "none.h5")).fit(catalog)
    with pytest.raises(ValueError, match="image_size"):
        ImageEmbedder(image_size=8, weights=None).fit(catalog)
    no_labels = Postings(catalog.df.drop(columns="label_group"), image_dir=catalog.image_dir)
    with pytest.raises(PostingsError, match="label_group"):
        ImageEmbedder("efficientnet_b0", image_size=SIZE, weights=None, epochs=1).fit(no_labels)
    no_images = make_catalog(n_groups=2, images=False)
    with pytest.raises(PostingsError, match="image"):
        ImageEmbedder("efficientnet_b0", image_size=SIZE, weights=None).fit(
            no_images).embed(no_images)
