"""The fitted default (TF-IDF learnt on the postings matched, blended and phash candidates,
the two-stage pair reranker) on a 2-process ``LocalCluster``: the single-machine output."""

from __future__ import annotations

import copy
import itertools
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

pytest.importorskip("dask.dataframe")
pytest.importorskip("distributed")

import dask.dataframe as dd

from shopee_match import HashMatcher, Pipeline, Postings, TfidfEmbedder, read_postings
from shopee_match.cli import main
from shopee_match.data import train_test_split_groups
from shopee_match.datasets import make_titles
from shopee_match.distributed import predict_dask
from shopee_match.distributed._io import Part
from shopee_match.distributed._phash import hash_candidates
from shopee_match.distributed._tfidf import (
    count_terms,
    counted_rows,
    fit_predict_tfidf,
    frame_tokens,
    merge_counts,
    partition_counts,
)
from shopee_match.metrics import f1_score

pytestmark = pytest.mark.dask


def _frame(n_groups: int, seed: int) -> pd.DataFrame:
    """Generated postings with phashes: most of a group share one, some 1-2 bits off,
    some unrelated, a few missing."""
    df = make_titles(n_groups, seed=seed)
    rng = np.random.default_rng(seed)
    base = {g: int(rng.integers(0, 2**63)) for g in df["label_group"].unique()}
    hashes = []
    for g in df["label_group"]:
        h, u = base[g], rng.random()
        if u < 0.2:
            h ^= (1 << int(rng.integers(0, 64))) | (1 << int(rng.integers(0, 64)))
        elif u < 0.3:
            h = int(rng.integers(0, 2**63))
        hashes.append(f"{h:016x}" if rng.random() > 0.05 else None)
    df["image_phash"] = hashes
    return df


@pytest.fixture(scope="module")
def test_frame() -> pd.DataFrame:
    return _frame(250, seed=2)  # ~880 postings


@pytest.fixture(scope="module")
def fitted() -> Pipeline:
    """The default recipe with the reranker's prefilter, fitted on other generated
    groups (~530 postings)."""
    pipe = Pipeline.default()
    pipe.ensemble.set_params(prefilter_recall=0.995)
    return pipe.fit(Postings(_frame(150, seed=1)))


def _true_f1(sub: pd.DataFrame, frame: pd.DataFrame) -> float:
    """Mean F1 of a submission against the frame's label groups."""
    truth = Postings(frame)
    ids = truth.posting_id
    want = [set(ids[m]) for m in truth.true_matches()]
    return f1_score(want, [set(m.split()) for m in sub["matches"]])


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert a["posting_id"].tolist() == b["posting_id"].tolist()
    assert a["matches"].tolist() == b["matches"].tolist()


def test_tfidf_vocabulary_from_partitions_is_one_machines(test_frame):
    """Counting per partition and summing gives the vocabulary and idf of all titles at
    once: the same vectors, bit for bit, with pruning too."""
    for params in ({}, {"min_df": 2, "max_features": 800}):
        emb = TfidfEmbedder(fit_on="predict", **params)
        pipe = Pipeline([("tfidf", emb, HashMatcher())], tune=False)
        parts = np.array_split(np.arange(len(test_frame)), 4)
        counts = [count_terms(test_frame.iloc[p], pipe, titles=True) for p in parts]
        merged = counts[0]
        for c in counts[1:]:
            merged = merge_counts(merged, c)
        got = fit_predict_tfidf(pipe, merged).steps[0][1]
        assert got.fit_on == "train" and emb.fit_on == "predict"  # the original is kept
        postings = Postings(test_frame)
        want = emb.fit(postings).embed(postings)
        x = got.embed(postings)
        assert x.shape == want.shape and (x != want).nnz == 0
        # each partition embedded from the pass's own count matrices: the same rows
        for p in parts:
            kept = partition_counts(test_frame.iloc[p], pipe)
            rows = counted_rows(kept[0], got)
            assert rows is not None and kept[0]["steps"] == ["tfidf"]
            y = got.embed_counts(rows)
            assert y.shape == (len(p), want.shape[1]) and (y != want[p]).nnz == 0
    assert merged["n"] == len(test_frame)
    assert merged["titles"]["ma"] >= 0  # title tokens counted for the reranker
    tokens = [frame_tokens(test_frame.iloc[p]) for p in parts]
    assert sum((count_terms(test_frame.iloc[p], pipe, titles=t)["titles"]
                for p, t in zip(parts, tokens)), Counter()) == merged["titles"]


