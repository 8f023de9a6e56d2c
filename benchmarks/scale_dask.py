"""Scale-out benchmark: generated postings (titles + phash) through a local Dask cluster.

    python benchmarks/scale_dask.py --n 2000000 --workers 2 --memory-limit 4GB \\
        --workdir /tmp/scale_dask --json dask_2m.json

    python benchmarks/scale_dask.py --model default --n 100000 --workers 2 \
        --memory-limit 4GB --partition-rows 20000 --train-groups 1000 --workdir /tmp/sd

Steps: generate ``--n`` postings as Parquet files on the workers, fit a pipeline on a
small separate catalogue (``--model union``: a TF-IDF + exact phash union, thresholds
tuned; ``--model shipped``: ``Pipeline.pretrained()``, what ``shopee-match match`` uses,
nothing fitted; ``--model default``: ``Pipeline.default()``, the reranked recipe: TF-IDF learnt on
the postings matched, blended and phash candidates, two-stage pair reranker; or
``--model-dir DIR``: a saved pipeline), then
``predict_dask(pipe, "<workdir>/postings-*.parquet", method=...)`` on a
``LocalCluster(n_workers, threads_per_worker=1, memory_limit)``. Reports wall time per
stage, compute seconds per task kind (from Dask's task stream, so per-partition rates),
peak RSS of each worker (polled every 0.5 s) and, for ``--method ivf``, the recall of the
TF-IDF matches against exact search on ``--recall-sample`` random postings.

``--one-machine``: then, the cluster closed, ``pipe.predict`` of the same postings in
this process (the block engine, as ``shopee-match match`` runs it): its wall and CPU
seconds, peak RSS and F1 beside Dask's, and the ratios. Dask's CPU is its workers'
(each worker process's own, read before and after the prediction) plus this process's
(scheduler, client).
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

_SYLLABLES = ["ka", "lo", "mi", "ra", "su", "te", "vo", "zu", "ne", "pi", "do", "gu", "ba",
              "ye", "ho", "ri", "ta", "ke", "mo", "ja"]


def make_chunk(i: int, n: int, folder: str, seed: int) -> int:
    """``n`` postings (about n / 3.5 label groups) with phashes, as one Parquet file.

    ``make_titles`` draws from 20 brands and ~320k model codes; a marketplace that grows
    adds brands too, so each file gives its 20 brands new random names of 2-4
    syllables: near-duplicate density stays that of one file instead of growing with
    ``--n``.
    """
    import re

    from shopee_match._generate import _BRANDS, make_titles

    df = make_titles(max(1, round(n / 3.5)), seed=seed + i)
    names = np.random.default_rng([seed, i, 7])
    rename = {
        b.lower(): "".join(names.choice(_SYLLABLES, size=int(names.integers(2, 5)))).title()
        for b in _BRANDS
    }
    pattern = re.compile(r"\b(" + "|".join(_BRANDS) + r")\b", re.IGNORECASE)
    df["title"] = [pattern.sub(lambda m: rename[m.group(1).lower()], t) for t in df["title"]]
    rng = np.random.default_rng(seed + i)
    groups = df["label_group"].to_numpy()
    base = rng.integers(0, 2**63, size=groups.max() + 1)
    h = base[groups].copy()
    u = rng.random(len(df))
    h[u < 0.3] = rng.integers(0, 2**63, size=int((u < 0.3).sum()))  # re-shot: new hash
    df["image_phash"] = [f"{v:016x}" for v in h]
    df["posting_id"] = f"c{i:04d}_" + df["posting_id"]
    df["label_group"] = df["label_group"].astype(np.int64) + i * 10_000_000
    df.to_parquet(Path(folder) / f"postings-{i:04d}.parquet", index=False)
    return len(df)


def generate(client: Any, n: int, file_rows: int, folder: str, seed: int) -> int:
    """``n`` postings as Parquet files of about ``file_rows`` (:func:`make_chunk`), made
    on the workers; the count written."""
    n_files = -(-n // file_rows)
    sizes = np.full(n_files, n // n_files)
    sizes[: n - sizes.sum()] += 1
    return int(sum(client.gather(client.map(make_chunk, range(n_files), sizes.tolist(),
                                            [folder] * n_files, [seed] * n_files))))


def train_catalogue(n_groups: int, seed: int) -> Any:
    """A separate generated catalogue to fit on, with phashes as :func:`make_chunk` gives
    them (one per product, 30 % re-shot)."""
    from shopee_match import make_catalog

    train = make_catalog(n_groups=n_groups, images=False, seed=seed + 99_999)
    rng = np.random.default_rng(1)
    base = rng.integers(0, 2**63, size=int(train.df["label_group"].max()) + 1)
    h = base[train.df["label_group"].to_numpy()]
    h = np.where(rng.random(len(h)) < 0.3, rng.integers(0, 2**63, size=len(h)), h)
    train.df["image_phash"] = [f"{v:016x}" for v in h]
    return train


def _rss() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss)


class Peak:
    """Polls every worker's RSS in a thread; ``peak[address]`` is the largest seen."""

    def __init__(self, client: Any, every: float = 0.5) -> None:
        self.client, self.every = client, every
        self.peak: dict[str, float] = defaultdict(float)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for addr, rss in self.client.run(_rss).items():
                    self.peak[addr] = max(self.peak[addr], rss)
            except Exception:  # a worker restarting: try again
                pass
            self._stop.wait(self.every)

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def task_seconds(stream: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Compute seconds and task counts per task kind (function name)."""
    out: dict[str, dict[str, float]] = defaultdict(lambda: {"tasks": 0, "seconds": 0.0})
    for rec in stream:
        key = rec["key"][0] if isinstance(rec["key"], tuple) else rec["key"]
        name = str(key).split("-", 1)[0]  # "<function>-<token or uuid>"
        secs = sum(s["stop"] - s["start"] for s in rec["startstops"] if s["action"] == "compute")
        out[name]["tasks"] += 1
        out[name]["seconds"] += secs
    return dict(out)


def _f1(sub: Any, work: Path) -> float:
    """Mean F1 of the submission against the generated label groups."""
    import pandas as pd

    from shopee_match import Postings
    from shopee_match.metrics import f1_score

    truth = Postings(pd.concat([pd.read_parquet(f) for f in sorted(work.glob("postings-*.parquet"))],
                               ignore_index=True))
    ids = truth.posting_id
    want = dict(zip(ids, (set(ids[m]) for m in truth.true_matches())))
    return f1_score([want[i] for i in sub["posting_id"]], [set(m.split()) for m in sub["matches"]])


def _cpu() -> float:
    """CPU seconds (user + system) of this process so far."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def one_machine(pipe: Any, work: Path) -> dict[str, float]:
    """``pipe.predict`` of the generated postings in this process: wall and CPU seconds
    (the prediction alone: files read first), peak RSS of this process, F1."""
    import resource

    import pandas as pd

    from shopee_match import Postings

    frame = pd.concat([pd.read_parquet(f) for f in sorted(work.glob("postings-*.parquet"))],
                      ignore_index=True)
    postings = Postings(frame)
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    sub = pipe.predict(postings)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return {"wall_s": wall,
            "cpu_s": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime),
            "peak_rss_gb": r1.ru_maxrss * 1024 / 1e9,  # this process's, the client's included
            "f1": _f1(sub, work)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2_000_000, help="postings to generate")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--memory-limit", default="4GB", help="per worker")
    ap.add_argument("--method", default="ivf", choices=["ivf", "exact"])
    ap.add_argument("--model", default="union", choices=["union", "default", "shipped"],
                    help="what to fit on the training catalogue")
    ap.add_argument("--model-dir", help="a saved pipeline to use instead of fitting one")
    ap.add_argument("--partition-rows", type=int, default=None,
                    help="default 100,000 (union), 5,000 (a reranked pipeline)")
    ap.add_argument("--file-rows", type=int, default=100_000, help="postings per Parquet file")
    ap.add_argument("--cell-size", type=int, default=2000)
    ap.add_argument("--n-probe", type=int, default=None,
                    help="default: 2 (union); chosen from --ivf-recall (a reranked pipeline)")
    ap.add_argument("--ivf-recall", type=float, default=None,
                    help="the IVF recall target of a reranked pipeline (default: the library's)")
    ap.add_argument("--recall-sample", type=int, default=1000)
    ap.add_argument("--train-groups", type=int, default=3000)
    ap.add_argument("--workdir", default="/tmp/scale_dask")
    ap.add_argument("--json", help="write the results here as JSON")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--spill", type=float, default=None,
                    help="worker memory fraction where Dask starts spilling to disk "
                         "(its default 0.6 target, 0.7 spill; this sets target = spill - "
                         "0.1 and spill)")
    ap.add_argument("--hold-features", choices=["auto", "yes", "no"], default="auto",
                    help="a stacked reranker's pair features between its stages: held "
                         "(yes), rebuilt (no) or held when they fit a quarter of the "
                         "workers' memory (auto, the library's default)")
    ap.add_argument("--one-machine", action="store_true",
                    help="also run pipe.predict on the same postings here, side by side")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("distributed", "tornado", "bokeh"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    from distributed import Client, LocalCluster, get_task_stream

    from shopee_match import (
        HashMatcher,
        NeighborMatcher,
        PhashEmbedder,
        Pipeline,
        TfidfEmbedder,
    )
    from shopee_match.distributed import predict_dask
    from shopee_match.ensemble import Ensemble

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    for old in work.glob("postings-*.parquet"):
        old.unlink()
    res: dict[str, Any] = {"args": vars(args), "stages": {}}
    if args.spill is not None:  # spill earlier (held pair features, with --hold-features yes)
        import dask

        dask.config.set({"distributed.worker.memory.target": args.spill - 0.1,
                         "distributed.worker.memory.spill": args.spill})
    cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                           memory_limit=args.memory_limit, dashboard_address=None)
    with cluster, Client(cluster) as client, Peak(client) as peak:
        t0 = time.perf_counter()
        res["n_postings"] = generate(client, args.n, args.file_rows, str(work), args.seed)
        res["stages"]["generate"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        train = train_catalogue(args.train_groups, args.seed)
        if args.model_dir:
            pipe = Pipeline.load(args.model_dir)
        elif args.model == "shipped":  # what `shopee-match match` uses: no fit
            pipe = Pipeline.pretrained()
        elif args.model == "default":
            pipe = Pipeline.default().fit(train)
        else:  # the union of thresholded TF-IDF and exact-phash matches
            steps = [("tfidf", TfidfEmbedder(), NeighborMatcher(threshold=0.5, k=50)),
                     ("phash", PhashEmbedder(), HashMatcher(max_distance=0))]
            pipe = Pipeline(steps, ensemble=Ensemble(how="union")).fit(train)
        res["stages"]["fit"] = time.perf_counter() - t0
        res["thresholds"] = getattr(pipe, "tuning_", {}).get("thresholds")

        t0, cpu0 = time.perf_counter(), (_cpu(), client.run(_cpu))
        with get_task_stream(client) as ts:
            sub = predict_dask(pipe, str(work / "postings-*.parquet"), client=client,
                               method=args.method, partition_rows=args.partition_rows,
                               cell_size=args.cell_size, n_probe=args.n_probe,
                               **({} if args.ivf_recall is None else
                                  {"ivf_recall": args.ivf_recall}),
                               recall_sample=args.recall_sample if args.method == "ivf" else 0,
                               random_state=args.seed,
                               hold_features={"auto": None, "yes": True,
                                              "no": False}[args.hold_features])
        res["stages"]["predict_total"] = time.perf_counter() - t0
        # the workers' CPU (every process of theirs) and this process's (scheduler, client)
        after = client.run(_cpu)
        res["dask_cpu_s"] = _cpu() - cpu0[0] + sum(after[a] - cpu0[1].get(a, 0.0)
                                                   for a in after)
        stats = sub.attrs["shopee_match"]
        res["stages"].update({f"predict.{k}": v for k, v in stats.pop("timings").items()})
        res["predict_stats"] = stats
        res["tasks"] = task_seconds(ts.data)
        res["mean_matches"] = float(sub["matches"].str.count(" ").mean() + 1)
        res["f1"] = _f1(sub, work)
        res["workers"] = {a: {"memory_limit": w["memory_limit"]}
                          for a, w in client.scheduler_info()["workers"].items()}
    res["peak_rss_gb"] = {a: round(v / 1e9, 3) for a, v in peak.peak.items()}
    if args.one_machine:
        res["one_machine"] = one_machine(pipe, work)
        om = res["one_machine"]
        res["ratios"] = {"wall": res["stages"]["predict_total"] / om["wall_s"],
                         "cpu": res["dask_cpu_s"] / om["cpu_s"]}
    print(json.dumps(res, indent=2, default=float))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2, default=float))


if __name__ == "__main__":
    main()
