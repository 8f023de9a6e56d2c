"""Fitting on several catalogues, and what carries from one catalogue to another."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shopee_match import Pipeline, make_catalog
from shopee_match.data import Postings, concat_postings


def _shop(seed: int, n_groups: int = 40) -> Postings:
    return make_catalog(n_groups=n_groups, images=False, seed=seed)


def test_concat_keeps_groups_apart_and_ids_unique():
    a, b = _shop(0, 5), _shop(0, 5)  # same ids and labels in both
    both = concat_postings([a, b])
    assert len(both) == len(a) + len(b)
    assert both.df["posting_id"].is_unique
    ga, gb = both.groups()[: len(a)], both.groups()[len(a):]
    assert not set(ga) & set(gb)


def test_fit_on_a_list_of_catalogues_builds_candidates_inside_each():
    a, b = _shop(1), _shop(2)
    pipe = Pipeline.default(phash=False, rerank=False).fit([a, b])
    # 3 folds per catalogue, each fold's candidates only within that catalogue
    assert pipe.n_postings_fit_ == len(a) + len(b)
    f1 = pipe.evaluate(_shop(3)).loc["final", "f1"]
    assert f1 > 0.8


def test_fit_on_a_list_with_the_reranker_and_a_tiny_catalogue_warns():
    a = _shop(4)
    tiny = Postings(pd.DataFrame({"posting_id": ["x", "y"], "title": ["red mug", "red mug"],
                                  "label_group": [1, 1]}), source="tiny.csv")
    with pytest.warns(UserWarning, match="tiny.csv.*left out of tuning"):
        pipe = Pipeline.default(phash=False).fit([a, tiny])
    out = pipe.predict(_shop(5, 10))
    assert len(out) > 0 and out["matches"].str.len().gt(0).all()


def test_fit_rejects_bad_lists():
    with pytest.raises(TypeError, match="non-empty list"):
        Pipeline.default().fit([])
    with pytest.raises(TypeError, match="catalogue 1"):
        Pipeline.default().fit([_shop(0, 5), "b.csv"])
    empty = _shop(0, 5).subset(np.array([], dtype=int))
    with pytest.raises(ValueError, match="no postings"):
        Pipeline.default().fit([_shop(0, 5), empty])


def test_grow_closes_large_groups_but_not_single_bridges():
    import scipy.sparse as sp

    from shopee_match.neighbors.graph import grow

    # two products of 6 offers, each posting seeing only 3 of its own (k too small),
    # and one wrong pair bridging them
    n = 12
    rows, cols = [], []
    for base in (0, 6):
        for i in range(6):
            for d in (1, 2, 3):
                j = base + (i + d) % 6
                rows += [base + i, j]
                cols += [j, base + i]
    rows += [5, 6]
    cols += [6, 5]
    g = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n, n))
    out = grow(g, 0.5).toarray() > 0
    assert out[:6, :6].all() and out[6:, 6:].all()
    assert out[0, 6:].sum() == 0 and out[5, 6] and out[6, 5]   # the bridge is not spread


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grow_rows_are_the_rows_of_one_round(seed):
    """A block's rows of one growth round, computed from those rows alone, are the
    round's rows over the whole graph (values kept, new pairs 1)."""
    import scipy.sparse as sp

    from shopee_match.neighbors.graph import grow, grow_rows

    rng = np.random.default_rng(seed)
    n = 60
    r = rng.integers(0, n, 240)
    c = (r + rng.integers(1, 6, 240)) % n  # near neighbours: sets that overlap
    g = sp.csr_matrix((rng.random(240).astype(np.float32), (r, c)), shape=(n, n))
    g = sp.csr_matrix(g.maximum(g.T))
    want = grow(g, 0.5, rounds=1)
    assert want.nnz > sp.csr_matrix(g).nnz + n  # the round adds pairs
    for rows in (np.arange(0, 17), np.arange(17, 60), np.array([3, 40, 41])):
        got = grow_rows(g, rows, 0.5)
        assert (got != want[rows]).nnz == 0


def large_groups(mix: list[tuple[int, tuple[int, int]]], seed: int) -> pd.DataFrame:
    """Generated titles in parts of ``(products, offers per product)``, ids and label
    groups prefixed per part (``s0_``, ``s1_``...): small products beside large ones."""
    from shopee_match.datasets import make_titles

    parts = []
    for k, (n, per) in enumerate(mix):
        df = make_titles(n, per_group=per, seed=seed + k)
        df["posting_id"] = f"s{k}_" + df["posting_id"].astype(str)
        df["label_group"] = f"s{k}:" + df["label_group"].astype(str)
        parts.append(df)
    return pd.concat(parts, ignore_index=True)


