"""EDA and evaluation plots: real PNG files from generated catalogues, through the API and CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from shopee_match import Pipeline, Postings, make_catalog
from shopee_match.cli import main
from shopee_match.plots import eda_plots, evaluation_plots

EDA_FILES = ["largest_groups.png", "title_lengths.png", "group_images.png"]
EVAL_FILES = ["threshold_f1.png", "false_matches.png", "missed_matches.png"]

# Incidental data warnings (no phash source, unreadable images) are not what these tests are
# about; the ones that are get checked with pytest.warns.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def check_pngs(folder: Path, names: list[str]) -> dict[str, np.ndarray]:
    """Every file is a readable PNG of a sensible size; nothing else (no temp files) is left."""
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)
    out = {}
    for name in names:
        with Image.open(folder / name) as img:
            assert img.format == "PNG"
            w, h = img.size
            assert 300 <= w <= 4000 and 100 <= h <= 6000, (name, img.size)
            out[name] = np.asarray(img.convert("RGB"))
        assert len(np.unique(out[name].reshape(-1, 3), axis=0)) > 10  # not a blank canvas
    return out


@pytest.fixture(scope="module")
def small_images(tmp_path_factory: pytest.TempPathFactory) -> Postings:
    """A small catalogue with images; the largest group's first image is deleted and its
    second is not a JPEG at all."""
    folder = tmp_path_factory.mktemp("plot_images")
    cat = make_catalog(n_groups=14, image_dir=folder, image_size=48, seed=11)
    largest = cat.df["label_group"].value_counts().index[0]
    rows = np.flatnonzero((cat.df["label_group"] == largest).to_numpy())
    paths = cat.image_paths()
    assert paths[rows[0]] is not None and paths[rows[1]] is not None
    paths[rows[0]].unlink()
    paths[rows[1]].write_bytes(b"this is not an image")
    return cat


@pytest.fixture(scope="module")
def small_titles() -> Postings:
    return make_catalog(n_groups=14, images=False, seed=12)


def test_eda_with_images_draws_missing_tiles(small_images: Postings, tmp_path: Path) -> None:
    written = eda_plots(small_images, tmp_path / "eda")
    assert [p.name for p in written] == EDA_FILES
    pixels = check_pngs(tmp_path / "eda", EDA_FILES)
    grid = pixels["group_images.png"]
    # two grey "missing" tiles (RGB 209): at least a few thousand such pixels
    grey = np.all(np.abs(grid.astype(int) - 209) <= 1, axis=-1).sum()
    assert grey > 2000


def test_eda_without_images(small_titles: Postings, tmp_path: Path) -> None:
    written = eda_plots(small_titles, tmp_path)
    assert [p.name for p in written] == EDA_FILES[:2]
    check_pngs(tmp_path, EDA_FILES[:2])


def test_eda_without_labels_warns_and_skips_groups(small_titles: Postings, tmp_path: Path) -> None:
    unlabelled = Postings(small_titles.df.drop(columns="label_group"))
    with pytest.warns(UserWarning, match="label_group"):
        written = eda_plots(unlabelled, tmp_path)
    assert [p.name for p in written] == ["title_lengths.png"]


def test_eda_unlabelled_images_and_awkward_titles(small_images: Postings, tmp_path: Path) -> None:
    """Dollar signs (mathtext), emoji, a 900-character title: drawn, wrapped, no crash."""
    df = small_images.df.drop(columns="label_group").copy()
    df.loc[0, "title"] = "Promo $5 $10 only_today ^_^ \\frac{1}{2} " + "x" * 900
    df.loc[1, "title"] = "Kaos 👕 polos 100% katun — ukuran L"
    df.loc[2, "title"] = ""
    with pytest.warns(UserWarning, match="empty title"):
        postings = Postings(df, image_dir=small_images.image_dir)
    written = eda_plots(postings, tmp_path)
    assert [p.name for p in written] == ["title_lengths.png", "group_images.png"]


def test_eda_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="Postings"):
        eda_plots(pd.DataFrame({"posting_id": ["a"], "title": ["b"]}), tmp_path)  # type: ignore[arg-type]
    empty = Postings(pd.DataFrame({"posting_id": pd.Series([], dtype=str), "title": []}))
    with pytest.raises(ValueError, match="no postings"):
        eda_plots(empty, tmp_path)


def test_evaluation_plots_tuned_pipeline_with_images(small_images: Postings,
                                                     tmp_path: Path) -> None:
    pipe = Pipeline.default().fit(small_images)
    assert set(pipe.tuning_["curves"]) == {"tfidf", "tfidf_qe", "phash"}
    written = evaluation_plots(pipe, small_images, tmp_path, n_pairs=4)
    assert [p.name for p in written] == EVAL_FILES
    check_pngs(tmp_path, EVAL_FILES)


def test_evaluation_plots_untuned_pipeline_computes_curves(small_titles: Postings,
                                                           tmp_path: Path) -> None:
    """No tuning curves: they are computed on the postings; a loose threshold gives errors."""
    pipe = Pipeline.default(rerank=False)
    pipe.set_params(tune=False, tfidf__matcher__threshold=0.3)
    pipe.fit(small_titles)
    written = evaluation_plots(pipe, small_titles, tmp_path)
    assert not getattr(pipe, "tuning_", {}).get("curves")
    assert [p.name for p in written] == EVAL_FILES
    pixels = check_pngs(tmp_path, EVAL_FILES)
    # the false-match grid has pairs in it (taller than the one-line "none" figure)
    assert pixels["false_matches.png"].shape[0] > 300


def test_evaluation_plots_perfect_pipeline_says_none(tmp_path: Path) -> None:
    """Identical titles per group: no errors at all; the error plots say so, not crash."""
    df = pd.DataFrame({"posting_id": [f"p{i}" for i in range(12)],
                       "title": [f"product number {i // 3} alpha{i // 3}" for i in range(12)],
                       "label_group": [i // 3 for i in range(12)]})
    postings = Postings(df)
    pipe = Pipeline.default(rerank=False)
    pipe.set_params(tune=False, tfidf__matcher__threshold=0.9)
    pipe.fit(postings)
    written = evaluation_plots(pipe, postings, tmp_path)
    assert [p.name for p in written] == EVAL_FILES
    for name in EVAL_FILES[1:]:
        with Image.open(tmp_path / name) as img:
            assert img.size[1] < 200  # the one-line "No false/missed matches" figure


def test_evaluation_plots_need_labels(small_titles: Postings, tmp_path: Path) -> None:
    pipe = Pipeline.default(rerank=False)
    pipe.set_params(tune=False)
    pipe.fit(small_titles)
    unlabelled = Postings(small_titles.df.drop(columns="label_group"))
    with pytest.raises(ValueError, match="label_group"):
        evaluation_plots(pipe, unlabelled, tmp_path)
    with pytest.raises(ValueError, match="n_pairs"):
        evaluation_plots(pipe, small_titles, tmp_path, n_pairs=0)


# --- through the command line ----------------------------------------------------------
def test_cli_eda_and_evaluate_plots(small_images: Postings, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "catalog.csv"
    small_images.df.to_csv(csv, index=False)
    images = str(small_images.image_dir)

    assert main(["eda", str(csv), "--images", images, "-o", str(tmp_path / "eda"), "-q"]) == 0
    check_pngs(tmp_path / "eda", EDA_FILES)
    assert "group_images.png" in capsys.readouterr().out

    assert main(["eda", str(csv), "-o", str(tmp_path / "eda_titles"), "-q"]) == 0
    check_pngs(tmp_path / "eda_titles", EDA_FILES[:2])

    rc = main(["evaluate", str(csv), "--images", images, "--plots", str(tmp_path / "ev"), "-q"])
    assert rc == 0
    assert "wrote 3 plots" in capsys.readouterr().out
    check_pngs(tmp_path / "ev", EVAL_FILES)

    model = tmp_path / "model"
    assert main(["fit", str(csv), "--images", images, "-o", str(model), "-q"]) == 0
    rc = main(["evaluate", str(csv), "--images", images, "--model", str(model),
               "--plots", str(tmp_path / "ev_model"), "-q"])
    assert rc == 0
    check_pngs(tmp_path / "ev_model", EVAL_FILES)


def test_cli_eda_missing_file_is_one_line_error(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eda", str(tmp_path / "nope.csv"), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "nope.csv" in err
    assert not (tmp_path / "out").exists()
