"""PairReranker and pair features: real behaviour on generated catalogues."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from shopee_match import NeighborMatcher, Postings, TfidfEmbedder, make_catalog
from shopee_match._validation import NotFittedError
from shopee_match.data import group_kfold, train_test_split_groups
from shopee_match.neighbors.graph import graph_to_sets, select
from shopee_match.rerank import PairReranker
from shopee_match.rerank.pair_features import candidate_pairs, pair_features

K = 15


def _cands(p: Postings) -> dict[str, sp.csr_matrix]:
    emb = TfidfEmbedder(fit_on="predict").fit_embed(p)
    return {"tfidf": NeighborMatcher(k=K, backend="sparse").candidates(emb)}


def _f1(g: sp.csr_matrix, p: Postings) -> float:
    from shopee_match import f1_score

    return f1_score(p.true_matches(), graph_to_sets(g))


@pytest.fixture(scope="module")
def split() -> tuple[Postings, Postings]:
    p = make_catalog(n_groups=240, per_group=(2, 5), images=False, seed=11)
    return train_test_split_groups(p, test_size=1 / 3, random_state=0)


@pytest.fixture(scope="module")
def fitted(split: tuple[Postings, Postings]) -> PairReranker:
    train, _ = split
    folds = [train.subset(f) for _, f in group_kfold(train.groups(), 2, 0)]
    return PairReranker(max_iter=60, n_jobs=1).fit(
        [_cands(f) for f in folds], [f.groups() for f in folds], [f.titles for f in folds]
    )


def test_reranker_beats_tuned_threshold_on_held_out_groups(
    split: tuple[Postings, Postings], fitted: PairReranker
) -> None:
    train, test = split
    # the first-stage baseline: one cosine threshold tuned on the training postings
    c_train = _cands(train)
    grid = np.arange(0.2, 0.95, 0.025)
    best_t = max(grid, key=lambda t: _f1(select(c_train["tfidf"], t), train))
    c_test = _cands(test)
    base = _f1(select(c_test["tfidf"], best_t), test)
    ours = _f1(fitted.select(fitted.predict_proba_graph(c_test, test.titles)), test)
    assert 0.0 < fitted.threshold_ < 1.0
    print(f"F1 tuned threshold {base:.4f}, reranker {ours:.4f}")
    assert ours > base + 0.02, (ours, base)


def test_proba_graph_shape_symmetry_and_sparsity(
    split: tuple[Postings, Postings], fitted: PairReranker
) -> None:
    _, test = split
    cands = _cands(test)
    proba = fitted.predict_proba_graph(cands, test.titles)
    union = (cands["tfidf"] + cands["tfidf"].T).tolil()
    union.setdiag(0)
    union = union.tocsr()
    union.eliminate_zeros()
    assert proba.shape == (len(test), len(test))
    assert (abs(proba - proba.T) > 1e-6).nnz == 0
    assert ((proba != 0) != (union != 0)).nnz == 0 or proba.nnz == union.nnz
    assert proba.data.min() >= 0.0 and proba.data.max() <= 1.0
    kept = fitted.select(proba)
    assert np.all(kept.diagonal() == 1)
    # min_matches=2: a posting with any candidate keeps at least one partner if probable
    tuned = fitted.min_matches_
    assert tuned in (1, 2)  # tuning picks 1 or the floor of 2
    fitted.min_matches_ = 2
    try:
        loose = fitted.select(proba, threshold=1.0)
    finally:
        fitted.min_matches_ = tuned
    has_partner = np.diff(loose.indptr) >= 2
    assert has_partner.mean() > 0.5


def test_save_load_round_trip_identical(
    split: tuple[Postings, Postings], fitted: PairReranker, tmp_path
) -> None:
    _, test = split
    cands = _cands(test)
    before = fitted.predict_proba_graph(cands, test.titles)
    fitted.save_state(tmp_path)
    json.loads((tmp_path / "reranker.json").read_text())  # plain JSON state
    # LightGBM's own text model format, one file per stage (no pickle anywhere)
    assert sorted(f.name for f in tmp_path.iterdir()) == [
        "reranker.json", "reranker_model_0.txt", "reranker_model_1.txt"]
    assert (tmp_path / "reranker_model_0.txt").read_text().startswith("tree\n")
    loaded = PairReranker()
    loaded.load_state(tmp_path)
    after = loaded.predict_proba_graph(cands, test.titles)
    assert (before != 0).nnz == (after != 0).nnz
    np.testing.assert_array_equal(after.toarray(), before.toarray())
    assert loaded.threshold_ == fitted.threshold_
    assert ((loaded.select(after) != 0) != (fitted.select(before) != 0)).nnz == 0


def test_lightgbm_deterministic_and_threads_agree(split: tuple[Postings, Postings]) -> None:
    """The same data and seed give the same trees, whatever the thread count: with
    ``n_jobs > 1`` a stage's fold models and final model train side by side."""
    train, test = split
    c_train, c_test = _cands(train), _cands(test)
    kw = {"max_iter": 30, "n_stages": 2, "tune_threshold": True}
    a = PairReranker(n_jobs=1, **kw).fit(c_train, train.groups(), train.titles)
    b = PairReranker(n_jobs=3, **kw).fit(c_train, train.groups(), train.titles)
    def trees(rr: PairReranker, stage: int) -> str:  # the model text less its parameters
        return str(rr.boosters_[stage].model_to_string().partition("\nparameters:")[0])

    assert [trees(a, s) for s in (0, 1)] == [trees(b, s) for s in (0, 1)]
    assert (a.threshold_, a.min_matches_, a.cv_f1_) == (b.threshold_, b.min_matches_, b.cv_f1_)
    pa = a.predict_proba_graph(c_test, test.titles)
    pb = b.predict_proba_graph(c_test, test.titles)
    np.testing.assert_array_equal(pa.toarray(), pb.toarray())


