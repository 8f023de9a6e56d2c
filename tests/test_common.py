"""Checks every estimator shares: clone, params round trip, JSON-safe params, registration."""

from __future__ import annotations

import json

import pytest
from sklearn.base import clone

from shopee_match import (
    HashMatcher,
    NeighborMatcher,
    PhashEmbedder,
    TfidfEmbedder,
    TitlePreprocessor,
)
from shopee_match._persist import estimator_from_json, estimator_to_json
from shopee_match._validation import NotFittedError
from shopee_match.ensemble import Ensemble

ESTIMATORS = [
    TfidfEmbedder(word_weight=0.3, preprocessor=TitlePreprocessor(stem=False)),
    PhashEmbedder(source="column"),
    NeighborMatcher(threshold=0.7, k=10, min_matches=2),
    HashMatcher(max_distance=3),
    Ensemble(how="vote", min_votes=1),
    TitlePreprocessor(stop_words=["foo"], lemmatize=True),
]


@pytest.mark.parametrize("est", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_clone_and_params_round_trip(est):
    params = est.get_params(deep=False)
    twin = clone(est)
    assert type(twin) is type(est)
    for k, v in params.items():
        if hasattr(v, "get_params"):
            assert v.get_params() == twin.get_params(deep=False)[k].get_params()
        else:
            assert twin.get_params(deep=False)[k] == v


@pytest.mark.parametrize("est", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_json_spec_round_trip(est):
    spec = estimator_to_json(est)
    text = json.dumps(spec)  # must be plain JSON
    back = estimator_from_json(json.loads(text))
    assert type(back) is type(est)
    assert estimator_to_json(back) == spec


def test_unfitted_tfidf_raises(titles_catalog):
    with pytest.raises(NotFittedError, match="not fitted yet"):
        TfidfEmbedder().embed(titles_catalog)


@pytest.mark.parametrize(
    ("est", "message"),
    [
        (NeighborMatcher(threshold=2.0), "threshold"),
        (NeighborMatcher(k=0), "`k` must be >= 1"),
        (NeighborMatcher(min_matches=0), "min_matches"),
        (HashMatcher(max_distance=-1), "max_distance"),
    ],
)
def test_bad_matcher_params_raise_at_use(est, message):
    import numpy as np

    emb = np.eye(3, dtype=np.float32)
    with pytest.raises(ValueError, match=message):
        est.match(emb)