def test_grow_until_stable_closes_products_of_many_offers_without_chaining():
    """The shipped model grows match sets until a round adds nothing: products with two
    to three times more offers than the 30 neighbours searched are found better
    than after one round, with (almost) no pair between two products added (no chaining)."""
    from shopee_match.metrics import graph_f1_scores

    cat = Postings(large_groups([(300, (1, 3)), (4, (60, 90))], seed=71))
    pipe = Pipeline.pretrained()
    rr = pipe.combiner_
    assert rr.grow_rounds is None
    proba = rr.predict_proba_graph(pipe.step_graphs(cat), cat.titles)
    stable = rr.matches(proba, cat.titles)
    once = copy.deepcopy(rr).set_params(grow_rounds=1).matches(proba, cat.titles)
    g = cat.groups()
    big = np.asarray(cat.df["label_group"].str.startswith("s1:"))
    f_stable, f_once = graph_f1_scores(stable, g), graph_f1_scores(once, g)
    assert f_stable[big].mean() > f_once[big].mean() + 0.03
    assert f_stable[~big].mean() >= f_once[~big].mean() - 0.005

    def wrong(m) -> int:
        pairs = m.tocoo()
        return int((g[pairs.row] != g[pairs.col]).sum())

    assert stable.nnz > once.nnz + 1000 and wrong(stable) <= wrong(once) + 2


def test_prior_adaptation_keeps_fewer_pairs_where_true_pairs_are_rare():
    from shopee_match.rerank._prior import adapt_to_prior

    rng = np.random.default_rng(0)
    # a calibrated model trained at 30% true pairs, used where 5% are true
    y = rng.random(20000) < 0.05
    score = np.where(y, rng.normal(1.5, 1, y.size), rng.normal(-1.5, 1, y.size))
    lr_train = np.exp(3 * score) * (0.3 / 0.7)  # likelihood ratio x training odds
    p = lr_train / (1 + lr_train)
    q, prior = adapt_to_prior(p, 0.3)
    assert abs(prior - y.mean()) < 0.02
    assert ((q >= 0.5) == y).mean() > ((p >= 0.5) == y).mean()
    # where the prior matches training, nothing moves much
    y2 = rng.random(20000) < 0.3
    s2 = np.where(y2, rng.normal(1.5, 1, y2.size), rng.normal(-1.5, 1, y2.size))
    p2 = 1 / (1 + np.exp(-3 * s2) * (0.7 / 0.3))
    q2, prior2 = adapt_to_prior(p2, 0.3)
    assert abs(prior2 - 0.3) < 0.02 and np.abs(q2 - p2).max() < 0.1


def test_reranker_with_prior_adaptation_and_growth_saves_and_loads(tmp_path):
    pipe = Pipeline.default(phash=False)
    pipe.ensemble.set_params(adapt_prior=True, grow=0.5, max_iter=30)
    pipe.fit(_shop(6, 60))
    test = _shop(7, 30)
    before = pipe.predict(test)
    assert 0 < pipe.combiner_.train_prior_ < 1
    pipe.save(tmp_path / "m")
    again = Pipeline.load(tmp_path / "m")
    assert again.combiner_.train_prior_ == pytest.approx(pipe.combiner_.train_prior_)
    pd.testing.assert_frame_equal(again.predict(test), before)


def test_pretrained_model_is_shipped_small_safe_and_matches():
    from importlib.resources import files

    from shopee_match.metrics import graph_precision_recall_f1

    root = Path(str(files("shopee_match"))) / "pretrained" / "general"
    sizes = [p.stat().st_size for p in root.rglob("*") if p.is_file()]
    assert 0 < sum(sizes) < 10e6
    # plain JSON and LightGBM text models: nothing a loader could execute
    assert {p.suffix for p in root.rglob("*") if p.is_file()} <= {".json", ".txt"}
    pipe = Pipeline.pretrained()
    test = make_catalog(n_groups=60, images=False, seed=21)
    _, _, f1 = graph_precision_recall_f1(pipe.predict_graph(test), test.groups())
    size = np.bincount(test.groups())[test.groups()]
    assert f1.mean() > np.mean(2 / (size + 1)) + 0.1


def test_pretrained_unknown_name_is_a_clear_error():
    with pytest.raises(ValueError, match=r"No pretrained model 'nope'.*general"):
        Pipeline.pretrained("nope")