def test_default_fitted_equals_single_machine(client, fitted, test_frame):
    assert fitted.combiner_.prefilter_ is not None  # the partitions prefilter as one machine
    expected = fitted.predict(Postings(test_frame))
    out = predict_dask(fitted, dd.from_pandas(test_frame, npartitions=3), client=client,
                         partition_rows=300)
    _same(out, expected)
    stats = out.attrs["shopee_match"]
    assert stats["n_partitions"] == 3 and stats["n_postings"] == len(test_frame)
    assert {"vocabulary", "embed", "candidates", "rerank", "assemble"} <= set(stats["timings"])
    assert set(stats["ties_at_k"]) == {"tfidf", "tfidf_qe"}
    # the pairs touching each partition, both directions: at least every candidate pair
    assert stats["pairs_scored"] >= 2 * len(test_frame)


def _numba_kernels(pipe: Pipeline) -> Pipeline:
    """``pipe`` with its k-NN searches on the compiled kernel (equal similarities: the
    smaller id first, as the Dask merge keeps them; the NumPy kernel keeps either)."""
    for _, _, matcher in pipe.steps:
        if hasattr(matcher, "backend_kwargs"):
            matcher.backend_kwargs = {**(matcher.backend_kwargs or {}), "kernel": "numba"}
    return pipe


def test_block_searches_planned_as_the_catalogue(test_frame):
    """A TF-IDF search cut into block pairs (the Dask exact search) gives the whole
    search's candidate similarities bit for bit when every block is planned with the
    catalogue's column counts; each block's own plan (dense head) differs."""
    pytest.importorskip("numba")
    from shopee_match import NeighborMatcher
    from shopee_match.distributed._search import _add_counts, _counts, merge_topk, pair_topk
    from shopee_match.neighbors._sparse import SparseBackend
    from shopee_match.neighbors.graph import graph_from_knn

    x = sp.csr_matrix(TfidfEmbedder().fit_embed(Postings(test_frame)))
    matcher = NeighborMatcher(k=20, backend="sparse", backend_kwargs={"kernel": "numba"})
    want = matcher.candidates(x)
    bounds = [0, 200, 500, x.shape[0]]
    blocks = list(itertools.pairwise(bounds))
    whole_head = SparseBackend().fit(x).head_cols_
    assert any(not np.array_equal(SparseBackend().fit(x[a:b]).head_cols_, whole_head)
               for a, b in blocks)
    counts = None
    for a, b in blocks:
        part = Part(ids=np.arange(a, b), offset=a, embs={"t": x[a:b]})
        counts = _counts(part, "t") if counts is None else _add_counts(counts, _counts(part, "t"))
    assert counts is not None and counts[1] == x.shape[0]
    tops = []
    for a, b in blocks:
        top = None
        for c, d in blocks:
            t = pair_topk(x[a:b], x[c:d], matcher, c, floor=False, catalogue=counts)
            top = t if top is None else merge_topk(top, t, 20)
        tops.append(top)
    got = graph_from_knn(np.vstack([t[0] for t in tops]), np.vstack([t[1] for t in tops]),
                         n=x.shape[0])
    assert want.nnz > 10 * x.shape[0]
    assert np.array_equal(got.indptr, want.indptr) and np.array_equal(got.indices, want.indices)
    assert np.array_equal(got.data, want.data)  # bit for bit


@pytest.mark.parametrize(("block_rows", "hold"), [(None, None), (None, False), (7, False),
                                                  (100, True)])
def test_partitions_score_each_pair_once_and_give_one_machines_submission(
        client, fitted, test_frame, block_rows, hold):
    """Four partitions, their pairs featured all at once or in blocks of 7 or 100 own
    rows, the features held between the stages or rebuilt at each: the submission of
    ``Pipeline.predict``, each candidate pair scored once per stage (by its first
    posting's owner), as the block engine scores them."""
    pytest.importorskip("numba")
    from shopee_match.rerank.pair_features import PairContext, candidate_pairs

    pipe = _numba_kernels(copy.deepcopy(fitted))
    postings = Postings(test_frame)
    expected = pipe.predict(postings)
    out = predict_dask(pipe, dd.from_pandas(test_frame, npartitions=4), client=client,
                       partition_rows=250, block_rows=block_rows, hold_features=hold)
    _same(out, expected)
    stats = out.attrs["shopee_match"]
    # a small catalogue's features fit the workers' memory many times: held
    assert stats["rerank_features_held"] is (True if hold is None else hold)
    assert stats["n_partitions"] == 4
    if block_rows is None:  # small partitions: one block each
        assert stats["rerank_blocks"] == 4
    else:  # each partition's rows cut into blocks of at most block_rows
        n = len(test_frame)
        assert n / block_rows <= stats["rerank_blocks"] <= n / block_rows + 4
    graphs = pipe.step_graphs(postings)
    r, c = candidate_pairs(graphs)
    keep = pipe.combiner_.keep_pairs(PairContext(graphs).graphs, r, c)
    assert keep is not None and 0 < keep.sum() < len(r)  # the prefilter drops some
    assert stats["pairs_scored"] == int(keep.sum())  # the pairs one machine scores, once


