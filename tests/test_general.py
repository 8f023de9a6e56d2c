"""Fitted models that do no harm elsewhere: general catalogues in ``fit`` and the shift guard.

A model fitted on a shop whose offers of one product are worded differently (no codes)
learns to trust pairs whose titles differ; on a shop of coded titles, where near-identical
titles are other products, that makes wrong pairs. ``Pipeline(general=True)`` adds
generated catalogues to what the pair model learns from; ``shift_guard`` keeps, on a
catalogue unlike the fitted ones, only the pairs the shipped model also keeps.
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

from shopee_match import Pipeline
from shopee_match.data import Postings
from shopee_match.datasets import GENERAL_MIXES, general_catalogues, make_titles
from shopee_match.metrics import graph_f1_scores


def _worded(n_groups: int, seed: int) -> Postings:
    """Products named by six made-up words; each offer uses four of them in any order
    plus two random words: worded differently, no codes, 2-5 offers a product."""
    rng = np.random.default_rng(seed)
    syllables = ["ka", "ri", "mo", "te", "lu", "sa", "pe", "no", "bi", "gu", "ze", "fa"]
    vocab = sorted({"".join(rng.choice(syllables, size=3)) for _ in range(3000)})
    rows = []
    for g in range(n_groups):
        words = list(rng.choice(vocab, size=6, replace=False))
        for _ in range(int(rng.integers(2, 6))):
            title = [*rng.choice(words, size=4, replace=False), *rng.choice(vocab, size=2)]
            rows.append((" ".join(title), g))
    df = pd.DataFrame(rows, columns=["title", "label_group"])
    df.insert(0, "posting_id", [f"w{seed}_{i}" for i in range(len(df))])
    return Postings(df, source=f"worded {seed}")


def _coded_singletons(n: int, seed: int) -> Postings:
    """One offer per product, in families of near-identical titles that differ by a
    model code or a size (matching nothing is right everywhere)."""
    return Postings(make_titles(n, (1, 1), seed=seed), source=f"coded {seed}")


def _unguarded(pipe: Pipeline, postings: Postings):
    """The model's own cut (shift guard off for this call only)."""
    pipe.set_params(shift_guard=False)
    try:
        return pipe.predict_graph(postings)
    finally:
        pipe.set_params(shift_guard=True)


def _f1(graph, postings: Postings) -> float:
    return float(graph_f1_scores(graph, postings.groups()).mean())


@pytest.fixture(scope="module")
def worded_models() -> dict[bool, Pipeline]:
    train = _worded(150, 1)
    return {general: Pipeline.default(phash=False).set_params(general=general).fit(train)
            for general in (False, True)}


def test_general_catalogues_cover_each_group_size_mix() -> None:
    cats = general_catalogues(900, seed=3)
    assert len(cats) == len(GENERAL_MIXES)
    assert 700 <= sum(len(c) for c in cats) <= 1100
    for cat, (lo, hi) in zip(cats, GENERAL_MIXES):
        sizes = np.bincount(cat.groups())
        assert sizes.min() >= lo and sizes.max() <= hi
    ids = np.concatenate([c.posting_id for c in cats])
    assert len(set(ids)) == len(ids)  # catalogues never share a posting id
    again = general_catalogues(900, seed=3)
    assert all(a.titles == b.titles for a, b in zip(cats, again))
    assert general_catalogues(900, seed=4)[0].titles != cats[0].titles


