"""MatchIndex: new postings against an indexed catalogue give batch matching's answers."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shopee_match import MatchIndex, NeighborMatcher, Pipeline, Postings, make_catalog
from shopee_match.ensemble import Ensemble
from shopee_match.text.tfidf import TfidfEmbedder


def with_phash(p: Postings, seed: int) -> Postings:
    """Postings with a clustered ``image_phash``: one code per group, a bit flipped in half."""
    rng = np.random.default_rng(seed)
    df = p.df.copy()
    groups = pd.factorize(df["label_group"])[0]
    codes = rng.integers(0, 2**63, size=groups.max() + 1, dtype=np.uint64)[groups]
    flip = rng.random(len(codes)) < 0.5
    bits = rng.integers(0, 64, size=len(codes)).astype(np.uint64)
    codes[flip] ^= np.uint64(1) << bits[flip]
    df["image_phash"] = [f"{int(c):016x}" for c in codes]
    return Postings(df, source="test")


@pytest.fixture(scope="module")
def data() -> Postings:
    return with_phash(make_catalog(n_groups=90, images=False, seed=12), 12)


@pytest.fixture(scope="module")
def union_pipe() -> Pipeline:
    train = with_phash(make_catalog(n_groups=60, images=False, seed=11), 11)
    return Pipeline.default(rerank=False).fit(train)


@pytest.fixture(scope="module")
def rerank_pipe() -> Pipeline:
    train = with_phash(make_catalog(n_groups=70, images=False, seed=11), 11)
    pipe = Pipeline.default(rerank=True)
    pipe.set_params(ensemble__max_iter=30)
    return pipe.fit(train)


def split(p: Postings, n_new: int, seed: int = 0) -> tuple[Postings, Postings]:
    perm = np.random.default_rng(seed).permutation(len(p))
    return p.subset(np.sort(perm[n_new:])), p.subset(np.sort(perm[:n_new]))


def sets(sub: pd.DataFrame) -> dict[str, set[str]]:
    return {pid: set(m.split()) for pid, m in zip(sub.posting_id, sub.matches)}


def assert_batch_equal(pipe: Pipeline, data: Postings, res: pd.DataFrame) -> None:
    batch = sets(pipe.predict(data))
    got = sets(res)
    assert got == {pid: batch[pid] for pid in got}


@pytest.mark.parametrize("which", ["union_pipe", "rerank_pipe"])
def test_query_equals_batch(which: str, data: Postings, request: pytest.FixtureRequest) -> None:
    # the default pipelines, including the reranker, the blended TF-IDF step and phash;
    # fit_on="predict" TF-IDF learns its vocabulary from the catalogue at index time,
    # which on these generated titles gives batch's answers exactly
    pipe = request.getfixturevalue(which)
    cat, new = split(data, 30)
    index = MatchIndex.build(pipe, cat)
    res = index.query(new)
    assert list(res.posting_id) == list(new.posting_id)
    assert_batch_equal(pipe, data, res)
    assert len(index) == len(cat)  # a query changes nothing


def test_frozen_vocabulary_exact_when_learnt_at_fit(data: Postings) -> None:
    train = make_catalog(n_groups=40, images=False, seed=4)
    pipe = Pipeline(steps=[("t", TfidfEmbedder(), NeighborMatcher(threshold=0.5, k=10,
                                                                  min_matches=2))],
                    ensemble=Ensemble(symmetric=True), tune=False).fit(train)
    cat, new = split(data, 25, seed=3)
    index = MatchIndex.build(pipe, cat)
    assert index.radius == 1
    assert_batch_equal(pipe, data, index.query(new))


def test_add_then_query(rerank_pipe: Pipeline, data: Postings) -> None:
    rest, b = split(data, 20, seed=1)
    cat, a = split(rest, 25, seed=2)
    index = MatchIndex.build(rerank_pipe, cat)
    assert index.add(a) is index and len(index) == len(cat) + len(a)
    assert index.posting_ids[-len(a):] == list(a.posting_id)
    assert_batch_equal(rerank_pipe, data, index.query(b))
    with pytest.raises(ValueError, match="already in the index"):
        index.add(a)


def test_replace(union_pipe: Pipeline, data: Postings) -> None:
    cat, new = split(data, 10, seed=5)
    index = MatchIndex.build(union_pipe, cat)
    clash = cat.subset([0, 1])
    with pytest.raises(ValueError, match="replace=True"):
        index.query(clash)
    # a posting re-sent with another title: answers as if the catalogue held the new one
    df = cat.df.copy()
    df.loc[0, "title"] = new.df["title"].iloc[0]
    df.loc[0, "image_phash"] = new.df["image_phash"].iloc[0]
    changed = Postings(df)
    res = index.query(changed.subset([0]), replace=True)
    assert len(index) == len(cat)
    fresh = MatchIndex.build(union_pipe, changed).query(new)
    index.add(changed.subset([0]), replace=True)
    assert len(index) == len(cat)
    assert sets(index.query(new)) == sets(fresh)
    both = Postings(pd.concat([changed.df, new.df], ignore_index=True))
    assert_batch_equal(union_pipe, changed, res)
    assert_batch_equal(union_pipe, both, index.query(new))


def test_replace_with_reranker(rerank_pipe: Pipeline, data: Postings) -> None:
    cat, new = split(data, 15, seed=6)
    index = MatchIndex.build(rerank_pipe, cat)
    df = cat.df.copy()
    df.loc[3, "title"] = "completely different thing 12345"
    changed = Postings(df)
    index.add(changed.subset([3]), replace=True)
    both = Postings(pd.concat([changed.df, new.df], ignore_index=True))
    assert_batch_equal(rerank_pipe, both, index.query(new))


def test_save_load_round_trip(rerank_pipe: Pipeline, data: Postings, tmp_path: Path) -> None:
    cat, new = split(data, 20, seed=7)
    index = MatchIndex.build(rerank_pipe, cat)
    before = index.query(new)
    path = index.save(tmp_path / "idx")
    loaded = MatchIndex.load(path)
    pd.testing.assert_frame_equal(loaded.query(new), before)
    assert isinstance(loaded._state.titles.data, np.memmap)
    pd.testing.assert_frame_equal(MatchIndex.load(path, rerank_pipe).query(new), before)
    loaded.add(new)  # adding to a memory-mapped index writes nothing to disk
    loaded.save(path)  # and saving over itself is atomic
    assert len(MatchIndex.load(path)) == len(data)
    assert not list(tmp_path.glob("*.tmp"))


def test_wrong_model_or_version(rerank_pipe: Pipeline, union_pipe: Pipeline, data: Postings,
                                tmp_path: Path) -> None:
    path = MatchIndex.build(union_pipe, data).save(tmp_path / "idx")
    with pytest.raises(ValueError, match="another model"):
        MatchIndex.load(path, rerank_pipe)
    meta = json.loads((path / "index.json").read_text())
    meta["version"] = "0.0.1"
    (path / "index.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"built by shopee_match 0\.0\.1"):
        MatchIndex.load(path)
    with pytest.raises(FileNotFoundError, match="not a saved MatchIndex"):
        MatchIndex.load(tmp_path)


def test_threads(rerank_pipe: Pipeline, data: Postings) -> None:
    cat, new = split(data, 40, seed=8)
    index = MatchIndex.build(rerank_pipe, cat)
    parts = [new.subset(range(i, len(new), 4)) for i in range(4)]
    want = [index.query(p) for p in parts]
    start = threading.Barrier(4)

    def run(i: int) -> pd.DataFrame:
        start.wait()
        return index.query(parts[i % 4])

    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(run, range(8)))
    for i, g in enumerate(got):
        pd.testing.assert_frame_equal(g, want[i % 4])


def test_queries_during_add(union_pipe: Pipeline, data: Postings) -> None:
    cat, new = split(data, 30, seed=9)
    probe, extra = new.subset(range(10)), new.subset(range(10, 30))
    index = MatchIndex.build(union_pipe, cat)
    before = sets(index.query(probe))
    after_index = MatchIndex.build(union_pipe, Postings(pd.concat([cat.df, extra.df], ignore_index=True)))
    after = sets(after_index.query(probe))
    with ThreadPoolExecutor(3) as pool:
        futs = [pool.submit(index.query, probe) for _ in range(6)]
        index.add(extra)
        results = [sets(f.result()) for f in futs]
    assert all(r in (before, after) for r in results)
    assert sets(index.query(probe)) == after


def test_edge_cases(union_pipe: Pipeline, data: Postings) -> None:
    index = MatchIndex.build(union_pipe, data.subset(range(50)))
    assert index.query(data.subset([])).shape == (0, 2)
    assert len(index.add(data.subset([]))) == 50
    with pytest.raises(TypeError, match="Postings"):
        index.query(data.df)  # type: ignore[arg-type]
    assert "50 postings" in repr(index)


def test_unsupported_step(data: Postings) -> None:
    class Custom(NeighborMatcher):
        pass

    train = make_catalog(n_groups=20, images=False, seed=4)
    pipe = Pipeline(steps=[("t", TfidfEmbedder(), Custom(threshold=0.5))], tune=False).fit(train)
    with pytest.raises(TypeError, match="cannot index a Custom matcher"):
        MatchIndex.build(pipe, data)


def test_reranker_is_what_answers(rerank_pipe: Pipeline) -> None:
    from shopee_match.rerank import PairReranker

    assert isinstance(rerank_pipe.combiner_, PairReranker)


class HashedDense:
    """A stateless dense embedder: hashed character 3-grams, randomly projected to 32-d."""

    name = "hashed_dense"

    def fit(self, postings: Postings) -> HashedDense:
        return self

    def embed(self, postings: Postings) -> np.ndarray:
        from sklearn.feature_extraction.text import HashingVectorizer

        x = HashingVectorizer(analyzer="char_wb", ngram_range=(3, 3), n_features=2**12,
                              alternate_sign=False).transform(postings.titles)
        proj = np.random.default_rng(0).standard_normal((2**12, 32)).astype(np.float32)
        out = np.asarray(x @ proj, dtype=np.float32)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def test_dense_steps_with_catalogue_rows(data: Postings) -> None:
    # a symmetric union needs each catalogue posting's row (radius 1): new postings enter
    # catalogue rows of a dense space and a blended dense space, and replace one
    from shopee_match.neighbors.blend import BlendMatcher

    dense = HashedDense()
    pipe = Pipeline(steps=[("d", dense, NeighborMatcher(threshold=0.9, k=5, min_matches=2)),
                           ("qe", dense, BlendMatcher(threshold=0.95, k=5, n_blend=3))],
                    ensemble=Ensemble(symmetric=True), tune=False).fit(data)
    cat, new = split(data, 40, seed=10)
    index = MatchIndex.build(pipe, cat)
    assert index.radius == 1
    assert_batch_equal(pipe, data, index.query(new))
    df = cat.df.copy()
    df.loc[5, "title"] = new.df["title"].iloc[0]
    changed = Postings(df)
    index.add(changed.subset([5]), replace=True)
    both = Postings(pd.concat([changed.df, new.df], ignore_index=True))
    assert_batch_equal(pipe, both, index.query(new))


def test_open_vocabulary_embeds_new_postings_as_batch() -> None:
    from shopee_match.index._vocab import OpenVocabulary

    cat = make_catalog(n_groups=40, images=False, seed=30)
    new = make_catalog(n_groups=10, images=False, seed=31)  # other products: unseen terms
    both = Postings(pd.concat([cat.df, new.df.assign(posting_id="n" + new.df.posting_id)],
                              ignore_index=True))
    frozen = TfidfEmbedder().fit(cat)
    opened = OpenVocabulary.from_fitted(frozen, len(cat))
    x, terms, _ = opened.embed_with_terms(new)
    y = TfidfEmbedder().fit(both).embed(new)
    assert terms and x.shape[1] == opened.width + len(terms)
    np.testing.assert_allclose((x @ x.T).toarray(), (y @ y.T).toarray(), atol=1e-5)
    grown = opened.added(new)
    assert grown.width == x.shape[1] and grown.n_docs == len(both)
    again, more, _ = grown.embed_with_terms(new)
    assert not more and again.shape[1] == grown.width


def test_open_vocabulary_survives_add_and_save(rerank_pipe: Pipeline, data: Postings,
                                               tmp_path: Path) -> None:
    from shopee_match.index._vocab import OpenVocabulary

    cat, new = split(data, 30, seed=11)
    index = MatchIndex.build(rerank_pipe, cat)
    emb = index._state.embedders["tfidf"]
    assert isinstance(emb, OpenVocabulary)
    index.add(new)
    after = index._state.embedders["tfidf"]
    assert after.n_docs == len(data) and after.width >= emb.width
    loaded = MatchIndex.load(index.save(tmp_path / "idx"))
    got = loaded._state.embedders["tfidf"]
    assert (got.n_docs, got.width, got.extra) == (after.n_docs, after.width, after.extra)
    probe = make_catalog(n_groups=5, images=False, seed=40)
    probe = with_phash(Postings(probe.df.assign(posting_id="q" + probe.df.posting_id)), 40)
    pd.testing.assert_frame_equal(loaded.query(probe), index.query(probe))


def test_hash_lookup_equals_pairwise(monkeypatch: pytest.MonkeyPatch) -> None:
    from shopee_match.image.phash import hashes_to_vectors
    from shopee_match.index import _hash

    rng = np.random.default_rng(3)
    base = rng.integers(0, 2**63, size=40, dtype=np.uint64)
    codes = base[rng.integers(0, 40, size=400)] ^ (np.uint64(1) << rng.integers(
        0, 64, size=400).astype(np.uint64))
    emb = hashes_to_vectors([f"{int(c):016x}" for c in codes])
    space = _hash.HashSpace.from_vectors(emb[:300], radius=3, max_bucket=50)
    slots = np.r_[np.arange(300, 400), [7]]
    fresh = np.r_[emb[300:], emb[8:9]]
    want = space.plan(slots, fresh, 400).graph
    monkeypatch.setattr(_hash, "_BRUTE_PAIRS", 0)
    got = space.plan(slots, fresh, 400).graph
    assert want.nnz > 100 and (want != got).nnz == 0