@pytest.mark.parametrize("explicit", [True, False])
def test_pretrained_with_grow_through_the_cli(client, test_frame, tmp_path, explicit):
    """The shipped model (grow=0.5: match sets compared across partitions) from files,
    named by its folder or by leaving out --model."""
    from shopee_match._recipes import pretrained_path

    pipe = Pipeline.pretrained()
    assert pipe.combiner_.grow is not None
    expected = pipe.predict(Postings(test_frame))
    for i, rows in enumerate(np.array_split(np.arange(len(test_frame)), 3)):
        test_frame.iloc[rows].to_csv(tmp_path / f"p{i}.csv", index=False)
    out = tmp_path / "sub.csv"
    model = ["--model", str(pretrained_path("general"))] if explicit else []
    rc = main(["match", str(tmp_path / "p*.csv"), *model,
               "-o", str(out), "--scheduler", client.scheduler.address, "--quiet"])
    assert rc == 0
    _same(pd.read_csv(out, dtype=str, keep_default_na=False), expected)


def test_growth_rounds_across_partitions_are_one_machines(client):
    """The shipped model grows match sets until a round adds nothing: across partitions
    round by round, the same submission as one machine, in more than one round, and
    better than one round on the products with more offers than neighbours searched."""
    from test_transfer import large_groups

    frame = large_groups([(200, (1, 3)), (3, (60, 90))], seed=41)
    pipe = Pipeline.pretrained()
    assert pipe.combiner_.grow_rounds is None
    expected = pipe.predict(Postings(frame))
    out = predict_dask(pipe, dd.from_pandas(frame, npartitions=3), client=client)
    _same(out.reset_index(drop=True), expected)
    assert out.attrs["shopee_match"]["grow_rounds"] > 1
    once = copy.deepcopy(pipe)
    once.combiner_.set_params(grow_rounds=1)
    big = frame["label_group"].str.startswith("s1:").to_numpy()
    truth = frame.groupby("label_group")["posting_id"].agg(set)[frame["label_group"]].tolist()

    def f1_big(sub: pd.DataFrame) -> float:
        got = [set(m.split()) for m in sub["matches"]]
        return f1_score([t for t, b in zip(truth, big) if b], [g for g, b in zip(got, big) if b])

    assert f1_big(expected) > f1_big(once.predict(Postings(frame))) + 0.05


@pytest.mark.parametrize("one_task_max", [0, 10**9])
@pytest.mark.parametrize("spread", [False, True])
def test_hash_candidates_keep_the_bucket_rules(client, spread, one_task_max):
    """Pairs within radius 10 as HashMatcher.candidates finds them, with its rules for
    placeholder hashes and, for hashes spread over the space, for skipped chunk
    buckets of more than max_bucket hashes; through the chunk buckets
    (``one_task_max=0``) or one task comparing every pair."""
    from shopee_match.image.phash import hashes_to_vectors
    from shopee_match.neighbors.hamming import pack_bits

    rng = np.random.default_rng(0)
    if spread:  # random hashes, each with a copy 2 bits off
        base = rng.integers(0, 2**63, 300)
        codes = [int(b) ^ (0 if k == 0 else (1 << int(rng.integers(0, 64))) | 1)
                 for b in base for k in range(2)]
    else:  # clusters: 40 hashes, each with copies up to 16 low bits off
        base = rng.integers(0, 2**63, 40)
        codes = [int(base[i % 40]) ^ (int(rng.integers(0, 2**16)) if i % 3 else 0)
                 for i in range(600)]
    codes += [7] * 12  # a placeholder: more postings than max_bucket share it
    emb = hashes_to_vectors([f"{c:016x}" for c in codes])
    matcher = HashMatcher(max_distance=0, max_bucket=10)
    want = matcher.candidates(emb, max_distance=10)
    bounds = [0, 150, 400, len(codes)]
    parts = []
    for lo, hi in itertools.pairwise(bounds):
        c, v = pack_bits(emb[lo:hi])
        parts.append(client.scatter(Part(ids=np.arange(lo, hi), offset=lo,
                                         embs={"phash": (c, v, 64)})))
    rows = client.gather(hash_candidates(client, parts, np.array(bounds), "phash",
                                         matcher, radius=10, one_task_max=one_task_max))
    got = sp.vstack(rows, format="csr")
    assert want.nnz > 0
    assert (got != want).nnz == 0 and np.array_equal(got.indices, want.indices)


