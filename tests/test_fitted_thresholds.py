"""Tuned thresholds are fitted attributes (``threshold_``), never written into the
constructor parameters the user gave (as scikit-learn's ``TunedThresholdClassifierCV``
keeps ``best_threshold_``); saved, loaded, and read by every runtime."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from sklearn.base import clone

from shopee_match import (
    HashMatcher,
    MatchIndex,
    NeighborMatcher,
    PhashEmbedder,
    Pipeline,
    TfidfEmbedder,
)
from shopee_match.ensemble import Ensemble
from shopee_match.index._fingerprint import fingerprint


@pytest.fixture(scope="module")
def tuned(split):
    steps = [("tfidf", TfidfEmbedder(), NeighborMatcher(threshold=0.5, k=20)),
             ("phash", PhashEmbedder(on_missing="ignore"), HashMatcher(max_distance=0))]
    return Pipeline(steps, ensemble=Ensemble()).fit(split[0])


def test_fit_leaves_the_constructor_parameters_as_given(tuned):
    text, phash = tuned.steps[0][2], tuned.steps[1][2]
    assert text.threshold == 0.5 and phash.max_distance == 0  # as constructed
    assert tuned.get_params()["tfidf__matcher__threshold"] == 0.5
    assert text.threshold_ == tuned.tuning_["thresholds"]["tfidf"] != 0.5
    assert text.similarity_threshold() == text.threshold_
    assert phash.threshold_ == pytest.approx(tuned.tuning_["thresholds"]["phash"])
    assert phash.radius() == phash.max_distance_
    # a clone is the unfitted estimator: the constructor's threshold, nothing tuned
    fresh = clone(text)
    assert fresh.threshold == 0.5 and not hasattr(fresh, "threshold_")


def test_the_tuned_threshold_decides_the_matches(tuned, split):
    text = tuned.steps[0][2]
    x = tuned.steps[0][1].embed(split[1])
    tuned_graph = text.match_graph(x)
    by_param = clone(text).match_graph(x)  # the same matcher at its constructor's 0.5
    assert (tuned_graph != NeighborMatcher(threshold=text.threshold_, k=20).match_graph(x)).nnz == 0
    assert (tuned_graph != by_param).nnz > 0


def test_refit_starts_from_the_constructor_threshold(split):
    m = NeighborMatcher(threshold=0.97, k=20)
    pipe = Pipeline([("tfidf", TfidfEmbedder(), m)], fixed_steps=["tfidf"]).fit(split[0])
    assert m.threshold_ == 0.97  # fixed: left as given
    m.fit_threshold(0.2)  # e.g. a previous fit
    pipe.fit(split[0])
    assert m.threshold_ == 0.97


def test_save_load_keeps_params_and_fitted_thresholds(tuned, split, tmp_path):
    path = tuned.save(tmp_path / "m")
    spec = json.loads((path / "config.json").read_text())
    entry = spec["steps"][0]
    assert entry["matcher"]["params"]["threshold"] == 0.5
    assert entry["threshold_"] == tuned.steps[0][2].threshold_
    loaded = Pipeline.load(path)
    for (_, _, a), (_, _, b) in zip(loaded.steps, tuned.steps):
        assert a.get_params() == b.get_params()
        assert a.threshold_ == b.threshold_
    pd.testing.assert_frame_equal(loaded.predict(split[1]), tuned.predict(split[1]))
    assert fingerprint(loaded) == fingerprint(tuned)


def test_folders_saved_before_load_with_the_same_answers(tuned, split, tmp_path):
    # the previous layout: the tuned thresholds written into the matcher's parameters
    path = tuned.save(tmp_path / "new")
    old = tmp_path / "old"
    shutil.copytree(path, old)
    spec = json.loads((old / "config.json").read_text())
    for entry, (_, _, m) in zip(spec["steps"], tuned.steps):
        del entry["threshold_"]
        key = "threshold" if isinstance(m, NeighborMatcher) else "max_distance"
        entry["matcher"]["params"][key] = m.threshold_ if key == "threshold" else m.radius()
    (old / "config.json").write_text(json.dumps(spec))
    loaded = Pipeline.load(old)
    assert [m.similarity_threshold() for _, _, m in loaded.steps] == pytest.approx(
        [m.similarity_threshold() for _, _, m in tuned.steps])
    pd.testing.assert_frame_equal(loaded.predict(split[1]), tuned.predict(split[1]))


def test_the_shipped_model_loads_and_answers_the_same_after_a_resave(split, tmp_path):
    # shipped in the previous layout (thresholds in the params, no threshold_)
    shipped = Pipeline.pretrained()
    assert all(getattr(m, "threshold_", None) is None for _, _, m in shipped.steps)
    again = Pipeline.load(shipped.save(tmp_path / "general"))
    pd.testing.assert_frame_equal(again.predict(split[1]), shipped.predict(split[1]))


def test_the_index_reads_the_tuned_threshold(tuned, split):
    cat, new = split[1].subset(range(60)), split[1].subset(range(60, len(split[1])))
    index = MatchIndex.build(tuned, cat)
    batch = tuned.predict(split[1]).set_index("posting_id")["matches"]
    got = index.query(new)
    # a union of steps: the index answers as batch matching does
    assert got["matches"].tolist() == batch.loc[got["posting_id"]].tolist()


def test_a_threshold_set_by_hand_after_fit_is_the_one_used(split):
    m = NeighborMatcher(threshold=0.5, k=20)
    pipe = Pipeline([("tfidf", TfidfEmbedder(), m)]).fit(split[0])
    assert m.threshold_ != 0.6
    pipe.set_params(tfidf__matcher__threshold=0.6)
    assert m.similarity_threshold() == 0.6 and not hasattr(m, "threshold_")
    h = HashMatcher(max_distance=1).fit_threshold(1 - 4 / 32)
    assert h.set_params(max_distance=2).radius() == 2
