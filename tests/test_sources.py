"""Catalogues pooled from several shops: the ``source`` column (``shopee_match.sources``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shopee_match import Pipeline, PostingsError, make_catalog, read_postings
from shopee_match.data import Postings
from shopee_match.metrics import graph_f1_scores
from shopee_match.sources import combine_by_source


def _pool(**shops: Postings) -> Postings:
    """Shops in one table: ids and label groups prefixed by shop, a ``source`` column."""
    frames = []
    for name, cat in shops.items():
        df = cat.df[["posting_id", "title", "label_group"]].copy()
        df["posting_id"] = name + ":" + df["posting_id"].astype(str)
        df["label_group"] = name + ":" + df["label_group"].astype(str)
        df["source"] = name
        frames.append(df)
    return Postings(pd.concat(frames, ignore_index=True), source="pool")


def _sets(g, rows: np.ndarray) -> list[set[int]]:
    sub = g[rows][:, rows].tocsr()
    return [set(sub.indices[sub.indptr[i]:sub.indptr[i + 1]].tolist()) for i in range(len(rows))]


def test_read_postings_reads_the_source_column(tmp_path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("posting_id,title,source\na,Red mug,shop1\nb,Blue mug,shop2\nc,Mug,shop1\n")
    p = read_postings(path)
    assert p.has_sources
    assert p.sources().tolist() == [0, 1, 0]
    path.write_text("posting_id,title,source\na,Red mug,shop1\nb,Blue mug,\n")
    with pytest.raises(PostingsError, match=r"row 2: empty `source`"):
        read_postings(path)
    path.write_text("posting_id,title\na,Red mug\n")
    assert not read_postings(path).has_sources


def test_a_shop_inside_a_pool_is_matched_as_alone() -> None:
    small = make_catalog(n_groups=60, per_group=(1, 4), images=False, seed=1)
    big = make_catalog(n_groups=250, per_group=(1, 2), images=False, seed=2)
    pool = _pool(small=small, big=big)
    pipe = Pipeline.pretrained()
    g = pipe.predict_graph(pool)
    rows = np.flatnonzero(pool.df["source"].to_numpy() == "small")
    inside, alone = _sets(g, rows), _sets(pipe.predict_graph(small), np.arange(len(small)))
    # postings with no partner in the other shop keep exactly the matches they get alone
    other = g[rows].tocsr()
    lonely = [i for i in range(len(rows)) if set(other[i].indices) <= set(rows.tolist())]
    assert len(lonely) > 0.9 * len(rows)
    assert all(inside[i] == alone[i] for i in lonely)
    # and the pool's F1 for that shop is its F1 alone (within what cross-shop pairs cost)
    f_pool = graph_f1_scores(g, pool.groups())[rows].mean()
    f_alone = graph_f1_scores(pipe.predict_graph(small), small.groups()).mean()
    assert f_pool == pytest.approx(f_alone, abs=0.02)
    # evaluate() reads the pool the same way
    assert pipe.evaluate(pool).loc["final", "f1"] == pytest.approx(
        graph_f1_scores(g, pool.groups()).mean(), abs=1e-9)


def test_offers_of_one_product_in_two_shops_still_match() -> None:
    cat = make_catalog(n_groups=120, per_group=(2, 4), images=False, seed=3)
    df = cat.df.copy()
    df["source"] = np.where(np.random.default_rng(0).random(len(df)) < 0.5, "s1", "s2")
    shops = Postings(df, source="two merchants")
    pipe = Pipeline.pretrained()
    g = pipe.predict_graph(shops).tocoo()
    src = shops.sources()
    cross = (src[g.row] != src[g.col]).sum()
    assert cross > len(shops) / 2  # most products have offers in both shops: pairs across
    f_sources = graph_f1_scores(g.tocsr(), shops.groups()).mean()
    f_plain = graph_f1_scores(pipe.predict_graph(cat), cat.groups()).mean()
    assert f_sources == pytest.approx(f_plain, abs=0.05)


def test_without_a_reranker_match_graphs_merge() -> None:
    cat = make_catalog(n_groups=40, per_group=(1, 3), images=False, seed=4)
    df = cat.df.copy()
    df["source"] = ["a"] * (len(df) // 2) + ["b"] * (len(df) - len(df) // 2)
    p = Postings(df)
    pipe = Pipeline.default(images=False, rerank=False).fit(cat)
    g = combine_by_source(pipe, pipe.step_graphs(p), p, min_postings=10)
    assert (g.diagonal() > 0).all()
    assert (g != g.T).nnz == 0


def test_exclusive_sources_keep_no_pair_inside_a_shop() -> None:
    """Shop feeds list a product once: with ``exclusive=True`` no pair inside a shop is
    kept, pairs across shops are, and F1 rises where the labels agree."""
    cat = make_catalog(n_groups=120, per_group=(2, 4), images=False, seed=6)
    df = cat.df.copy()
    # two offers of one product never come from one shop: deal each group's offers out
    df["source"] = "s" + (df.groupby("label_group").cumcount() % 4).astype(str)
    shops = Postings(df, source="feeds")
    pipe = Pipeline.pretrained()
    g = combine_by_source(pipe, pipe.step_graphs(shops), shops, exclusive=True).tocoo()
    src = shops.sources()
    inside = (src[g.row] == src[g.col]) & (g.row != g.col)
    assert inside.sum() == 0
    assert len(g.row) - len(shops) > len(shops) / 2  # plenty of pairs across shops
    plain = pipe.predict_graph(cat)
    f_ex = graph_f1_scores(g.tocsr(), shops.groups()).mean()
    assert f_ex >= graph_f1_scores(plain, cat.groups()).mean() - 1e-9


@pytest.mark.data
def test_amazon_google_pooled_with_pricerunner_keeps_its_f1_alone(shopee_dir) -> None:
    """Real shops: Amazon-Google's names pooled with PriceRunner offers lose F1 when
    read as one shop, and keep their F1 alone (within 0.02) with a ``source`` column."""
    data = shopee_dir.parent
    ag = read_postings(data / "amazon_google" / "postings.csv")
    pr = read_postings(data / "pricerunner" / "postings.csv")
    keep = np.isin(pr.groups(), np.random.default_rng(0).permutation(pr.groups().max() + 1)[:3000])
    pool = _pool(amazon_google=ag, pricerunner=pr.subset(np.flatnonzero(keep)))
    rows = np.flatnonzero(pool.df["source"].to_numpy() == "amazon_google")
    pipe = Pipeline.pretrained()
    alone = graph_f1_scores(pipe.predict_graph(ag), ag.groups()).mean()
    inside = graph_f1_scores(pipe.predict_graph(pool), pool.groups())[rows].mean()
    one_shop = Postings(pool.df.drop(columns="source"))
    blind = graph_f1_scores(pipe.predict_graph(one_shop), pool.groups())[rows].mean()
    assert inside == pytest.approx(alone, abs=0.02)
    assert inside > blind + 0.01


def test_cli_source_column_reads_another_name(tmp_path, capsys):
    """``--source-column shop`` reads a file's ``shop`` column as the source: the same
    matches as the file with that column named ``source``; a missing one is one line."""
    from shopee_match.cli import main

    cat = make_catalog(n_groups=70, per_group=(1, 4), images=False, seed=9)
    df = cat.df[["posting_id", "title"]].copy()
    df["shop"] = np.where(np.arange(len(df)) % 3 == 0, "a", "b")
    named, renamed = tmp_path / "named.csv", tmp_path / "renamed.csv"
    df.to_csv(named, index=False)
    df.rename(columns={"shop": "source"}).to_csv(renamed, index=False)
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    assert main(["match", str(named), "--source-column", "shop", "-o", str(a), "-q"]) == 0
    assert main(["match", str(renamed), "-o", str(b), "-q"]) == 0
    assert a.read_bytes() == b.read_bytes()
    capsys.readouterr()
    assert main(["match", str(named), "--source-column", "merchant", "-o", str(a)]) == 2
    err = capsys.readouterr().err.strip()
    assert "merchant" in err and "--source-column" in err and "\n" not in err


def test_cli_exclusive_sources_is_the_pipelines_exclusive_combine(tmp_path, capsys):
    """``match --exclusive-sources`` gives ``Pipeline(exclusive_sources=True)``'s matches:
    no pair inside a source; without a source column it is one line, exit 2."""
    from shopee_match.cli import main
    from shopee_match.neighbors.graph import graph_to_sets

    cat = make_catalog(n_groups=90, per_group=(2, 3), images=False, seed=12)
    df = cat.df[["posting_id", "title", "label_group"]].copy()
    df["source"] = "s" + (df.groupby("label_group").cumcount() % 3).astype(str)
    path, out = tmp_path / "feeds.csv", tmp_path / "sub.csv"
    df.drop(columns="label_group").to_csv(path, index=False)
    assert main(["match", str(path), "--exclusive-sources", "-o", str(out), "-q"]) == 0
    got = pd.read_csv(out)["matches"].str.split().map(set).tolist()
    shops = Postings(df)
    pipe = Pipeline.pretrained().set_params(exclusive_sources=True)
    ids = shops.df["posting_id"].to_numpy()
    want = [set(ids[s]) for s in graph_to_sets(pipe.predict_graph(shops))]
    assert got == want
    src = dict(zip(df["posting_id"], df["source"]))
    own = df["source"].tolist()
    assert all(src[p] != own[i] for i, m in enumerate(got) for p in m - {ids[i]})
    assert any(len(m) > 1 for m in got)
    out1 = tmp_path / "one.csv"
    assert main(["match", str(path), "--exclusive-sources", "--one-per-source", "-o",
                 str(out1), "-q"]) == 0
    one = pd.read_csv(out1)["matches"].str.split().map(set).tolist()
    assert all(a <= b for a, b in zip(one, got))
    assert all(len({src[p] for p in m}) == len(m) for m in one)  # one offer a shop
    capsys.readouterr()
    df.drop(columns=["label_group", "source"]).to_csv(path, index=False)
    assert main(["match", str(path), "--exclusive-sources", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "--exclusive-sources" in err and "source" in err and "\n" not in err


def test_one_per_source_links_each_posting_to_one_offer_a_shop() -> None:
    """``exclusive="one"``: each posting keeps at most one partner in each other source,
    the most probable, and never one in its own; a bad value is a clear error."""
    cat = make_catalog(n_groups=100, per_group=(2, 3), images=False, seed=13)
    df = cat.df.copy()
    df["source"] = "s" + (df.groupby("label_group").cumcount() % 3).astype(str)
    shops = Postings(df)
    pipe = Pipeline.pretrained()
    graphs = pipe.step_graphs(shops)
    one = combine_by_source(pipe, graphs, shops, exclusive="one").tocoo()
    ex = combine_by_source(pipe, graphs, shops, exclusive=True)
    src = shops.sources()
    off = one.row != one.col
    assert (src[one.row[off]] != src[one.col[off]]).all()
    per = pd.Series(1, index=pd.MultiIndex.from_arrays([one.row[off], src[one.col[off]]]))
    assert per.groupby(level=[0, 1]).size().max() == 1
    assert ex.multiply(one.tocsr()).nnz == one.nnz  # a subset of the exclusive matches
    g = shops.groups()
    assert graph_f1_scores(one.tocsr(), g).mean() >= graph_f1_scores(ex, g).mean() - 0.01
    with pytest.raises(ValueError, match="'one'"):
        combine_by_source(pipe, graphs, shops, exclusive="two")


def _greedy_one_at_a_time(g, proba, codes: np.ndarray) -> set[tuple[int, int]]:
    """The unique mapping by its definition: pairs in order of probability (ties by
    position), each kept while neither side has a partner in the other's source yet."""
    import scipy.sparse as sp

    both = sp.triu(sp.csr_matrix(g) + sp.csr_matrix(g).T, 1).tocoo()
    dense = sp.csr_matrix(proba).toarray()
    pairs = sorted(zip(both.row.tolist(), both.col.tolist()), key=lambda ij: (-dense[ij], ij))
    taken: set[tuple[int, int]] = set()
    kept = set()
    for i, j in pairs:
        a, b = (i, int(codes[j])), (j, int(codes[i]))
        if codes[i] != codes[j] and a not in taken and b not in taken:
            taken.update((a, b))
            kept.add((i, j))
    return kept


@pytest.mark.parametrize("seed", range(12))
def test_one_per_source_is_the_greedy_unique_mapping(seed: int) -> None:
    """The array rounds of :func:`one_per_source` keep the very pairs the one-pair-at-a-
    time greedy pass keeps, ties in probability included, for 1 to 4 sources."""
    import scipy.sparse as sp

    from shopee_match.sources import one_per_source

    rng = np.random.default_rng(seed)
    n, m, k = int(rng.integers(2, 120)), int(rng.integers(0, 600)), int(rng.integers(1, 5))
    r, c = rng.integers(0, n, m), rng.integers(0, n, m)
    p = (rng.choice([0.2, 0.5, 0.9], m) if seed % 2 else rng.random(m)).astype(np.float32)
    proba = sp.csr_matrix((np.r_[p, p], (np.r_[r, c], np.r_[c, r])), shape=(n, n))
    proba.sum_duplicates()
    codes = rng.integers(0, k, n)
    got = sp.triu(one_per_source(proba != 0, proba, codes), 1).tocoo()
    assert set(zip(got.row.tolist(), got.col.tolist())) == _greedy_one_at_a_time(
        proba != 0, proba, codes)
    assert (one_per_source(proba != 0, proba, codes).diagonal() == 1).all()
