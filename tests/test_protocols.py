"""The public ``Matcher`` / ``Combiner`` protocols, and a user's matcher class that works
in batch, in a ``MatchIndex`` and on Dask once it is registered (one class, one decorator)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from shopee_match import (
    HashMatcher,
    MatchIndex,
    NeighborMatcher,
    Pipeline,
    TfidfEmbedder,
    register,
)
from shopee_match.ensemble import Ensemble
from shopee_match.neighbors import BlendMatcher
from shopee_match.neighbors.graph import add_self
from shopee_match.protocols import ClassRegistry, Combiner, Matcher, register_matcher
from shopee_match.rerank import PairReranker
from shopee_match.tuning import threshold_grid


@register(package="tests_protocols", like=NeighborMatcher)
class HouseMatcher(NeighborMatcher):
    """A company's own cosine matcher: its defaults, exact sparse search, fewer knobs."""

    def __init__(self, threshold: float = 0.6, k: int = 15) -> None:
        super().__init__(threshold=threshold, k=k, backend="sparse")


class Unregistered(NeighborMatcher):  # may search differently: runtimes must not guess
    pass


class DotMatcher:
    """A matcher from the protocol alone: all pairs above a cosine threshold."""

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = threshold

    def candidates(self, emb):
        g = sp.csr_matrix(emb @ emb.T, dtype=np.float32)
        g.setdiag(0)
        g.eliminate_zeros()
        return g

    def similarity_threshold(self) -> float:
        return float(getattr(self, "threshold_", self.threshold))

    def fit_threshold(self, value):
        if value is None:
            self.__dict__.pop("threshold_", None)
        else:
            self.threshold_ = float(value)
        return self

    def select(self, cand, threshold=None):
        t = self.similarity_threshold() if threshold is None else threshold
        return add_self(sp.csr_matrix(cand.multiply(cand >= t), dtype=np.float32))

    def match_graph(self, emb):
        return self.select(self.candidates(emb))



def test_the_library_classes_follow_the_protocols():
    for m in (NeighborMatcher(), BlendMatcher(), HashMatcher(), HouseMatcher(), DotMatcher()):
        assert isinstance(m, Matcher)
    assert isinstance(Ensemble(), Combiner) and isinstance(PairReranker(), Combiner)
    assert not isinstance(Ensemble(), Matcher) and not isinstance(NeighborMatcher(), Combiner)


def test_a_registered_user_matcher_works_in_batch_and_in_the_index(split, tmp_path):
    train, test = split
    pipe = Pipeline([("house", TfidfEmbedder(), HouseMatcher())], ensemble=Ensemble()).fit(train)
    matcher = pipe.steps[0][2]
    assert matcher.threshold == 0.6 and matcher.threshold_ != 0.6  # tuned, as any step
    batch = pipe.predict(test)
    assert (batch["matches"].str.count(" ") > 0).mean() > 0.3  # it does match
    # the same class in an index: answers as batch matching gives them
    cat, new = test.subset(range(80)), test.subset(range(80, len(test)))
    got = MatchIndex.build(pipe, cat).query(new)
    assert got["matches"].tolist() == batch.set_index("posting_id").loc[
        got["posting_id"], "matches"].tolist()
    # the decorator also makes it loadable
    loaded = Pipeline.load(pipe.save(tmp_path / "m"))
    assert type(loaded.steps[0][2]) is HouseMatcher
    pd.testing.assert_frame_equal(loaded.predict(test), batch)


def test_a_registered_user_matcher_runs_on_dask(split):
    dd = pytest.importorskip("dask.dataframe")
    distributed = pytest.importorskip("distributed")
    from shopee_match.distributed import predict_dask

    train, test = split
    pipe = Pipeline([("house", TfidfEmbedder(), HouseMatcher())], ensemble=Ensemble()).fit(train)
    # threads: the class lives in this test module, which worker processes cannot import
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2,
                            dashboard_address=None) as client:
        out = predict_dask(pipe, dd.from_pandas(test.df, npartitions=3), client=client,
                           partition_rows=60)
    expected = pipe.predict(test)
    assert out["posting_id"].tolist() == expected["posting_id"].tolist()
    assert out["matches"].tolist() == expected["matches"].tolist()


def test_runtimes_refuse_an_undeclared_matcher_by_name(split):
    train, test = split
    for matcher in (Unregistered(), DotMatcher()):
        pipe = Pipeline([("mine", TfidfEmbedder(), matcher)], ensemble=Ensemble()).fit(train)
        assert len(pipe.predict(test)) == len(test)  # batch needs only the protocol
        with pytest.raises(TypeError, match=r"cannot index a .*register_matcher"):
            MatchIndex.build(pipe, test)


def test_a_dask_refusal_names_the_registration(split):
    pytest.importorskip("distributed")
    from shopee_match.distributed import _check

    train, _ = split
    pipe = Pipeline([("mine", TfidfEmbedder(), Unregistered())], ensemble=Ensemble()).fit(train)
    with pytest.raises(NotImplementedError, match=r"no distributed search.*register_matcher"):
        _check(pipe, "exact")


def test_tuning_grids_follow_the_class_and_its_subclasses():
    class WiderHash(HashMatcher):
        pass

    assert threshold_grid(WiderHash()).tolist() == threshold_grid(HashMatcher()).tolist()
    assert threshold_grid(DotMatcher()).tolist() == threshold_grid(NeighborMatcher()).tolist()
    assert threshold_grid(HashMatcher()).tolist() != threshold_grid(NeighborMatcher()).tolist()


def test_registry_lookups_and_declarations():
    reg: ClassRegistry[str] = ClassRegistry("test")
    reg.register(NeighborMatcher, "cosine")
    assert reg.lookup(HouseMatcher()) == "cosine"  # declared like NeighborMatcher
    assert reg.lookup(Unregistered()) is None  # exact classes only
    assert ClassRegistry("t", inherit=True).lookup(Unregistered()) is None
    with pytest.raises(ValueError, match="cycle"):
        register_matcher(NeighborMatcher, like=HouseMatcher)
    with pytest.raises(TypeError):
        reg.register("NeighborMatcher", "x")  # type: ignore[arg-type]