def test_fit_learns_from_general_catalogues_and_keeps_its_own_figure(worded_models) -> None:
    plain, general = worded_models[False], worded_models[True]
    assert plain.tuning_["general_postings"] == 0
    n_fit = plain.n_postings_fit_
    assert 0.8 * (n_fit // 3) <= general.tuning_["general_postings"] <= 1.2 * (n_fit // 3)
    # only the user's catalogue is a "known" one for the shift check
    assert len(general.tuning_["profile"]) == 1
    # on a shop of coded titles where every product has one offer, the worded shop's
    # model pairs up near-identical titles of other products; with the general
    # catalogues it keeps far fewer such pairs (shift guard off: the model's own cut)
    coded = _coded_singletons(300, 5)
    own = {g: _unguarded(m, coded) for g, m in worded_models.items()}
    assert own[True].nnz < own[False].nnz / 2
    assert _f1(own[True], coded) > _f1(own[False], coded) + 0.2
    # ... and its own kind of catalogue (other products) is matched as well as before
    like = _worded(60, 9)
    for m in worded_models.values():
        assert _f1(m.predict_graph(like), like) >= 0.95


def test_small_fits_and_union_pipelines_skip_general_catalogues() -> None:
    small = _worded(20, 2)  # under 3 x GENERAL_MIN postings
    assert Pipeline.default(phash=False).fit(small).tuning_["general_postings"] == 0
    union = Pipeline.default(phash=False, rerank=False).fit(_worded(100, 3))
    assert "general_postings" not in union.tuning_  # thresholds tuned on the user's folds


def test_shift_guard_keeps_only_pairs_the_shipped_model_keeps(worded_models, tmp_path) -> None:
    assert Pipeline.default().shift_guard and Pipeline.default().general  # the defaults
    pipe = Pipeline.load(worded_models[False].save(tmp_path / "m"))
    assert pipe.shift_guard  # saved and loaded as a parameter
    coded = _coded_singletons(300, 6)
    own = _unguarded(pipe, coded)
    with pytest.warns(UserWarning, match="keeping only the pairs the shipped general model"):
        guarded = pipe.predict_graph(coded)
    shipped = Pipeline.pretrained().predict_graph(coded)
    kept, mine, theirs = (g != 0 for g in (guarded, own, shipped))
    assert (kept > mine).nnz == 0 and (kept > theirs).nnz == 0  # both models keep each pair
    assert np.all(guarded.diagonal() != 0)
    assert guarded.nnz < own.nnz
    assert _f1(guarded, coded) > _f1(own, coded)
    # evaluate scores the same guarded cut
    with pytest.warns(UserWarning, match="keeping only"):
        assert pipe.evaluate(coded).loc["final", "f1"] == pytest.approx(_f1(guarded, coded))
    # a catalogue like the fitted one: no warning, the model's own cut
    like = _worded(60, 9)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        g = pipe.predict_graph(like)
    assert not _shift_warnings(seen)
    assert (g != _unguarded(pipe, like)).nnz == 0


def test_calibrating_on_a_catalogue_stands_the_guard_down(worded_models) -> None:
    pipe = Pipeline.default(phash=False).set_params(general=False).fit(_worded(150, 1))
    labelled = _coded_singletons(200, 7)
    pipe.calibrate(labelled)
    assert len(pipe.tuning_["profile"]) == 2
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        pipe.predict_graph(_coded_singletons(200, 8))
    assert not _shift_warnings(seen)  # its kind is now a known one


def _shift_warnings(seen: list[warnings.WarningMessage]) -> list[str]:
    """The shift check's warnings among ``seen`` (others, e.g. a memory budget spent by
    the test process, are not what these tests are about)."""
    return [str(w.message) for w in seen if "may not carry over" in str(w.message)]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shopee_match", *args],
                          capture_output=True, text=True, check=False)


def test_cli_fit_no_general_and_match_no_shift_guard(tmp_path) -> None:
    train, coded = tmp_path / "train.csv", tmp_path / "coded.csv"
    _worded(150, 1).df.to_csv(train, index=False)
    _coded_singletons(300, 6).df.to_csv(coded, index=False)
    fit = _cli("fit", str(train), "-o", str(tmp_path / "m"), "--no-general")
    assert fit.returncode == 0, fit.stderr
    assert "generated general postings" not in fit.stdout
    loaded = Pipeline.load(tmp_path / "m")
    assert loaded.general is False and loaded.tuning_["general_postings"] == 0
    out = {}
    for flag in ([], ["--no-shift-guard"]):
        run = _cli("match", str(coded), "--model", str(tmp_path / "m"),
                   "-o", str(tmp_path / f"s{len(flag)}.csv"), *flag)
        assert run.returncode == 0, run.stderr
        assert ("keeping only the pairs" in run.stderr) == (not flag)
        sub = pd.read_csv(tmp_path / f"s{len(flag)}.csv")
        out[bool(flag)] = sub["matches"].str.split().str.len().sum()
    assert out[False] < out[True]  # the guard keeps fewer pairs


def _sets(table: pd.DataFrame) -> dict[str, frozenset[str]]:
    return {str(p): frozenset(str(m).split()) for p, m in zip(table["posting_id"], table["matches"])}


