"""Pipeline: fit/predict/evaluate on generated data, tuning, nested params, save/load safety."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from shopee_match import (
    HashMatcher,
    NeighborMatcher,
    PhashEmbedder,
    Pipeline,
    Postings,
    TfidfEmbedder,
    f1_score,
    register,
)
from shopee_match._validation import NotFittedError
from shopee_match.ensemble import Ensemble
from shopee_match.pipeline import FORMAT_VERSION


@pytest.fixture(scope="module")
def fitted(split):
    return Pipeline.default().fit(split[0])


def _truth(p: Postings) -> list[set[str]]:
    ids = p.posting_id
    return [set(ids[m]) for m in p.true_matches()]


def test_submission_format(fitted, split):
    test = split[1]
    sub = fitted.predict(test)
    assert list(sub.columns) == ["posting_id", "matches"]
    assert sub["posting_id"].tolist() == test.posting_id.tolist()
    valid = set(test.posting_id)
    for pid, matches in zip(sub["posting_id"], sub["matches"]):
        ids = matches.split()
        assert pid in ids and set(ids) <= valid and len(ids) == len(set(ids))


def test_held_out_f1_beats_no_matching_and_tuning_helps(fitted, split):
    train, test = split
    f1 = f1_score(_truth(test), fitted.predict(test)["matches"].tolist())
    only_self = f1_score(_truth(test), [[pid] for pid in test.posting_id])
    assert f1 > only_self + 0.3
    untuned = Pipeline.default(rerank=False).set_params(tune=False, tfidf__matcher__threshold=0.95)
    untuned.fit(train)
    assert f1 > f1_score(_truth(test), untuned.predict(test)["matches"].tolist())
    assert 0.1 <= fitted.tuning_["thresholds"]["tfidf"] <= 0.98


def test_evaluate_matches_predict(fitted, split):
    test = split[1]
    table = fitted.evaluate(test)
    assert list(table.index) == [name for name, _, _ in fitted.steps] + ["final", "match_nothing"]
    assert list(table.index) == ["tfidf", "tfidf_qe", "phash", "final", "match_nothing"]
    sizes = np.bincount(test.groups())[test.groups()]
    assert table.loc["match_nothing", "f1"] == pytest.approx(np.mean(2 / (sizes + 1)))
    assert table.loc["match_nothing", "precision"] == 1.0
    assert table.loc["final", "f1"] > table.loc["match_nothing", "f1"]
    assert table.loc["final", "f1"] == pytest.approx(
        f1_score(_truth(test), fitted.predict(test)["matches"].tolist())
    )
    scores = table[["f1", "precision", "recall"]]
    assert ((scores >= 0) & (scores <= 1)).all().all()


def test_embed_steps_once_for_predict_and_evaluate(fitted, split):
    test = split[1]
    embs = fitted.embed_steps(test)
    assert sorted(embs) == ["phash", "tfidf", "tfidf_qe"]
    assert embs["tfidf"] is embs["tfidf_qe"]  # the shared TF-IDF embedder ran once
    assert (fitted.predict_graph(test, embs) != fitted.predict_graph(test)).nnz == 0
    pd.testing.assert_frame_equal(fitted.evaluate(test, embs), fitted.evaluate(test))
    with pytest.raises(ValueError, match="no entry for step 'phash'"):
        fitted.predict_graph(test, {k: v for k, v in embs.items() if k != "phash"})
    short = {k: v[:5] for k, v in embs.items()}
    with pytest.raises(ValueError, match=r"has 5 rows but there are \d+ postings"):
        fitted.evaluate(test, short)


def test_union_covers_each_step(split):
    train, test = split
    pipe = Pipeline(
        [("a", TfidfEmbedder(), NeighborMatcher(threshold=0.6)),
         ("b", TfidfEmbedder(word_ngram_range=None), NeighborMatcher(threshold=0.7))],
        tune=False,
    ).fit(train)
    graphs = pipe.step_graphs(test)
    final = pipe.predict_graph(test)
    for g in graphs.values():
        assert (g.astype(bool) > final.astype(bool)).nnz == 0


def test_save_load_round_trip(fitted, split, tmp_path):
    out = fitted.save(tmp_path / "model")
    assert (out / "config.json").is_file()
    assert not list(tmp_path.glob(".model*")), "temporary folder left behind"
    loaded = Pipeline.load(out)
    pd.testing.assert_frame_equal(loaded.predict(split[1]), fitted.predict(split[1]))
    key = "tfidf__matcher__threshold"
    assert loaded.get_params()[key] == fitted.get_params()[key]
    assert not any(p.suffix in (".pkl", ".pickle", ".joblib") for p in out.rglob("*"))


def test_save_overwrites_atomically(fitted, tmp_path):
    fitted.save(tmp_path / "m")
    fitted.save(tmp_path / "m")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_load_refuses_newer_format(fitted, tmp_path):
    path = fitted.save(tmp_path / "m")
    cfg = json.loads((path / "config.json").read_text())
    cfg["format_version"] = FORMAT_VERSION + 1
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="newer shopee_match"):
        Pipeline.load(path)


def test_load_refuses_unknown_class(fitted, tmp_path):
    path = fitted.save(tmp_path / "m")
    cfg = json.loads((path / "config.json").read_text())
    cfg["steps"][0]["embedder"]["class"] = "os>system"
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="Unknown class 'os>system'"):
        Pipeline.load(path)


def test_load_damaged_files(fitted, tmp_path):
    path = fitted.save(tmp_path / "m")
    (path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="damaged"):
        Pipeline.load(path)
    shutil.rmtree(path)
    with pytest.raises(FileNotFoundError, match="no such pipeline folder"):
        Pipeline.load(path)
    path.mkdir()
    with pytest.raises(FileNotFoundError, match="not a saved shopee_match pipeline"):
        Pipeline.load(path)


def test_load_refuses_state_outside_folder(fitted, tmp_path):
    path = fitted.save(tmp_path / "m")
    cfg = json.loads((path / "config.json").read_text())
    cfg["steps"][0]["state"] = "../../etc"
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="outside"):
        Pipeline.load(path)


def test_nested_params():
    pipe = Pipeline.default(rerank=False)
    pipe.set_params(tfidf__matcher__threshold=0.42, phash__matcher__max_distance=3,
                    ensemble__how="vote")
    params = pipe.get_params()
    assert params["tfidf__matcher__threshold"] == 0.42
    assert params["phash__matcher__max_distance"] == 3
    assert params["ensemble__how"] == "vote"
    with pytest.raises(ValueError, match=r"Invalid parameter 'nope__matcher__k'.*get_params\(\)"):
        pipe.set_params(nope__matcher__k=3)


def test_not_fitted_and_bad_steps(split):
    with pytest.raises(NotFittedError, match="not fitted yet"):
        Pipeline.default().predict(split[1])
    with pytest.raises(TypeError, match="is not an Embedder"):
        Pipeline([("x", object(), NeighborMatcher())]).fit(split[0])
    with pytest.raises(ValueError, match="used twice"):
        Pipeline([("x", TfidfEmbedder(), NeighborMatcher()),
                  ("x", TfidfEmbedder(), NeighborMatcher())]).fit(split[0])


def test_fit_without_labels_explains():
    p = Postings(pd.DataFrame({"posting_id": ["a", "b"], "title": ["x", "y"]}))
    with pytest.raises(ValueError, match="label_group"):
        Pipeline.default().fit(p)


def test_empty_postings_predict(fitted):
    empty = Postings(pd.DataFrame({"posting_id": [], "title": []}))
    assert len(fitted.predict(empty)) == 0


@register(package="tests")
class CharCount:
    """A user's own embedder: letter histograms (protocol only, no base class)."""

    name = "chars"

    def __init__(self, alphabet: str = "abcdefghijklmnopqrstuvwxyz0123456789") -> None:
        self.alphabet = alphabet

    def get_params(self, deep: bool = True) -> dict:
        return {"alphabet": self.alphabet}

    def fit(self, postings):
        return self

    def embed(self, postings):
        x = np.array([[t.lower().count(c) for c in self.alphabet] for t in postings.titles],
                     dtype=np.float32) + 1e-3
        return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_custom_embedder_plugs_in_and_saves(split, tmp_path):
    train, test = split
    pipe = Pipeline([("chars", CharCount(), NeighborMatcher(k=10)),
                     ("phash", PhashEmbedder(), HashMatcher())], refit_cv=False)
    pipe.fit(train)
    loaded = Pipeline.load(pipe.save(tmp_path / "m"))
    pd.testing.assert_frame_equal(loaded.predict(test), pipe.predict(test))


