"""Fitting on several catalogues, and what carries from one catalogue to another."""

from __future__ import annotations

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
