"""Calibrating a fitted pair model on a few labelled groups (``shopee_match.calibration``)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shopee_match import Pipeline, make_catalog, read_postings
from shopee_match.calibration import CALIBRATION_GRID, best_point
from shopee_match.cli import main
from shopee_match.data import Postings
from shopee_match.metrics import graph_precision_recall_f1


@pytest.fixture(scope="module")
def catalogue() -> Postings:
    return make_catalog(n_groups=80, per_group=(1, 4), images=False, seed=5)


def _as_singletons(p: Postings) -> Postings:
    """The same postings, labelled as if every one were a different product."""
    df = p.df.copy()
    df["label_group"] = np.arange(len(df))
    return Postings(df, source="every posting its own product")


def _mean_matches(pipe: Pipeline, p: Postings) -> float:
    g = pipe.predict_graph(p)
    return float(np.diff(g.indptr).mean())


@pytest.mark.filterwarnings("ignore:every posting its own product")
def test_labels_that_forbid_matches_raise_the_threshold(catalogue: Postings) -> None:
    before = Pipeline.pretrained()
    pipe = Pipeline.pretrained().calibrate(_as_singletons(catalogue))
    c = pipe.tuning_["calibration"]
    assert c["threshold"] > c["threshold_before"]
    assert pipe.combiner_.threshold_ == c["threshold"]
    # matching now keeps fewer pairs, and scores better against those labels
    assert _mean_matches(pipe, catalogue) < _mean_matches(before, catalogue)
    assert c["f1"] > c["f1_before"]
    assert c["match_nothing"] == pytest.approx(1.0)


def test_true_labels_keep_a_good_cut(catalogue: Postings) -> None:
    pipe = Pipeline.pretrained().calibrate(catalogue)
    c = pipe.tuning_["calibration"]
    assert c["threshold"] in set(CALIBRATION_GRID.tolist())
    assert c["min_matches"] in (1, 2)
    f1 = graph_precision_recall_f1(pipe.predict_graph(catalogue), catalogue.groups())[2].mean()
    assert f1 == pytest.approx(c["f1"], abs=1e-6)
    assert f1 > c["match_nothing"] + 0.2


def test_context_rows_are_candidates_but_not_scored(catalogue: Postings) -> None:
    groups = catalogue.groups()
    lab = catalogue.subset(np.flatnonzero(groups < 40))
    rest = catalogue.subset(np.flatnonzero(groups >= 40))
    # the context may repeat labelled rows (the whole catalogue): they are taken once
    pipe = Pipeline.pretrained().calibrate(lab, context=catalogue)
    c = pipe.tuning_["calibration"]
    assert c["labelled_postings"] == len(lab)
    assert c["context_postings"] == len(rest)
    no_labels = Postings(rest.df.drop(columns=["label_group"]), source="rest")
    c2 = Pipeline.pretrained().calibrate(lab, context=no_labels).tuning_["calibration"]
    assert c2["context_postings"] == len(rest)
    assert c2["threshold"] == c["threshold"]


@pytest.mark.filterwarnings("ignore:every posting its own product")
def test_saved_and_loaded_model_keeps_the_cut(catalogue: Postings, tmp_path: Path) -> None:
    pipe = Pipeline.pretrained().calibrate(_as_singletons(catalogue))
    pipe.save(tmp_path / "m")
    again = Pipeline.load(tmp_path / "m")
    assert again.combiner_.threshold_ == pipe.combiner_.threshold_
    assert again.tuning_["calibration"]["threshold"] == pipe.tuning_["calibration"]["threshold"]
    pd.testing.assert_frame_equal(again.predict(catalogue), pipe.predict(catalogue))


def test_bad_input_is_refused(catalogue: Postings) -> None:
    union = Pipeline.default(rerank=False, phash=False).fit(catalogue)
    with pytest.raises(ValueError, match="fit it on labelled postings"):
        union.calibrate(catalogue)
    unlabelled = Postings(catalogue.df.drop(columns=["label_group"]), source="u")
    with pytest.raises(ValueError, match="label_group"):
        Pipeline.pretrained().calibrate(unlabelled)
    titles_only = Postings(catalogue.df[["posting_id", "label_group"]].assign(
        image="x.jpg"), source="images")
    with pytest.raises(ValueError, match="same title / image"):
        Pipeline.pretrained().calibrate(catalogue, context=titles_only)
    # the rest of the catalogue has phash and the labelled groups do not: refused, since
    # the cut would be chosen without the phash candidates the model sees when matching
    with_phash = Postings(catalogue.df.assign(image_phash="f" * 16), source="with phash")
    with pytest.raises(ValueError, match="image_phash"):
        Pipeline.pretrained().calibrate(catalogue, context=with_phash)
    with pytest.raises(TypeError, match="context"):
        Pipeline.pretrained().calibrate(catalogue, context=catalogue.df)
    with pytest.raises(ValueError, match="no labelled postings"):
        Pipeline.pretrained().calibrate(catalogue.subset(np.array([], dtype=int)))


def test_columns_the_model_does_not_read_are_ignored(catalogue: Postings) -> None:
    noted = Postings(catalogue.df.assign(notes="checked by hand"), source="noted")
    c = Pipeline.pretrained().calibrate(noted, context=catalogue).tuning_["calibration"]
    assert c["context_postings"] == 0 and c["labelled_postings"] == len(catalogue)


def test_calibrating_leaves_the_model_alone_until_it_is_done(catalogue: Postings) -> None:
    from shopee_match.calibration import calibration_curve

    pipe = Pipeline.pretrained()
    ens = pipe.combiner_
    before = (ens.threshold_, ens.min_matches_)
    proba = ens.predict_proba_graph(pipe.step_graphs(catalogue), catalogue.titles)
    curves = calibration_curve(ens, proba, catalogue.groups(), np.arange(len(catalogue)))
    assert sorted(curves) == [1, 2] and (ens.threshold_, ens.min_matches_) == before
    with pytest.raises(ValueError, match="min_matches"):
        calibration_curve(ens, proba, catalogue.groups(), np.arange(3), ())


def test_few_groups_warn(catalogue: Postings) -> None:
    few = catalogue.subset(np.flatnonzero(catalogue.groups() < 6))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Pipeline.pretrained().calibrate(few, context=catalogue)
    assert any("may be noisy" in str(w.message) for w in caught)


def test_best_point_ignores_a_lone_spike() -> None:
    flat = np.full(len(CALIBRATION_GRID), 0.80)
    flat[3] = 0.95  # one spike
    flat[20:25] = 0.90  # a plateau
    t, mm, f1 = best_point({1: flat})
    assert 20 <= list(CALIBRATION_GRID).index(t) < 25
    assert (mm, f1) == (1, 0.90)


def test_cli_calibrate_then_match(catalogue: Postings, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    full = tmp_path / "catalogue.csv"
    catalogue.df.to_csv(full, index=False)
    lab = tmp_path / "labelled.csv"
    _as_singletons(catalogue).df.to_csv(lab, index=False)
    assert main(["calibrate", str(lab), "--catalogue", str(full), "-o",
                 str(tmp_path / "m"), "-q"]) == 0
    out = capsys.readouterr().out
    assert "threshold 0.500 ->" in out and "saved model" in out
    assert main(["match", str(full), "--model", str(tmp_path / "m"), "-o",
                 str(tmp_path / "sub.csv"), "-q"]) == 0
    sub = pd.read_csv(tmp_path / "sub.csv")
    assert len(sub) == len(read_postings(full))
    # no label_group: one line, exit 2, no model folder
    unl = tmp_path / "unlabelled.csv"
    catalogue.df.drop(columns=["label_group"]).to_csv(unl, index=False)
    assert main(["calibrate", str(unl), "-o", str(tmp_path / "m2"), "-q"]) == 2
    assert "label_group" in capsys.readouterr().err
    assert not (tmp_path / "m2").exists()