def test_ensemble_modes():
    import scipy.sparse as sp

    a = sp.csr_matrix(np.array([[1, 1, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32))
    b = sp.csr_matrix(np.array([[1, 1, 1], [0, 1, 1], [0, 0, 1]], dtype=np.float32))
    inter = Ensemble(how="intersection").combine({"a": a, "b": b}).toarray()
    assert inter.tolist() == a.toarray().tolist()
    sym = Ensemble(symmetric=True).combine({"a": a}).toarray()
    assert (sym == sym.T).all() and sym[1, 0] == 1
    with pytest.raises(ValueError, match="how"):
        Ensemble(how="max").combine({"a": a})


class Lengths:
    """The Embedder docstring's example: protocol only, no get_params."""

    name = "lengths"

    def fit(self, postings):
        self.fitted_ = True
        return self

    def embed(self, postings):
        assert getattr(self, "fitted_", False), "embed before fit"
        x = np.array([[len(t), 1.0] for t in postings.titles], dtype=np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("refit_cv", [True, False])
def test_protocol_only_embedder_tunes(split, refit_cv):
    train, test = split
    pipe = Pipeline([("len", Lengths(), NeighborMatcher(k=5))], refit_cv=refit_cv).fit(train)
    assert "len" in pipe.tuning_["thresholds"]
    assert len(pipe.predict(test)) == len(test)


def test_progress_bars_only_when_verbose(split, capsys):
    train, test = split
    quiet = Pipeline.default(rerank=False, phash=False).fit(train)
    quiet.predict(test)
    assert "embed + search" not in capsys.readouterr().err
    loud = Pipeline.default(rerank=False, phash=False, verbose=True).fit(train)
    loud.predict(test)
    err = capsys.readouterr().err
    assert "cross-validation" in err and "embed + search" in err


def test_reranker_falls_back_to_union_with_a_warning(split, tmp_path):
    train, test = split
    pipe = Pipeline.default(phash=False).set_params(tune=False)
    with pytest.warns(UserWarning, match="using the union of the steps instead"):
        pipe.fit(train)
    assert isinstance(pipe.combiner_, Ensemble)
    loaded = Pipeline.load(pipe.save(tmp_path / "m"))
    pd.testing.assert_frame_equal(loaded.predict(test), pipe.predict(test))
