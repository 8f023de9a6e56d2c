"""The local cluster ``--scheduler local:N`` starts: one-thread worker processes without
Dask's statistical profiler and with slower monitors, the caller's settings untouched."""

from __future__ import annotations

import pytest

pytest.importorskip("distributed")

import dask

from shopee_match.distributed import local_cluster

pytestmark = pytest.mark.dask


def _settings(dask_worker) -> tuple[bool, str, int]:  # c.run passes the worker
    return (dask.config.get("distributed.worker.profile.enabled"),
            dask.config.get("distributed.admin.tick.interval"), dask_worker.state.nthreads)


def test_local_cluster_workers_run_quiet_and_the_caller_keeps_its_settings() -> None:
    before = dask.config.get("distributed.worker.profile.enabled")
    with local_cluster(2, dashboard_address=None) as c:
        got = c.run(_settings)
        assert len(got) == 2
        assert all(v == (False, "500ms", 1) for v in got.values())
        assert c.submit(sum, [1, 2]).result() == 3
        cluster = c.cluster
    assert cluster.status.name == "closed"
    assert dask.config.get("distributed.worker.profile.enabled") == before