@pytest.fixture(scope="module")
def guarded_case(worded_models) -> tuple[Pipeline, Postings, pd.DataFrame, pd.DataFrame]:
    """The worded shop's model on a coded catalogue (the guard fires): the model, the
    catalogue, ``Pipeline.predict``'s table and the model's own (unguarded) table."""
    pipe = worded_models[False]
    coded = _coded_singletons(300, 6)
    with pytest.warns(UserWarning, match="keeping only the pairs the shipped general model"):
        want = pipe.predict(coded)
    pipe.set_params(shift_guard=False)
    try:
        own = pipe.predict(coded)
    finally:
        pipe.set_params(shift_guard=True)
    return pipe, coded, want, own


def test_match_index_applies_the_guard_as_predict_does(guarded_case, tmp_path) -> None:
    from shopee_match import MatchIndex

    pipe, coded, want, own = guarded_case
    want_sets, own_sets = _sets(want), _sets(own)
    # the new postings: those whose answer the guard changes, and as many others
    ids = coded.posting_id.astype(str)
    changed = np.flatnonzero([want_sets[i] != own_sets[i] for i in ids])
    assert len(changed) >= 5
    rest = np.setdiff1d(np.arange(len(coded)), changed)
    new_rows = np.sort(np.r_[changed[:20], rest[:20]])
    cat_rows = np.setdiff1d(np.arange(len(coded)), new_rows)
    with pytest.warns(UserWarning, match="keeping only the pairs the shipped general model"):
        index = MatchIndex.build(pipe, coded.subset(cat_rows))
    assert index.guard is not None and "shift guard" in repr(index)
    new = coded.subset(new_rows)
    got = _sets(index.query(new))
    assert got == {i: want_sets[i] for i in ids[new_rows]}  # Pipeline.predict's sets
    assert any(got[i] != own_sets[i] for i in ids[new_rows])
    # saved and loaded with the index; folded in by add
    loaded = MatchIndex.load(index.save(tmp_path / "ix"))
    assert loaded.guard is not None and _sets(loaded.query(new)) == got
    loaded.add(new)
    assert len(loaded.guard) == len(loaded) == len(coded)
    # shift_guard off: the model's own cut, no shipped model's index
    pipe.set_params(shift_guard=False)
    try:
        plain = MatchIndex.build(pipe, coded.subset(cat_rows))
    finally:
        pipe.set_params(shift_guard=True)
    assert plain.guard is None
    mine = _sets(plain.query(new))
    assert all(got[i] <= mine[i] for i in got) and got != mine  # the guard only removes pairs
    # a catalogue like the fitted one: no warning, no guard
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        like = MatchIndex.build(pipe, _worded(60, 9))
    assert like.guard is None and not _shift_warnings(seen)


@pytest.mark.dask
def test_dask_applies_the_guard_as_predict_does(guarded_case) -> None:
    pytest.importorskip("dask.dataframe")
    pytest.importorskip("distributed")
    import dask.dataframe as dd
    from distributed import Client, LocalCluster

    from shopee_match.distributed import predict_dask

    pipe, coded, want, own = guarded_case
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as c:
        with pytest.warns(UserWarning, match="keeping only the pairs the shipped general model"):
            got = predict_dask(pipe, dd.from_pandas(coded.df, npartitions=3), client=c,
                               partition_rows=120)
        assert got["posting_id"].tolist() == want["posting_id"].tolist()
        assert _sets(got) == _sets(want) != _sets(own)
        assert "shift_guard" in got.attrs["shopee_match"]
        pipe.set_params(shift_guard=False)
        try:
            plain = predict_dask(pipe, dd.from_pandas(coded.df, npartitions=3), client=c,
                                 partition_rows=120)
        finally:
            pipe.set_params(shift_guard=True)
        assert _sets(plain) == _sets(own) and "shift_guard" not in plain.attrs["shopee_match"]
        # a union model's partitions are cut to the shipped model's size for its run
        from shopee_match.distributed._guard import split_frames

        parts = [c.scatter(coded.df.iloc[a:b]) for a, b in ((0, 130), (130, 140), (140, 300))]
        pieces = c.gather(split_frames(c, parts, 50))
        assert max(len(p) for p in pieces) <= 50 and len(pieces) == 3 + 1 + 4
        assert pd.concat(pieces)["posting_id"].tolist() == coded.df["posting_id"].tolist()