def test_ivf_candidates_stay_close(client, fitted, test_frame):
    """Candidates searched in IVF cells (for catalogues too large for exact search)."""
    expected = fitted.predict(Postings(test_frame))
    out = predict_dask(fitted, dd.from_pandas(test_frame, npartitions=3), client=client,
                         method="ivf", cell_size=150, n_probe=2)
    assert out["posting_id"].tolist() == expected["posting_id"].tolist()
    stats = out.attrs["shopee_match"]
    assert stats["ivf_tfidf"]["n_cells"] > 1 and stats["ivf_tfidf_qe"]["n_cells"] > 1
    assert _true_f1(out, test_frame) >= _true_f1(expected, test_frame) - 0.03


def test_ivf_candidates_probed_to_the_recall_target(client, fitted, test_frame):
    """Left to choose (``n_probe=None``), each k-NN step probes until the label-free
    recall of the exact top-k reaches ``ivf_recall``: the F1 of exact candidates, within
    0.01 (small cells: one probe would miss many neighbours)."""
    expected = fitted.predict(Postings(test_frame))
    out = predict_dask(fitted, dd.from_pandas(test_frame, npartitions=3), client=client,
                       method="ivf", cell_size=100, ivf_recall=0.99)
    stats = out.attrs["shopee_match"]
    for step in ("ivf_tfidf", "ivf_tfidf_qe"):
        ivf = stats[step]
        assert ivf["recall_target"] == 0.99 and ivf["n_probe"] > 1
        assert ivf["probes_tried"][1] < 0.99 and ivf["recall_estimate"] >= 0.99
    assert _true_f1(out, test_frame) >= _true_f1(expected, test_frame) - 0.01


def test_reranked_settings_without_a_distributed_form(client, fitted, test_frame):
    ddf = dd.from_pandas(test_frame, npartitions=2)
    with pytest.raises(NotImplementedError, match="method='cuml'"):
        predict_dask(fitted, ddf, client=client, method="cuml")
    other = Pipeline.pretrained()
    other.combiner_.adapt_prior = True
    with pytest.raises(NotImplementedError, match="adapt_prior"):
        predict_dask(other, ddf, client=client)


@pytest.mark.data
def test_shopee_titles_and_phash_same_f1(client, shopee_dir):
    """Real titles and phashes: the shipped model on Dask gives one machine's submission."""
    p = read_postings(shopee_dir / "train_dev.csv")
    _, part = train_test_split_groups(p, 0.12, 0)
    expected = Pipeline.pretrained().predict(part)
    out = predict_dask(Pipeline.pretrained(), dd.from_pandas(part.df, npartitions=3), client=client)
    ids = part.posting_id
    truth = [set(ids[m]) for m in part.true_matches()]
    f_one = f1_score(truth, [set(m.split()) for m in expected["matches"]])
    f_dask = f1_score(truth, [set(m.split()) for m in out["matches"]])
    assert f_one == f_dask
    _same(out, expected)  # every match set (the candidate similarities bit for bit)


def test_workers_get_the_trees_on_one_thread_the_caller_keeps_its_own():
    from shopee_match.distributed._reranked import _one_tree_thread

    pipe = Pipeline.pretrained()
    assert pipe.combiner_.n_jobs is None
    sent = _one_tree_thread(pipe)
    assert sent.combiner_.n_jobs == 1
    assert pipe.combiner_.n_jobs is None  # the caller's pipeline is unchanged
    assert sent.combiner_.threshold_ == pipe.combiner_.threshold_
    assert _one_tree_thread(sent) is sent


def test_features_are_held_when_they_fit_a_share_of_the_workers_memory(client, fitted):
    """A stacked reranker's features are held when pairs x features x 8 B fit the share
    of the workers' memory limits (of the machine's where they have none); a one-stage
    model has nothing to hold."""
    import psutil

    from shopee_match.distributed._rerank import holds_features

    rr = fitted.combiner_
    workers = client.scheduler_info()["workers"].values()
    limits = [int(w.get("memory_limit") or 0) for w in workers]
    total = sum(limits) if min(limits) > 0 else psutil.virtual_memory().total
    fits = int(0.25 * total // (8 * len(rr.feature_names_)))
    assert holds_features(client, rr, fits)
    assert not holds_features(client, rr, fits + 1)
    assert not holds_features(client, rr, 1, share=0.0)
    one = copy.copy(rr)
    one.n_stages = 1
    assert not holds_features(client, one, 1)
