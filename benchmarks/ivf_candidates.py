"""Where a reranked pipeline's F1 goes with IVF candidates: exact and IVF candidate graphs
side by side, per step, then the reranker on each mix of them (one Dask session).

    python benchmarks/ivf_candidates.py --n 20000 --workdir /tmp/ivfc

Generates ``--n`` postings as ``benchmarks/scale_dask.py`` does (same seed: the same
files), fits ``Pipeline.default()`` on the same separate training catalogue, builds the
candidate graphs of every step with exact search and with IVF search
(``--n-probe``/``--cell-size``/``--recall``), and reports for each k-NN step:

- ``recall``: the share of the exact top-k found by IVF (``recall_top5``: of its best 5);
- ``label_recall``: the share of true (generated-label) pairs among the candidates;
- the IVF search's own label-free recall estimate (``stats["ivf_<step>"]``).

Then the reranker runs on the exact graphs, the IVF graphs and each mix with one step
swapped, and prints F1 against the generated labels beside "match nothing".
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).parent))


def _graph(client: Any, futs: list[Any]) -> sp.csr_matrix:
    return sp.vstack(client.gather(futs), format="csr")


def _compare(ex: sp.csr_matrix, iv: sp.csr_matrix, truth: sp.csr_matrix) -> dict[str, float]:
    """Recall of the exact rows' entries in the IVF rows, overall and of each row's best 5."""
    ex, iv = ex.tocsr(), iv.tocsr()
    ex.sort_indices()
    found = ex.multiply(iv.astype(bool)).astype(bool)
    top5 = 0
    top5_found = 0
    for i in range(ex.shape[0]):
        a, b = ex.indptr[i], ex.indptr[i + 1]
        if b == a:
            continue
        best = ex.indices[a:b][np.argsort(-ex.data[a:b], kind="stable")[:5]]
        top5 += len(best)
        row = iv.indices[iv.indptr[i]:iv.indptr[i + 1]]
        top5_found += int(np.isin(best, row).sum())
    t = truth.astype(bool)
    return {
        "exact_entries": int(ex.nnz), "ivf_entries": int(iv.nnz),
        "recall": found.nnz / max(1, ex.nnz), "recall_top5": top5_found / max(1, top5),
        "label_recall_exact": ex.astype(bool).multiply(t).nnz / max(1, t.nnz),
        "label_recall_ivf": iv.astype(bool).multiply(t).nnz / max(1, t.nnz),
        "rows_identical": int(sum(
            np.array_equal(np.sort(ex.indices[ex.indptr[i]:ex.indptr[i + 1]]),
                           np.sort(iv.indices[iv.indptr[i]:iv.indptr[i + 1]]))
            for i in range(ex.shape[0]))) / ex.shape[0],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--memory-limit", default="4GB")
    ap.add_argument("--partition-rows", type=int, default=5_000)
    ap.add_argument("--file-rows", type=int, default=20_000)
    ap.add_argument("--train-groups", type=int, default=1000)
    ap.add_argument("--n-probe", type=int, default=None,
                    help="fixed probes (default: chosen from --recall)")
    ap.add_argument("--cell-size", type=int, default=2000)
    ap.add_argument("--dim", type=int, default=None,
                    help="IVF projection dimensions (default: predict_dask's)")
    ap.add_argument("--recall", type=float, default=None, help="the IVF recall target")
    ap.add_argument("--mixes", action="store_true", help="also rerank each one-step swap")
    ap.add_argument("--workdir", default="/tmp/ivfc")
    ap.add_argument("--json")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import pandas as pd
    from distributed import Client, LocalCluster, wait
    from scale_dask import generate, train_catalogue

    from shopee_match import Pipeline, Postings
    from shopee_match.distributed import IVF_DIM, IVF_RECALL
    from shopee_match.distributed._candidates import candidate_rows
    from shopee_match.distributed._io import embed_parts, load_partitions, read_frame
    from shopee_match.distributed._rerank import rerank_edges
    from shopee_match.distributed._reranked import fitted_on_partitions
    from shopee_match.metrics import f1_score, match_nothing_f1
    from shopee_match.tuning import MAX_TUNED_RADIUS

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    for old in work.glob("postings-*.parquet"):
        old.unlink()
    res: dict[str, Any] = {"args": vars(args)}
    cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                           memory_limit=args.memory_limit, dashboard_address=None)
    with cluster, Client(cluster) as c:
        generate(c, args.n, args.file_rows, str(work), args.seed)
        pipe = Pipeline.default().fit(train_catalogue(args.train_groups, args.seed))

        truth_p = Postings(pd.concat([pd.read_parquet(f) for f in
                                      sorted(work.glob("postings-*.parquet"))],
                                     ignore_index=True))
        ids = truth_p.posting_id
        labels = pd.factorize(truth_p.df["label_group"])[0]
        n = len(labels)
        # the true pairs as a sparse matrix (self included)
        same = sp.csr_matrix((np.ones(n, np.int8), (np.arange(n), labels)))
        truth = (same @ same.T).tocsr()
        truth.setdiag(0)
        truth.eliminate_zeros()

        stats: dict[str, Any] = {"timings": {}}
        frames = load_partitions(c, read_frame(str(work / "postings-*.parquet")),
                                 args.partition_rows)
        prep = fitted_on_partitions(c, pipe, frames, True, stats)
        pipe_future, cat = prep.pipe, prep.cat
        steps = pipe.validated_steps()
        hash_steps = [s for s, _, m in steps if type(m).__name__ == "HashMatcher"]
        parts, offsets = embed_parts(c, frames, pipe_future, None, hash_steps, prep.counted)
        wait(parts)
        from shopee_match.distributed._io import part_ids
        from shopee_match.distributed._tfidf import frame_tokens

        pid = np.concatenate(c.gather([c.submit(part_ids, p, pure=False) for p in parts]))
        assert np.array_equal(pid.astype(str), np.asarray(ids, dtype=str))
        titles = prep.tokens or [c.submit(frame_tokens, f, pure=False) for f in frames]
        cands: dict[str, dict[str, list[Any]]] = {}
        for method in ("exact", "ivf"):
            st: dict[str, Any] = {"timings": {}}
            ivf = None if method == "exact" else {
                "n_cells": None, "n_probe": args.n_probe, "cell_size": args.cell_size,
                "dim": args.dim or IVF_DIM, "sample_size": 50_000, "seed": args.seed}
            if ivf is not None:  # predict_dask's defaults where not given
                ivf["recall"] = IVF_RECALL if args.recall is None else args.recall
            t0 = time.perf_counter()
            cands[method] = candidate_rows(c, parts, offsets, steps, hash_steps,
                                           MAX_TUNED_RADIUS, st, ivf)
            st["timings"]["candidates"] = time.perf_counter() - t0
            res[f"stats_{method}"] = {k: v for k, v in st.items()}
            print(method, json.dumps(res[f"stats_{method}"], default=str), flush=True)
        knn_steps = [s for s, _, _ in steps if s not in hash_steps]
        res["compare"] = {}
        for s in knn_steps:
            ex, iv = _graph(c, cands["exact"][s]), _graph(c, cands["ivf"][s])
            res["compare"][s] = _compare(ex, iv, truth)
            print(s, json.dumps(res["compare"][s]), flush=True)

        want = [set(ids[truth.indices[truth.indptr[i]:truth.indptr[i + 1]]]) | {ids[i]}
                for i in range(n)]
        res["match_nothing_f1"] = float(match_nothing_f1(labels))
        mixes = {"exact": {s: "exact" for s in knn_steps}, "ivf": {s: "ivf" for s in knn_steps}}
        if args.mixes:
            for s in knn_steps:
                mixes[f"ivf_only_{s}"] = {t: ("ivf" if t == s else "exact") for t in knn_steps}
        res["f1"] = {}
        for label, mix in mixes.items():
            use = {s: cands[mix.get(s, "exact")][s] for s, _, _ in steps}
            t0 = time.perf_counter()
            edges = rerank_edges(c, pipe_future, pipe.combiner_, use, titles, offsets, cat, {})
            got = c.gather(edges)
            sets = [{ids[i]} for i in range(n)]
            for a, (r, col) in enumerate(got):
                for i, j in zip(r + offsets[a], col):
                    sets[i].add(ids[j])
            f1 = f1_score(want, sets)
            res["f1"][label] = {"f1": f1, "rerank_s": time.perf_counter() - t0}
            print(label, res["f1"][label], "match nothing", res["match_nothing_f1"], flush=True)
    print(json.dumps(res, indent=2, default=str))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2, default=str))


if __name__ == "__main__":
    main()
