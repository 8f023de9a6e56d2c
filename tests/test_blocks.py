"""The block engine: candidate pairs scored a block of postings at a time give the
answers of all at once, and memory budgets are read as a user writes them."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from shopee_match import Pipeline, make_catalog
from shopee_match._memory import block_pairs, default_budget, parse_memory
from shopee_match.data import train_test_split_groups
from shopee_match.neighbors.graph import row_blocks, symmetric_graph, transposed_positions
from shopee_match.rerank import PairReranker
from shopee_match.rerank._fit import stage_features
from shopee_match.rerank.pair_features import candidate_pairs, pair_features, pair_pattern


def _all_at_once(rr: PairReranker, cands: dict[str, sp.csr_matrix], titles: list[str]) -> sp.csr_matrix:
    """The reranker's probabilities computed the straightforward way: every pair's
    features in one matrix, each stage's graph features appended to it."""
    r, c = candidate_pairs(cands)
    n = next(iter(cands.values())).shape[0]
    x, _ = pair_features(cands, r, c, titles, n_jobs=1)
    proba = sp.csr_matrix((n, n), dtype=np.float32)
    for stage, booster in enumerate(rr.boosters_):
        if stage:
            x = np.hstack([x, stage_features(proba, r, c, stage - 1)[0]])
        proba = mean_graph(np.asarray(booster.predict(x), dtype=np.float64), r, c, n)
    return proba


def mean_graph(p: np.ndarray, r: np.ndarray, c: np.ndarray, n: int) -> sp.csr_matrix:
    """(P + P.T) / 2 spelled out with SciPy's sparse sum: float64 sums, float32 means."""
    g = sp.csr_matrix((p.astype(np.float64), (r, c)), shape=(n, n))
    return sp.csr_matrix((g + g.T) * 0.5, dtype=np.float32)


def test_symmetric_graph_one_function_the_same_bits_every_way() -> None:
    """Training and the review page (pairs in any order), the block engine (a canonical
    symmetric pattern, chunked, on its own index arrays) and SciPy's sum agree bit for bit,
    pairs whose probabilities sum to 0 left out."""
    rng = np.random.default_rng(3)
    n = 300
    a = sp.random(n, n, density=0.04, random_state=4, format="csr")
    pattern = sp.csr_matrix(((a + a.T) != 0).astype(bool))
    pattern.setdiag(False)
    pattern.eliminate_zeros()
    pattern.sort_indices()
    r = np.repeat(np.arange(n), np.diff(pattern.indptr))
    c = pattern.indices.astype(np.int64)
    p = rng.random(len(r))
    p[rng.random(len(r)) < 0.2] = 0.0  # one side 0 ...
    back = transposed_positions(pattern)
    p[back[:40]] = 0.0
    p[:40] = 0.0  # ... and pairs whose both sides are 0
    want = mean_graph(p, r, c, n)
    assert want.nnz < len(p)  # some pairs summed to 0 and were dropped
    shuffled = rng.permutation(len(r))
    by_pairs = symmetric_graph(sp.coo_matrix((p[shuffled], (r[shuffled], c[shuffled])), shape=(n, n)))
    on_pattern = symmetric_graph(sp.csr_matrix((p, pattern.indices, pattern.indptr), shape=(n, n)),
                                 back, chunk=97)
    for got in (by_pairs, on_pattern):
        assert got.dtype == np.float32 and got.nnz == want.nnz
        got.sort_indices()
        assert np.array_equal(got.indptr, want.indptr) and np.array_equal(got.indices, want.indices)
        assert np.array_equal(got.data.view(np.uint32), want.data.view(np.uint32))
    # pairs stored one way only count the missing direction as 0
    one_way = symmetric_graph(sp.coo_matrix((np.array([0.3]), ([0], [1])), shape=(2, 2)))
    assert one_way.toarray().tolist() == [[0.0, np.float32(0.15)], [np.float32(0.15), 0.0]]


@pytest.fixture(scope="module")
def shipped_case() -> tuple[Pipeline, dict[str, sp.csr_matrix], list[str]]:
    p = make_catalog(n_groups=60, per_group=(1, 6), images=False, seed=5)
    pipe = Pipeline.pretrained()
    return pipe, pipe.step_graphs(p), list(p.titles)


@pytest.mark.parametrize("block", [1, 7, None])
def test_shipped_model_blocks_equal_all_at_once(shipped_case, block: int | None) -> None:
    pipe, cands, titles = shipped_case
    rr = pipe.combiner_
    want = _all_at_once(rr, cands, titles)
    got = rr.predict_proba_graph(cands, titles, block_size=block)
    assert got.nnz == want.nnz > 100
    assert (got != want).nnz == 0  # bit for bit


