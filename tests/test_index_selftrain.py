"""``MatchIndex`` with a self-training reranker (the shipped model): a query's small
neighbourhood is combined without self-training, and the caller's pipeline is unchanged."""

from __future__ import annotations

import numpy as np

from shopee_match import MatchIndex, Pipeline
from test_selftrain import marketplace


def test_the_index_combines_a_neighbourhood_without_self_training() -> None:
    cat = marketplace(seed=1, n_products=100)
    rows = np.arange(len(cat))
    old, new = cat.subset(rows[rows % 4 != 0]), cat.subset(rows[rows % 4 == 0])
    pipe = Pipeline.pretrained()
    got = MatchIndex.build(pipe, old).query(new)
    assert pipe.combiner_.self_train and pipe.combiner_.get_params()["self_train"]
    plain = Pipeline.pretrained()
    plain.combiner_.set_params(self_train=False)
    want = MatchIndex.build(plain, old).query(new)
    assert got["posting_id"].tolist() == want["posting_id"].tolist()
    assert got["matches"].tolist() == want["matches"].tolist()
    assert (got["matches"].str.count(" ") > 0).mean() > 0.5  # most new offers matched