def test_cli_match_without_model_uses_the_shipped_one(tmp_path, capsys):
    from shopee_match.cli import PRETRAINED_MIN_POSTINGS, main

    test = make_catalog(n_groups=45, images=False, seed=22)
    assert len(test) >= PRETRAINED_MIN_POSTINGS
    test.df.drop(columns=["label_group"]).to_csv(tmp_path / "new.csv", index=False)
    assert main(["match", str(tmp_path / "new.csv"), "-o", str(tmp_path / "out.csv")]) == 0
    assert "shipped pretrained model" in capsys.readouterr().err
    out = pd.read_csv(tmp_path / "out.csv")
    assert len(out) == len(test)
    assert all(pid in m.split() for pid, m in zip(out["posting_id"], out["matches"]))


def test_a_model_fitted_on_other_pair_features_is_refused(tmp_path):
    import json

    pipe = Pipeline.default(phash=False)
    pipe.ensemble.set_params(max_iter=20)
    pipe.fit(_shop(8, 40))
    pipe.save(tmp_path / "m")
    state = tmp_path / "m" / "ensemble" / "reranker.json"
    spec = json.loads(state.read_text())
    spec["feature_names"] = ["old_feature", *spec["feature_names"][1:]]
    state.write_text(json.dumps(spec))
    with pytest.raises(ValueError, match=r"other pair features.*refit"):
        Pipeline.load(tmp_path / "m").predict(_shop(9, 10))


def test_robust_threshold_protects_the_catalogue_of_one_offer_products():
    from shopee_match.rerank import PairReranker

    shops = [_shop(10, 60), _shop(11, 60)]
    # a catalogue where most products have one offer
    sparse = make_catalog(n_groups=150, per_group=(1, 1), images=False, seed=12)
    pipe = Pipeline.default(phash=False)
    pipe.ensemble.set_params(max_iter=30, tune_for="robust")
    pipe.fit([*shops, sparse])
    robust = pipe.combiner_
    mean = Pipeline.default(phash=False)
    mean.ensemble.set_params(max_iter=30)
    mean.fit([*shops, sparse])
    # the robust pick is never looser than the mean pick: it guards the sparse catalogue
    assert robust.threshold_ >= mean.combiner_.threshold_
    with pytest.raises(ValueError, match="tune_for"):
        PairReranker(tune_for="best").fit({}, np.array([]))


def test_shipped_model_is_quiet_about_titles_only_catalogues(recwarn):
    Pipeline.pretrained().predict(make_catalog(n_groups=40, images=False, seed=23))
    assert not [w for w in recwarn if "phash" in str(w.message)]
    from shopee_match import PhashEmbedder

    with pytest.warns(UserWarning, match="phash step matches nothing"):
        PhashEmbedder().embed(make_catalog(n_groups=3, images=False, seed=0))
    with pytest.raises(ValueError, match="on_missing"):
        PhashEmbedder(on_missing="loud").embed(make_catalog(n_groups=3, images=False, seed=0))


def _knn_cands(p):
    from shopee_match import NeighborMatcher, TfidfEmbedder

    return {"tfidf": NeighborMatcher(k=10).candidates(TfidfEmbedder().fit_embed(p))}


def test_thinned_copies_stop_a_model_forcing_partners_on_one_offer_products():
    from shopee_match.metrics import graph_precision_recall_f1
    from shopee_match.rerank import PairReranker

    several = make_catalog(n_groups=120, per_group=(2, 4), images=False, seed=0)
    singles = make_catalog(n_groups=300, per_group=(1, 1), images=False, seed=3)
    cands = _knn_cands(several)
    f1 = {}
    for thin in (None, 0.2):
        rr = PairReranker(max_iter=30, n_jobs=1, thin=thin)
        rr.fit(cands, several.groups(), several.titles)
        pred = rr.select(rr.predict_proba_graph(_knn_cands(singles), singles.titles))
        f1[thin] = graph_precision_recall_f1(pred, singles.groups())[2].mean()
        if thin is not None:
            assert rr.min_matches_ == 1  # a forced partner fails the thinned copies
    assert f1[0.2] > f1[None] + 0.05


def test_thinned_copies_stay_in_their_source_fold():
    from shopee_match.rerank._fit import with_thinned

    p = make_catalog(n_groups=40, per_group=(1, 5), images=False, seed=2)
    ids = np.asarray(p.posting_id)
    cands = _knn_cands(p)
    cs, gs, ts, folds = with_thinned([cands], [p.groups()], [list(ids)], [0], 0.3, 3, 0)
    assert len(cs) == 6 and folds == [0, 1, 2, 0, 1, 2]
    for b in range(3):
        src, thin = set(ts[b]), set(ts[b + 3])
        assert thin <= src and len(thin) < len(src)
        assert set(gs[b + 3]) == set(gs[b])  # every product keeps an offer
        assert cs[b + 3]["tfidf"].shape == (len(thin), len(thin))
        for other in range(3):
            if other != b:
                assert not src & set(ts[other])
