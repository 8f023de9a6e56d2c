"""Per-posting F1: properties (hypothesis) and agreement with the graph version."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from shopee_match import f1_score, f1_scores
from shopee_match.metrics import graph_f1_scores, graph_precision_recall_f1, precision_recall_f1

ids = st.sets(st.integers(0, 20), max_size=10)
pairs = st.lists(st.tuples(ids, ids), min_size=1, max_size=20)


@given(pairs)
def test_f1_in_unit_interval_and_symmetric(rows):
    true = [t for t, _ in rows]
    pred = [p for _, p in rows]
    s = f1_scores(true, pred)
    assert ((s >= 0) & (s <= 1)).all()
    assert np.allclose(s, f1_scores(pred, true))


@given(pairs)
def test_f1_is_one_exactly_when_equal(rows):
    true = [t for t, _ in rows]
    pred = [p for _, p in rows]
    s = f1_scores(true, pred)
    equal = np.array([t == p for t, p in rows])
    assert ((s == 1.0) == equal).all()
    assert f1_score(true, true) == 1.0


@given(st.lists(st.integers(0, 9), min_size=1, max_size=12), ids)
def test_f1_invariant_to_order_and_duplicates(pred_list, true):
    shuffled = list(reversed(pred_list)) + pred_list  # reordered, every id twice
    assert f1_scores([true], [pred_list])[0] == f1_scores([true], [shuffled])[0]


def test_known_values_and_string_sets():
    assert f1_score([{"a", "b"}], ["a b"]) == 1.0
    p, r, f = precision_recall_f1([["a", "b", "c", "d"]], ["a b x"])
    assert p[0] == pytest.approx(2 / 3) and r[0] == pytest.approx(0.5)
    assert f[0] == pytest.approx(2 * 2 / 7)
    assert f1_scores([[]], [[1]])[0] == 0.0 and f1_scores([[]], [[]])[0] == 1.0


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="one match set per posting"):
        f1_score([[1]], [[1], [2]])


@settings(max_examples=50)
@given(st.integers(1, 30), st.integers(0, 10**6))
def test_graph_f1_equals_set_f1(n, seed):
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, max(1, n // 3), size=n)
    dense = rng.random((n, n)) < 0.2
    np.fill_diagonal(dense, True)
    g = sp.csr_matrix(dense.astype(np.float32))
    pred = [np.flatnonzero(row) for row in dense]
    true = [np.flatnonzero(groups == groups[i]) for i in range(n)]
    assert np.allclose(graph_f1_scores(g, groups), f1_scores(true, pred))
    for got, want in zip(graph_precision_recall_f1(g, groups), precision_recall_f1(true, pred)):
        assert np.allclose(got, want)
