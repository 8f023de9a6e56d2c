"""Shared fixtures: generated catalogues (real JPEG files) and the optional real data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shopee_match import Postings, make_catalog, train_test_split_groups

DATA_DIR = Path(
    os.environ.get("SHOPEE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data" / "shopee")
)


@pytest.fixture(scope="session")
def titles_catalog() -> Postings:
    """~350 labelled postings, titles only."""
    return make_catalog(n_groups=100, images=False, seed=3)


@pytest.fixture(scope="module")
def split(titles_catalog: Postings) -> tuple[Postings, Postings]:
    """``titles_catalog`` cut into group-disjoint train (2/3) and test (1/3) parts."""
    return train_test_split_groups(titles_catalog, test_size=1 / 3, random_state=0)


@pytest.fixture(scope="session")
def image_catalog(tmp_path_factory: pytest.TempPathFactory) -> Postings:
    """~120 labelled postings with real JPEG images on disk."""
    folder = tmp_path_factory.mktemp("catalog_images")
    return make_catalog(n_groups=35, image_dir=folder, image_size=64, seed=5)


@pytest.fixture(scope="session")
def shopee_dir() -> Path:
    """The real competition sample beside the project; skips when absent."""
    if not (DATA_DIR / "train_dev.csv").is_file():
        pytest.skip(f"real Shopee data not found at {DATA_DIR} (set SHOPEE_DATA)")
    return DATA_DIR


@pytest.fixture(scope="module")
def client():
    """A 2-process Dask ``LocalCluster`` and its client (for the distributed tests)."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as c:
        yield c
