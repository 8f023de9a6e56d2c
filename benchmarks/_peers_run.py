"""Run one peer matcher on a titles CSV; write its clusters (run by ``peers.py``).

    python benchmarks/_peers_run.py splink  IN.csv OUT.npz
    python benchmarks/_peers_run.py pyjedai IN.csv OUT.npz

``IN.csv`` has columns ``id,title`` (rows 0..n-1). ``OUT.npz`` holds one integer array of
length n per setting (``p0.5``, ``p0.9``, ``p0.99`` for splink; ``cc0.5``, ``cc0.7``, ``cc0.9`` for
pyJedAI: edges of similarity at least that): the
cluster of each row, so a row's match set is its cluster. Each peer is set up as its own
documentation shows for deduplicating one table of short names without labels. With a
third column ``source`` the rows are tables to link, pairs only across them: splink with
``link_only`` (one input table per source; clusters by connected components, ``p*``, and by
its single best links with every source duplicate-free, ``best_p*``) and pyJedAI as
clean-clean ER (exactly two sources; ``umc*``: its unique mapping clustering, ``cc*``: its
clean-clean connected components, which keep components of two). This file
imports neither shopee_match nor anything but the peer, pandas and numpy, so it runs in a
separate environment (``benchmarks/requirements-peers.txt``).
"""

from __future__ import annotations

import logging
import sys
import time

import numpy as np
import pandas as pd


def run_splink(df: pd.DataFrame) -> dict[str, np.ndarray]:
    """splink (DuckDB backend): title comparisons, EM without labels, clusters at p
    (``link_only`` across the ``source`` column's tables when there is one)."""
    import splink.comparison_library as cl
    from splink import Linker, SettingsCreator, block_on
    from splink.backends.duckdb import DuckDBAPI

    df = df.copy()
    df["unique_id"] = np.arange(len(df))
    t = df["title"].fillna("").str.lower().str.replace(r"[^\w\s]", " ", regex=True)
    toks = t.str.split()
    df["title"] = toks.str.join(" ")
    df["tokens"] = toks
    df["first_tok"] = toks.str[0].fillna("")
    df["last_tok"] = toks.str[-1].fillna("")
    df["first_two"] = toks.str[:2].str.join(" ")
    link = "source" in df.columns
    settings = SettingsCreator(
        link_type="link_only" if link else "dedupe_only",
        blocking_rules_to_generate_predictions=[block_on("first_two"), block_on("last_tok"),
                                                block_on("first_tok", "last_tok")],
        comparisons=[
            cl.JaroWinklerAtThresholds("title", [0.95, 0.88, 0.75]),
            cl.ArrayIntersectAtSizes("tokens", [4, 2, 1]),
            cl.ExactMatch("first_tok"),
        ],
    )
    db = DuckDBAPI()
    if link:
        names = sorted(df["source"].unique())
        tables = [db.register(df[df["source"] == s].drop(columns="source"), dataset_display_name=s)
                  for s in names]
        linker = Linker(tables, settings, log_level=logging.WARNING)
    else:
        linker = Linker(db.register(df), settings, log_level=logging.WARNING)
    linker.training.estimate_probability_two_random_records_match(
        [block_on("title")], recall=0.7)
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("first_two"))
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("last_tok"))
    preds = linker.inference.predict(threshold_match_probability=0.5)
    out = {}
    for p in (0.5, 0.9, 0.99):
        clusters = {f"p{p}": linker.clustering.cluster_pairwise_predictions_at_threshold(
            preds, threshold_match_probability=p)}
        if link:
            clusters[f"best_p{p}"] = linker.clustering.cluster_using_single_best_links(
                preds, duplicate_free_datasets=names, threshold_match_probability=p)
        for key, sdf in clusters.items():
            cl_df = sdf.as_pandas_dataframe()
            lab = np.arange(len(df))
            ids = cl_df["unique_id"].to_numpy().astype(int)
            lab[ids] = pd.factorize(cl_df["cluster_id"])[0] + len(df)
            out[key] = lab
    return out


def run_pyjedai(df: pd.DataFrame) -> dict[str, np.ndarray]:
    """pyJedAI: token blocking, purging and filtering, string matching, connected components
    (clean-clean ER of the ``source`` column's two tables when there is one: also unique
    mapping clustering)."""
    from pyjedai.block_building import StandardBlocking
    from pyjedai.block_cleaning import BlockFiltering, BlockPurging
    from pyjedai.clustering import ConnectedComponentsClustering, UniqueMappingClustering
    from pyjedai.datamodel import Data
    from pyjedai.matching import EntityMatching

    d = pd.DataFrame({"id": np.arange(len(df)).astype(str), "title": df["title"].fillna("")})
    if "source" in df.columns:
        names = sorted(df["source"].unique())
        if len(names) != 2:
            raise SystemExit(f"pyJedAI's clean-clean ER links two tables; the source column has {len(names)}")
        parts = [np.flatnonzero(df["source"].to_numpy() == s) for s in names]
        row = np.concatenate(parts)  # pyJedAI's entity k is row[k]: table 1, then table 2
        data = Data(dataset_1=d.iloc[parts[0]].reset_index(drop=True), id_column_name_1="id",
                    attributes_1=["title"], dataset_name_1=names[0],
                    dataset_2=d.iloc[parts[1]].reset_index(drop=True), id_column_name_2="id",
                    attributes_2=["title"], dataset_name_2=names[1])
        kw = {"attributes_1": ["title"], "attributes_2": ["title"]}
        clusterers = {"umc": UniqueMappingClustering, "cc": ConnectedComponentsClustering}
    else:
        row = np.arange(len(df))
        data = Data(dataset_1=d, id_column_name_1="id", attributes_1=["title"])
        kw = {"attributes_1": ["title"]}
        clusterers = {"cc": ConnectedComponentsClustering}
    blocks = StandardBlocking().build_blocks(data, tqdm_disable=True, **kw)
    blocks = BlockPurging().process(blocks, data, tqdm_disable=True)
    blocks = BlockFiltering().process(blocks, data, tqdm_disable=True)
    em = EntityMatching(metric="dice", tokenizer="white_space_tokenizer", similarity_threshold=0.0)
    graph = em.predict(blocks, data, tqdm_disable=True)
    out = {}
    for name, clusterer in clusterers.items():
        for t in (0.5, 0.7, 0.9):
            lab = np.arange(len(df))
            for k, members in enumerate(clusterer().process(graph, data, similarity_threshold=t)):
                lab[row[np.fromiter(members, dtype=np.int64)]] = len(df) + k
            out[f"{name}{t}"] = lab
    return out


def main() -> None:
    method, src, dst = sys.argv[1:4]
    df = pd.read_csv(src, dtype={"id": str, "title": str, "source": str}, keep_default_na=False)
    t0 = time.perf_counter()
    out = {"splink": run_splink, "pyjedai": run_pyjedai}[method](df)
    secs = time.perf_counter() - t0
    np.savez(dst, seconds=np.array(secs), **out)


if __name__ == "__main__":
    main()
