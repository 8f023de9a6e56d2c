"""One machine against Dask on the same file: the same submission, and the CPU each costs.

    python benchmarks/dask_same.py --model M --postings HOLDOUT.csv --parts 4 \\
        --work /tmp/dask_same --repeat 2 [--baseline-src /tmp/before/src]

Writes ``HOLDOUT.csv`` again as ``--parts`` files (so Dask gets that many partitions),
then, side by side in one run (one after the other, ``--repeat`` times, best kept):

- ``shopee-match match HOLDOUT.csv --model M`` (one machine) and
  ``shopee-match match "part-*.csv" --model M --scheduler local:2`` (a 2-worker
  ``LocalCluster``), each a child process timed by wall clock and CPU (user + sys of the
  process and its reaped children, ``getrusage``: the Dask workers included);
- both again in this process, warm (each run twice, the second measured, so imports,
  compiled kernels and the workers' start-up are left out: what each posting costs):
  ``Pipeline.predict`` and ``predict_dask`` on 2 workers of 1 thread each (in turn,
  ``--repeat`` times after a warm-up run, the least CPU kept): the cluster
  ``--scheduler local:2`` starts (``shopee_match.distributed.local_cluster``) and a
  ``LocalCluster`` with Dask's default settings (its profiler and monitors on); Dask's
  CPU is its workers' and this process's (scheduler, client), ``getrusage``; with the
  wall time of each stage and the task stream's seconds per task kind.

Prints the match sets identical between the two submissions, both F1s against the
labels beside "match nothing", and the CPU ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd


def _child(cmd: list[str], src: str | None = None) -> tuple[float, float]:
    """``(wall, cpu)`` of a child process (CPU: its own and its reaped children's);
    ``src``: the ``PYTHONPATH`` it imports shopee_match from."""
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = src
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _f1(sub: pd.DataFrame, truth: pd.DataFrame) -> float:
    from shopee_match.metrics import f1_score

    groups = truth.groupby("label_group")["posting_id"].agg(set)
    want = [groups[g] for g in truth["label_group"]]
    got = dict(zip(sub["posting_id"], sub["matches"]))
    return f1_score(want, [set(got[p].split()) for p in truth["posting_id"]])


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _warm(model: str, postings: str, glob: str, repeat: int
          ) -> tuple[pd.DataFrame, float, dict[str, float], dict[str, float]]:
    """Both runs in this process, once to warm up (imports, compiled kernels and the
    workers' start-up are paid there), then ``repeat`` times in turn, the least CPU of
    each kept (other work on the machine only ever adds): ``(Dask submission, one
    machine's CPU, Dask's CPU by cluster, task-stream seconds per task kind)``. Dask runs
    on the 2-worker cluster ``--scheduler local:2`` starts (``local_cluster``: Dask's
    profiler off, monitors slower) and on a ``LocalCluster`` with Dask's default
    settings; its CPU is its workers' and this process's (scheduler, client) during the
    run, ``getrusage``."""
    from dask.utils import key_split
    from distributed import Client, LocalCluster, get_task_stream

    from shopee_match import Pipeline, read_postings
    from shopee_match.distributed import local_cluster, predict_dask

    pipe = Pipeline.load(model)
    pipe.set_params(verbose=False)
    labels = ("local_cluster", "LocalCluster, Dask's defaults")
    best: dict[str, float] = {}
    kinds: dict[str, float] = defaultdict(float)
    with contextlib.ExitStack() as stack:
        clients = {labels[0]: stack.enter_context(local_cluster(2))}
        cl = stack.enter_context(LocalCluster(n_workers=2, threads_per_worker=1,
                                              processes=True))
        clients[labels[1]] = stack.enter_context(Client(cl))
        for it in range(repeat + 1):
            p0 = _cpu()
            pipe.predict(read_postings(postings))
            if it:
                best["one"] = min(best.get("one", np.inf), _cpu() - p0)
            for label, c in clients.items():
                w0, p0 = c.run(_cpu), _cpu()
                with get_task_stream(c) as ts:
                    out = predict_dask(pipe, glob, client=c)
                w1, p1 = c.run(_cpu), _cpu()
                if not it:
                    continue
                workers = sum(w1.values()) - sum(w0.values())
                print(f"  warm Dask run {it} ({label}): workers {workers:.1f} s CPU, "
                      f"scheduler and client {p1 - p0:.1f} s", flush=True)
                if workers + (p1 - p0) < best.get(label, np.inf):
                    best[label] = workers + (p1 - p0)
                    if label == labels[0]:
                        sub = out
                        kinds = defaultdict(float)
                        for task in ts.data:
                            name = key_split(task["key"])
                            for st in task["startstops"]:
                                if st["action"] == "compute":
                                    kinds[name] += st["stop"] - st["start"]
                        print("  stages (wall s):", {k: round(v, 1) for k, v in
                                                     out.attrs["shopee_match"]["timings"].items()})
    one = best.pop("one")
    print(f"  one machine (Pipeline.predict), least of {repeat}: {one:.1f} s CPU")
    return sub, one, best, dict(kinds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--postings", required=True)
    ap.add_argument("--parts", type=int, default=4)
    ap.add_argument("--work", default="/tmp/dask_same")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--baseline-src", help="another version's src/ folder: its Dask run too "
                    "(e.g. `git archive COMMIT src | tar -x -C /tmp/before`)")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    df = pd.read_csv(args.postings, dtype=str, keep_default_na=False)
    for i, rows in enumerate(np.array_split(np.arange(len(df)), args.parts)):
        df.iloc[rows].to_csv(work / f"part-{i}.csv", index=False)
    glob = str(work / "part-*.csv")
    py = [sys.executable, "-m", "shopee_match"]
    one_cmd = [*py, "match", args.postings, "--model", args.model, "-o", str(work / "one.csv"), "-q"]
    dask_cmd = [*py, "match", glob, "--model", args.model, "-o", str(work / "dask.csv"), "-q",
                "--scheduler", "local:2"]
    runs = [("one machine", one_cmd, None), ("dask local:2", dask_cmd, None)]
    if args.baseline_src:
        base_cmd = [*dask_cmd[:dask_cmd.index("-o") + 1], str(work / "dask_base.csv"),
                    *dask_cmd[dask_cmd.index("-o") + 2:]]
        runs.append(("dask local:2, baseline", base_cmd, args.baseline_src))
    best: dict[str, tuple[float, float]] = {}
    for _ in range(args.repeat):
        for name, cmd, src in runs:
            wall, cpu = _child(cmd, src)
            print(f"{name}: wall {wall:.1f} s, CPU {cpu:.1f} s", flush=True)
            if name not in best or cpu < best[name][1]:
                best[name] = (wall, cpu)
    sub_ts, one_cpu, task_cpu, kinds = _warm(args.model, args.postings, glob, args.repeat)
    n = len(df)
    one = pd.read_csv(work / "one.csv", dtype=str, keep_default_na=False)
    dask = pd.read_csv(work / "dask.csv", dtype=str, keep_default_na=False)
    same = int((one["matches"].to_numpy() == dask["matches"].to_numpy()).sum())
    same_ts = int((one["matches"].to_numpy() == sub_ts["matches"].to_numpy()).sum())
    print(f"postings {n}, {args.parts} partitions")
    print(f"match sets identical: CLI {same} / {n}, in-process Dask run {same_ts} / {n}; "
          f"files byte-identical: {(work / 'one.csv').read_bytes() == (work / 'dask.csv').read_bytes()}")
    if "label_group" in df.columns:
        from shopee_match.metrics import match_nothing_f1

        nothing = match_nothing_f1(df["label_group"].to_numpy())
        print(f"F1 one machine {_f1(one, df):.5f}, Dask {_f1(dask, df):.5f}, match nothing {nothing:.5f}")
    (w1, c1), (w2, c2) = best["one machine"], best["dask local:2"]
    print(f"CPU per posting, CLI: one machine {c1 / n * 1e3:.2f} ms, Dask (process + workers) "
          f"{c2 / n * 1e3:.2f} ms ({c2 / c1:.2f}x); wall {w1:.1f} s vs {w2:.1f} s")
    if args.baseline_src:
        base = pd.read_csv(work / "dask_base.csv", dtype=str, keep_default_na=False)
        wb, cb = best["dask local:2, baseline"]
        print(f"baseline Dask: {int((one['matches'].to_numpy() == base['matches'].to_numpy()).sum())}"
              f" / {n} match sets identical to one machine's, CPU {cb / n * 1e3:.2f} ms a posting "
              f"({cb / c1:.2f}x one machine), wall {wb:.1f} s"
              + (f", F1 {_f1(base, df):.5f}" if "label_group" in df.columns else ""))
    for label, dask_cpu in task_cpu.items():
        print(f"CPU per posting, warm, in process: one machine {one_cpu / n * 1e3:.2f} ms, "
              f"Dask on {label} {dask_cpu / n * 1e3:.2f} ms ({dask_cpu / one_cpu:.2f}x)")
    top = sorted(kinds.items(), key=lambda kv: -kv[1])[:10]
    print("task seconds (task stream, wall of each task):", ", ".join(f"{k} {v:.1f}" for k, v in top))
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
