"""``MatchIndex`` with a self-training reranker (the shipped model): the catalogue's
point is learnt at build, and a query adds its new postings' pairs past it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from shopee_match import MatchIndex, Pipeline
from shopee_match.index._selftrain import catalogue_df
from shopee_match.rerank import scan_pairs
from test_selftrain import marketplace


def _f1(table: pd.DataFrame, label: dict[str, int]) -> float:
    truth = pd.Series(label).groupby(pd.Series(label)).groups
    out = []
    for pid, m in zip(table["posting_id"], table["matches"]):
        got, want = set(m.split()), set(truth[label[pid]])
        out.append(2 * len(got & want) / (len(got) + len(want)))
    return float(np.mean(out))


def test_the_index_adds_the_pairs_past_the_catalogues_point(tmp_path: Path) -> None:
    cat = marketplace(seed=1, n_products=100)
    rows = np.arange(len(cat))
    old, new = cat.subset(rows[rows % 4 != 0]), cat.subset(rows[rows % 4 == 0])
    pipe = Pipeline.pretrained()
    index = MatchIndex.build(pipe, old)
    assert index.self_train_point is not None and pipe.combiner_.self_train  # unchanged
    plain = Pipeline.pretrained()
    plain.combiner_.set_params(self_train=False)
    base = MatchIndex.build(plain, old)
    assert base.self_train_point is None
    got, want = index.query(new), base.query(new)
    assert got["posting_id"].tolist() == want["posting_id"].tolist()
    sets = [(set(a.split()), set(b.split())) for a, b in zip(got["matches"], want["matches"])]
    assert all(b <= a for a, b in sets) and any(a > b for a, b in sets)  # only additions
    label = dict(zip(cat.df["posting_id"], cat.df["label_group"]))
    assert _f1(got, label) > _f1(want, label)
    # the added pairs are those past the point: every one is as alike as it says
    titles = dict(zip(cat.df["posting_id"], cat.titles))
    df = catalogue_df(old.titles)  # the index's word rarity
    for (a, b), pid in zip(sets, got["posting_id"]):
        for other in a - b:
            up = sp.csr_matrix(([1.0], ([0], [1])), shape=(2, 2))
            found = scan_pairs([titles[pid], titles[other]], up, sp.csr_matrix((2, 2)), df)
            assert len(found.rows) == 1 and found.sim[0] >= index.self_train_point
    # saved and loaded with its point; the caller's pipeline is unchanged
    index.save(tmp_path / "ix")
    again = MatchIndex.load(tmp_path / "ix")
    assert again.self_train_point == index.self_train_point
    assert again.query(new)["matches"].tolist() == got["matches"].tolist()


def test_add_counts_the_new_pairs_and_reads_the_point_again(tmp_path: Path) -> None:
    """An index built on a sliver of the catalogue has too little code evidence for a
    point; adding the rest counts the new postings' pairs and the point appears, near
    the one an index built on everything learns. Saved and loaded with its evidence."""
    cat = marketplace(seed=3, n_products=120)
    rows = np.arange(len(cat))
    first, rest = cat.subset(rows[rows % 10 == 0]), cat.subset(rows[rows % 10 != 0])
    pipe = Pipeline.pretrained()
    index = MatchIndex.build(pipe, first)
    assert index.self_train_evidence is not None
    before = index.self_train_evidence[0].sum()
    whole = MatchIndex.build(pipe, cat)
    assert whole.self_train_point is not None
    index.add(rest)
    counts = index.self_train_evidence[0].sum()
    assert counts > before
    assert abs(counts - whole.self_train_evidence[0].sum()) <= 0.25 * counts
    assert index.self_train_point is not None
    assert abs(index.self_train_point - whole.self_train_point) <= 0.05
    index.save(tmp_path / "ix")
    again = MatchIndex.load(tmp_path / "ix")
    assert again.self_train_point == index.self_train_point
    assert all((a == b).all() for a, b in zip(again.self_train_evidence,
                                             index.self_train_evidence))