def test_format_1_folder_fails_with_refit_message(fitted: PairReranker, tmp_path) -> None:
    """A reranker saved by the scikit-learn-trees version (format 1) asks to be refitted."""
    fitted.save_state(tmp_path)
    state = json.loads((tmp_path / "reranker.json").read_text())
    (tmp_path / "reranker.json").write_text(json.dumps({**state, "format": 1}))
    with pytest.raises(ValueError, match=r"earlier shopee_match.*refit the pipeline"):
        PairReranker().load_state(tmp_path)
    (tmp_path / "reranker.json").write_text(json.dumps(state))
    (tmp_path / "reranker_model_1.txt").write_text("not a model")
    with pytest.raises(ValueError, match="damaged"):
        PairReranker().load_state(tmp_path)
    (tmp_path / "reranker_model_1.txt").unlink()
    with pytest.raises(ValueError, match="missing"):
        PairReranker().load_state(tmp_path)


def test_single_graph_fit_uses_group_folds(split: tuple[Postings, Postings]) -> None:
    train, _ = split
    rr = PairReranker(max_iter=30, cv=2, n_jobs=1).fit(_cands(train), train.groups())
    assert not rr.uses_titles_ and not any(n.startswith("word_") for n in rr.feature_names_)
    assert 0.5 < rr.cv_f1_ <= 1.0


def test_pair_features_values() -> None:
    g = sp.csr_matrix(np.array([[1, 0.9, 0.2], [0.9, 1, 0], [0.2, 0, 1]], dtype=np.float32))
    r, c = candidate_pairs({"t": g})
    assert list(zip(r.tolist(), c.tolist())) == [(0, 1), (0, 2), (1, 0), (2, 0)]
    x, names = pair_features({"t": g}, r, c, ["mug 300ml", "Mug 300ML red", "mug 500ml"])
    f = dict(zip(names, x.T))
    np.testing.assert_allclose(f["t__sim"], [0.9, 0.2, 0.9, 0.2], atol=1e-6)
    assert f["t__rank_ij"].tolist() == [1, 2, 1, 1]
    assert f["t__mutual_best"].tolist() == [1, 0, 1, 0]
    # 300ml against 500ml: the same unit with no size in common is a conflict
    assert f["qty_conflict"].tolist() == [0, 1, 0, 1]
    assert f["qty_unit_conflict"].tolist() == [0, 1, 0, 1]
    assert f["qty_shared"].tolist() == [1, 0, 1, 0]


def test_title_features_read_codes_as_a_person_does() -> None:
    from shopee_match.rerank.title_features import title_features

    titles = ["Panasonic KX-TS108W Corded Phone", "Panasonic Integrated Telephone System - KXTS108W",
              "Panasonic KX-TS600W Corded Phone", "Sony STR-DE197 receiver", "sony strde197"]
    r, c = np.array([0, 0, 3]), np.array([1, 2, 4])
    f = title_features(titles, r, c)
    assert f["code_shared"].tolist() == [1, 0, 1]
    assert f["code_conflict"].tolist() == [0, 1, 0]
    # the rarest word of the pair that only one title has: 'integrated' etc. vs '600w'
    assert (f["idf_diff_max"] > 0).all() and f["idf_shared_max"][2] > 0


