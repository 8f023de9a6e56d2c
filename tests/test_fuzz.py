"""Fuzzing the boundary: arbitrary CSV content either reads or fails with PostingsError."""

from __future__ import annotations

import csv
import io
import warnings

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shopee_match import Pipeline, Postings, PostingsError, read_postings

cell = st.text(max_size=30)
rows = st.lists(st.tuples(cell, cell), max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=rows, header=st.sampled_from([("posting_id", "title"), ("posting_id", "name"), ("a", "b")]))
def test_csv_reader_never_crashes_unexpectedly(tmp_path, rows, header):
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    path = tmp_path / "fuzz.csv"
    path.write_text(buf.getvalue(), encoding="utf-8", errors="surrogatepass")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            p = read_postings(path)
        except PostingsError as exc:
            assert str(path) in str(exc)
            return
    assert header == ("posting_id", "title")
    assert len(p) <= len(rows)
    assert p.df["posting_id"].is_unique


@settings(max_examples=25, deadline=None)
@given(st.lists(st.text(min_size=0, max_size=40), min_size=0, max_size=60), st.integers(0, 10**6))
def test_pipeline_on_arbitrary_titles(titles, seed):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "posting_id": [f"p{i}" for i in range(len(titles))],
        "title": titles,
        "label_group": rng.integers(0, max(1, len(titles) // 2 + 1), size=len(titles)),
    })
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        postings = Postings(df)
        pipe = Pipeline.default(phash=False)
        try:
            pipe.fit(postings)
        except ValueError as exc:  # e.g. no usable words at all: must say so clearly
            assert "title" in str(exc) or "label group" in str(exc) or "folds" in str(exc)
            return
        sub = pipe.predict(postings)
    assert len(sub) == len(titles)
    for pid, matches in zip(sub["posting_id"], sub["matches"]):
        assert pid in matches.split()
