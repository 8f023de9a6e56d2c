"""Self-training on Dask (issue 20): the shipped model's submission on a 2-process
``LocalCluster`` equals ``Pipeline.predict``'s where self-training adds pairs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("dask.dataframe")
pytest.importorskip("distributed")

import dask.dataframe as dd

from shopee_match import Pipeline
from shopee_match.cli import main
from shopee_match.distributed import predict_dask
from test_selftrain import marketplace

pytestmark = pytest.mark.dask


def _sets(sub):
    return [set(m.split()) for m in sub["matches"]]


@pytest.mark.parametrize("npartitions", [2, 3])
def test_dask_self_trains_as_one_machine(client, npartitions):
    pipe = Pipeline.pretrained()
    assert pipe.combiner_.self_train and pipe.combiner_.grow is not None
    cat = marketplace(seed=1, n_products=100)
    want = pipe.predict(cat)
    pipe.combiner_.set_params(self_train=False)
    cut = pipe.predict(cat)
    pipe.combiner_.set_params(self_train=True)
    added = sum(map(len, _sets(want))) - sum(map(len, _sets(cut)))
    assert added > 0  # a catalogue where self-training adds pairs
    df = cat.df[["posting_id", "title"]]
    out = predict_dask(pipe, dd.from_pandas(df, npartitions=npartitions), client=client,
                       partition_rows=len(df) // npartitions + 1)
    stats = out.attrs["shopee_match"]
    assert stats["n_partitions"] == npartitions
    assert out["posting_id"].tolist() == want["posting_id"].tolist()
    assert out["matches"].tolist() == want["matches"].tolist()  # byte for byte
    st = stats["self_training"]
    assert st["point"] is not None and st["pairs_added"] > 0
    # the pairs added both ways: each added pair is in both postings' sets
    sets = dict(zip(out["posting_id"], _sets(out)))
    assert all(a in sets[b] for a, s in sets.items() for b in s)


def test_cli_scheduler_self_trains_unless_told_not_to(client, tmp_path):
    cat = marketplace(seed=1, n_products=100)
    csv = tmp_path / "postings.csv"
    cat.df[["posting_id", "title"]].to_csv(csv, index=False)
    subs = []
    for flag in ([], ["--no-self-train"]):
        pipe = Pipeline.pretrained()
        pipe.combiner_.set_params(self_train=not flag)
        out = tmp_path / f"sub{len(flag)}.csv"
        assert main(["match", str(csv), "-o", str(out), "--scheduler",
                     client.scheduler.address, "-q", *flag]) == 0
        got = pd.read_csv(out, dtype=str, keep_default_na=False)
        assert got["matches"].tolist() == pipe.predict(cat)["matches"].tolist()
        subs.append(got["matches"].tolist())
    assert subs[0] != subs[1]


def test_a_partitions_titles_with_the_catalogues_counts_read_pairs_as_the_whole():
    """A part of the titles, given the catalogue's token counts as the counting pass
    makes them, gives one machine's similarities and evidence bit for bit; with its
    own counts, other similarities."""
    from shopee_match.distributed._reranked import _catalogue_df
    from shopee_match.rerank._selftrain import _Titles
    from shopee_match.rerank.title_features import title_doc_freq

    titles = marketplace(seed=2, n_products=60).titles
    part = np.flatnonzero(np.arange(len(titles)) % 3 != 1)
    cat = _catalogue_df({"titles": title_doc_freq(titles), "n": len(titles)})
    r, c = np.triu_indices(len(part), 1)
    sim, state = _Titles(titles).pairs(part[r], part[c])
    got = _Titles([titles[i] for i in part], catalogue_df=cat).pairs(r, c)
    assert (state > 0).sum() > 100
    assert np.array_equal(got[0], sim) and np.array_equal(got[1], state)
    own = _Titles([titles[i] for i in part]).pairs(r, c)[0]
    assert not np.array_equal(own, sim)