def test_errors(split: tuple[Postings, Postings], fitted: PairReranker) -> None:
    _, test = split
    cands = _cands(test)
    with pytest.raises(NotFittedError, match="not fitted"):
        PairReranker().predict_proba_graph(cands)
    with pytest.raises(ValueError, match="modalities"):
        fitted.predict_proba_graph({"other": cands["tfidf"]}, test.titles)
    with pytest.raises(ValueError, match="needs `titles`"):
        fitted.predict_proba_graph(cands)
    with pytest.raises(ValueError, match="one per candidate-graph row"):
        fitted.predict_proba_graph(cands, test.titles[:-1])
    with pytest.raises(ValueError, match="one label per"):
        PairReranker().fit(cands, test.groups()[:-1])
    with pytest.raises(ValueError, match="square"):
        PairReranker().fit({"t": sp.csr_matrix((3, 4))}, np.zeros(3, int))
    with pytest.raises(ValueError, match="empty"):
        PairReranker().fit({}, np.zeros(3, int))
    with pytest.raises(TypeError, match="dict"):
        PairReranker().fit("graph", np.zeros(3, int))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="one class"):
        PairReranker().fit({"t": sp.identity(4, format="csr")}, np.arange(4))
    with pytest.raises(ValueError, match="threshold"):
        PairReranker(threshold=2.0).fit(cands, test.groups())


def test_optional_modality_missing_at_predict_time(split: tuple[Postings, Postings]) -> None:
    """A model fitted with an image-like modality still works on a titles-only set."""
    train, test = split
    rng = np.random.default_rng(0)

    def with_fake_phash(p: Postings) -> dict[str, sp.csr_matrix]:
        # an image signal: most same-group pairs (and a few others) within the radius
        g = p.groups()
        i, j = np.nonzero((g[:, None] == g[None, :]) & (rng.random((len(g), len(g))) < 0.6))
        keep = i != j
        ph = sp.csr_matrix((np.full(keep.sum(), 0.9, np.float32), (i[keep], j[keep])),
                           shape=(len(g), len(g)))
        return {**_cands(p), "phash": ph}

    c_train, c_test = with_fake_phash(train), _cands(test)
    c_test["phash"] = sp.csr_matrix((len(test), len(test)), dtype=np.float32)
    kw = {"max_iter": 40, "n_stages": 1, "n_jobs": 1}
    plain = PairReranker(**kw).fit(c_train, train.groups(), train.titles)
    robust = PairReranker(optional_modalities=["phash"], **kw).fit(
        c_train, train.groups(), train.titles)
    text_only = PairReranker(**kw).fit({"tfidf": c_train["tfidf"]}, train.groups(), train.titles)
    f_plain = _f1(plain.select(plain.predict_proba_graph(c_test, test.titles)), test)
    f_robust = _f1(robust.select(robust.predict_proba_graph(c_test, test.titles)), test)
    f_text = _f1(text_only.select(text_only.predict_proba_graph(
        {"tfidf": c_test["tfidf"]}, test.titles)), test)
    print(f"no phash at predict: plain {f_plain:.4f}, optional {f_robust:.4f}, "
          f"text-only model {f_text:.4f}")
    assert f_robust >= f_plain - 0.005
    assert f_robust >= f_text - 0.02
    with pytest.raises(ValueError, match="optional_modalities"):
        PairReranker(optional_modalities=["image"]).fit(c_train, train.groups())


def test_params_clone_and_json_round_trip() -> None:
    from sklearn.base import clone

    from shopee_match._persist import estimator_from_json, estimator_to_json

    est = PairReranker(threshold=0.4, n_stages=1, optional_modalities=["phash"], n_jobs=1)
    assert clone(est).get_params() == est.get_params()
    spec = json.loads(json.dumps(estimator_to_json(est)))
    back = estimator_from_json(spec)
    assert isinstance(back, PairReranker) and back.get_params() == est.get_params()


def test_lightgbm_import_leaves_environment_as_found() -> None:
    """LightGBM loads with the passive OpenMP wait policy; os.environ is not changed."""
    import os
    import subprocess
    import sys

    code = ("import os, sys; from shopee_match.rerank._io import lightgbm as _lightgbm; "
            "before = os.environ.get('OMP_WAIT_POLICY'); _lightgbm(); "
            "sys.exit(0 if os.environ.get('OMP_WAIT_POLICY') == before else 1)")
    for env_policy in (None, "ACTIVE"):
        env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
        if env_policy:
            env["OMP_WAIT_POLICY"] = env_policy
        assert subprocess.run([sys.executable, "-c", code], env=env).returncode == 0


def test_fold_without_pairs_falls_back_to_the_union_with_a_warning():
    """Found by hypothesis: titles sharing no words leave a tuning fold without candidate
    pairs; the pipeline says so and uses the union instead of crashing in LightGBM."""
    import pandas as pd

    from shopee_match import Pipeline

    df = pd.DataFrame({"posting_id": [f"p{i}" for i in range(6)],
                       "title": [" b", "b b", "1", "", "b ", "b  "],
                       "label_group": [1, 0, 2, 0, 3, 3]})
    with pytest.warns(UserWarning, match="no candidate pairs"):
        pipe = Pipeline.default(phash=False).fit(Postings(df))
    sub = pipe.predict(Postings(df))
    assert all(pid in m.split() for pid, m in zip(sub.posting_id, sub.matches))
