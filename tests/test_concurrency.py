"""Concurrent use: matchings in several threads give the sequential output and leave the
process-global BLAS thread count as they found it."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest

from shopee_match import Pipeline, make_catalog
from shopee_match.neighbors import _numpy, _sparse
from shopee_match.neighbors._base import blas_single_threaded

threadpoolctl = pytest.importorskip("threadpoolctl")


def _blas_threads() -> list[int]:
    """Thread counts of the process-wide BLAS pools. An OpenMP build (faiss ships one)
    keeps its count per calling thread, so one thread cannot see another's limit: left out."""
    return [d["num_threads"] for d in threadpoolctl.threadpool_info()
            if d["user_api"] == "blas" and d.get("threading_layer") != "openmp"]


@pytest.fixture(scope="module")
def fitted() -> Pipeline:
    return Pipeline.default(phash=False).fit(make_catalog(n_groups=70, images=False, seed=5))


def test_two_matchings_in_two_threads_equal_sequential(
    fitted: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # every search takes the threaded path (worker threads, BLAS limited to one thread)
    monkeypatch.setattr(_numpy, "_THREADED_MIN", 0)
    monkeypatch.setattr(_sparse, "_THREADED_MIN", 0)
    data = [make_catalog(n_groups=90, images=False, seed=s) for s in (21, 22)]
    before = _blas_threads()
    sequential = [fitted.predict(p) for p in data]
    assert _blas_threads() == before
    for _ in range(3):  # overlap in varied orders
        with ThreadPoolExecutor(2) as pool:
            concurrent = list(pool.map(fitted.predict, data))
        for seq, conc in zip(sequential, concurrent):
            pd.testing.assert_frame_equal(conc, seq)
        assert _blas_threads() == before


def test_overlapping_blas_limits_restore_in_any_order() -> None:
    """A enters, B enters, A leaves, B leaves: B must not restore A's limit of one."""
    before = _blas_threads()
    if not before:
        pytest.skip("no BLAS library seen by threadpoolctl")
    # what one plain limit achieves here (a BLAS that ignores it, e.g. an OpenMP build
    # loaded by another library, stays as it is): the overlapping pair must keep that
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        # (read a few times: here one read in a few gave the pools' old counts)
        limited = min((_blas_threads() for _ in range(3)), key=sum)
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, list[int]] = {}

    def a() -> None:
        with blas_single_threaded():
            a_in.set()
            b_in.wait(60)
        a_out.set()

    def b() -> None:
        a_in.wait(60)
        with blas_single_threaded():
            b_in.set()
            a_out.wait(60)
            seen["b after a left"] = _blas_threads()

    threads = [threading.Thread(target=f) for f in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert seen["b after a left"] == limited  # still limited while B searches
    assert _blas_threads() == before


def test_a_worker_threads_limit_leaves_other_threads_free_to_set_blas() -> None:
    """threadpoolctl >= 3.8 lets one "controlling" thread set OpenBLAS and ignores the
    others: a search in a pool thread that stays alive must not keep that control."""
    before = _blas_threads()
    if not before:
        pytest.skip("no BLAS library seen by threadpoolctl")
    done, stop = threading.Event(), threading.Event()

    def search() -> None:
        with blas_single_threaded():
            pass
        done.set()
        stop.wait(60)  # a pool thread lives on after its task

    worker = threading.Thread(target=search)
    worker.start()
    try:
        assert done.wait(60)
        with threadpoolctl.threadpool_limits(1, user_api="blas"):
            inside = _blas_threads()
        assert _blas_threads() == before
    finally:
        stop.set()
        worker.join(60)
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        limited = _blas_threads()
    assert inside == limited  # the main thread's limit took, as with no worker about