def test_pair_budget_blocks_equal_all_at_once(shipped_case) -> None:
    pipe, cands, titles = shipped_case
    rr = pipe.combiner_
    want = rr.predict_proba_graph(cands, titles)
    got = rr.predict_proba_graph(cands, titles, max_pairs=50)
    assert (got != want).nnz == 0


def test_three_stages_blocks_equal_all_at_once() -> None:
    """A third stage reads both earlier stages' graphs: blocks (features recomputed
    per stage) and one block (features kept) agree with the straightforward sum."""
    p = make_catalog(n_groups=90, per_group=(2, 5), images=False, seed=3)
    train, test = train_test_split_groups(p, test_size=0.4, random_state=0)
    pipe = Pipeline.pretrained()
    rr = PairReranker(n_stages=3, max_iter=15, n_jobs=1).fit(
        pipe.step_graphs(train), train.groups(), list(train.titles))
    cands = pipe.step_graphs(test)
    want = _all_at_once(rr, cands, list(test.titles))
    for block in (3, None):
        got = rr.predict_proba_graph(cands, list(test.titles), block_size=block)
        assert (got != want).nnz == 0


@pytest.mark.parametrize("kwargs", [{"block_size": 1}, {"block_size": 7}, {"memory": "64MB"}])
def test_pipeline_predict_same_submission_any_block(kwargs: dict) -> None:
    p = make_catalog(n_groups=40, per_group=(1, 5), images=False, seed=8)
    pipe = Pipeline.pretrained()
    want = pipe.predict(p)
    with pytest.warns(UserWarning, match="memory budget") if "memory" in kwargs else _no_warn():
        got = pipe.predict(p, **kwargs)
    assert got.equals(want)
    assert (got.matches.str.count(" ") > 0).any()  # some postings are matched to others


class _no_warn:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def test_pair_pattern_lists_candidate_pairs_in_order(shipped_case) -> None:
    _, cands, _ = shipped_case
    pat = pair_pattern(cands)
    r, c = candidate_pairs(cands)
    rows = np.repeat(np.arange(pat.shape[0]), np.diff(pat.indptr))
    assert np.array_equal(rows, r) and np.array_equal(pat.indices, c)


def test_row_blocks_cover_every_row_once_within_limits() -> None:
    indptr = np.concatenate([[0], np.cumsum(np.random.default_rng(0).integers(0, 9, 200))])
    blocks = row_blocks(indptr, block_rows=13, max_pairs=20)
    covered = np.concatenate([np.arange(lo, hi) for lo, hi in blocks])
    assert np.array_equal(covered, np.arange(200))
    for lo, hi in blocks:
        assert hi - lo <= 13
        assert indptr[hi] - indptr[lo] <= 20 or hi - lo == 1


def test_parse_memory_reads_sizes_and_refuses_nonsense() -> None:
    assert parse_memory("2GB") == 2 * 2**30
    assert parse_memory("1.5g") == int(1.5 * 2**30)
    assert parse_memory(None) == default_budget() > 0
    with pytest.raises(ValueError, match="not a size"):
        parse_memory("lots")
    with pytest.raises(ValueError, match="below 64MB"):
        parse_memory("1MB")
    with pytest.raises(TypeError):
        parse_memory(True)  # type: ignore[arg-type]


def test_block_pairs_grows_with_the_budget() -> None:
    small = block_pairs(parse_memory("64GB"), 4096)
    large = block_pairs(parse_memory("128GB"), 4096)
    assert large > small > 2**14


def test_catalogue_beyond_the_machine_is_refused_up_front() -> None:
    from shopee_match._memory import check_fits, total_memory

    n = int(total_memory() // 1024) + 1  # at 1 KiB a posting, more than the machine holds
    with pytest.raises(MemoryError, match=r"GiB.*Dask"):
        check_fits(n, parse_memory("2GB"), per_posting=1024)
    with pytest.warns(UserWarning, match="more than the memory budget"):
        check_fits(n // 8, parse_memory("64MB"), per_posting=1024)


def test_cli_match_memory_budget_same_submission(tmp_path, capsys) -> None:
    from shopee_match.cli import main

    csv = tmp_path / "catalogue.csv"
    make_catalog(n_groups=45, per_group=(1, 5), images=False, seed=2).df.to_csv(csv, index=False)
    default, small = tmp_path / "default.csv", tmp_path / "small.csv"
    assert main(["match", str(csv), "-o", str(default), "-q"]) == 0
    capsys.readouterr()
    assert main(["match", str(csv), "-o", str(small), "--memory", "64MB"]) == 0
    assert "memory budget" in capsys.readouterr().err  # the budget is spent: said, and on
    assert small.read_bytes() == default.read_bytes()
    bad = tmp_path / "bad.csv"
    assert main(["match", str(csv), "-o", str(bad), "--memory", "lots"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "'lots' is not a size" in err and "\n" not in err
    assert not bad.exists()
