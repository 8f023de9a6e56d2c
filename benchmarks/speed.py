"""Issue 12's speed goals in one run: the CLI's ``match`` and ``fit`` against the seed recipe.

    python benchmarks/speed.py --data ../shared/data/shopee/train_dev.csv --work /tmp/speed

The labelled file is cut into group-disjoint halves (``train_test_split_groups(p, 0.5,
0)``) written to ``--work`` (never into the project). The seed recipe (plain word
TF-IDF, tuned cosine threshold, union with exact phash; ``accuracy.seed_recipe``) is
fitted on the first half and saved. Then, each in its own child process, timed by the
child's CPU (user + sys from ``getrusage``) and wall clock:

- ``shopee-match match HOLDOUT --model SEED`` and ``shopee-match match HOLDOUT --model M``
  (``M``: ``shopee-match fit TRAIN``, fitted here unless ``--model`` names one; with
  ``--baseline-src`` and no ``--model`` each code fits and matches with its own, so a
  change to what ``fit`` learns is timed too), and ``M`` again with its reranker's
  ``n_jobs`` set to every core;
- ``shopee-match fit DATA`` (the default, on the whole file) and the seed's ``match DATA``.

Prints each command's times, the ratios to the seed and the F1 of every submission.
CPU is the figure to read on a shared machine: wall time swings with other jobs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import seed_recipe

from shopee_match import read_postings, train_test_split_groups
from shopee_match.metrics import f1_scores, match_nothing_f1


def timed(args: list[str], label: str, src: str | None = None) -> dict[str, float | str]:
    """Run ``python -m shopee_match ARGS`` in a child process (the package from ``src``
    when given); its CPU (user + sys) and wall seconds."""
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "shopee_match", *args, "-q"], check=True, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    tag = "before" if src else "now"
    print(f"  {label} ({tag}): CPU {cpu:.1f} s, wall {wall:.1f} s", flush=True)
    return {"run": label, "code": tag, "cpu_s": cpu, "wall_s": wall,
            "minflt": after.ru_minflt - before.ru_minflt}


def submission_f1(sub: Path, labelled: Path) -> float:
    """Mean per-posting F1 of a submission CSV against the labelled file's groups."""
    truth = pd.read_csv(labelled, usecols=["posting_id", "label_group"])
    ids = truth.posting_id.to_numpy()
    by_group = truth.groupby("label_group").posting_id.apply(list)
    true = [by_group[g] for g in truth.label_group]
    pred = pd.read_csv(sub).set_index("posting_id").loc[ids, "matches"].str.split()
    return float(np.mean(f1_scores(true, list(pred))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="labelled CSV (train_dev.csv)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/speed"),
                    help="where the halves, models and submissions go")
    ap.add_argument("--model", type=Path, help="a model fitted on the first half (skips that fit)")
    ap.add_argument("--baseline-model", type=Path,
                    help="the model the baseline code matches with (default: --model; "
                         "without --model, each code fits its own on the first half, timed)")
    ap.add_argument("--repeat", type=int, default=2, help="runs of each match (best CPU kept)")
    ap.add_argument("--no-fit", action="store_true", help="skip the fit of the whole file")
    ap.add_argument("--baseline-src", type=Path,
                    help="also time every command with the package from this src folder (an "
                         "older checkout: git worktree add /tmp/before REV), interleaved")
    args = ap.parse_args()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    train_csv, hold_csv = work / "train.csv", work / "holdout.csv"
    if not (train_csv.exists() and hold_csv.exists()):
        train, hold = train_test_split_groups(read_postings(args.data), 0.5, 0)
        train.df.to_csv(train_csv, index=False)
        hold.df.to_csv(hold_csv, index=False)
    seed_dir = work / "seed"
    if not (seed_dir / "config.json").exists():
        seed_recipe(has_phash=True).fit(read_postings(train_csv)).save(seed_dir)
    srcs = [None] if args.baseline_src is None else [str(args.baseline_src), None]
    rows = []
    # the model each code matches with: its own fit of the first half unless given
    models: dict[str | None, Path] = {}
    for src in srcs:
        given = args.baseline_model if src and args.baseline_model else args.model
        if given is None:
            given = work / ("M_before" if src else "M")
            rows.append(timed(["fit", str(train_csv), "-o", str(given)], "fit TRAIN (half)", src))
        models[src] = given
    # the same model with its trees on every core (a saved model keeps the n_jobs it was
    # fitted with)
    threaded: dict[str | None, Path] = {}
    for src, model in models.items():
        threaded[src] = work / f"{model.name}_all_cores"
        shutil.rmtree(threaded[src], ignore_errors=True)
        shutil.copytree(model, threaded[src])
        config = json.loads((threaded[src] / "config.json").read_text())
        config["ensemble"]["params"]["n_jobs"] = None
        (threaded[src] / "config.json").write_text(json.dumps(config))
    runs: list[tuple[str, Path, Any]] = [
        ("seed match HOLDOUT", hold_csv, {s: seed_dir for s in srcs}),
        ("match HOLDOUT --model M", hold_csv, models),
        ("  same, trees on all cores", hold_csv, threaded)]
    if not args.no_fit:
        runs.append(("seed match DATA", args.data, {s: seed_dir for s in srcs}))
    f1s: dict[str, float] = {}
    subs: dict[tuple[str, bool], bytes] = {}
    for label, csv, mdirs in runs:
        for _ in range(args.repeat):  # versions interleaved: the same load for both
            for src in srcs:
                mdir = mdirs[src]
                tag = "before" if src else "now"
                out = work / f"sub_{mdir.name}_{csv.stem}_{tag}.csv"
                rows.append(timed(["match", str(csv), "--model", str(mdir), "-o", str(out)],
                                  label, src))
                subs[label, src is None] = out.read_bytes()
                if csv == hold_csv:
                    f1s[f"{label.strip()} ({tag})"] = submission_f1(out, hold_csv)
    if not args.no_fit:
        for src in srcs:
            rows.append(timed(["fit", str(args.data), "-o", str(work / "M_full")], "fit DATA",
                              src))
    best = pd.DataFrame(rows).groupby(["run", "code"], sort=False)[
        ["cpu_s", "wall_s", "minflt"]].min().unstack("code")
    print(f"\nload average {os.getloadavg()[0]:.1f}; best of {args.repeat} for the matches")
    print(best.round(1).to_string())

    def cell(run: str, what: str, code: str) -> float:
        if (what, code) not in best.columns:
            return float("nan")
        return float(np.asarray(best.loc[run, (what, code)], dtype=float))

    def ratio(num: str, den: str, what: str, goal: str) -> None:
        for code in ("before", "now"):
            if np.isnan(cell(num, "cpu_s", code)):
                continue
            cpu = cell(num, "cpu_s", code) / cell(den, "cpu_s", code)
            wall = cell(num, "wall_s", code) / cell(den, "wall_s", code)
            print(f"{what} ({code}): CPU {cpu:.2f}x, wall {wall:.2f}x   (goal {goal})")

    ratio("match HOLDOUT --model M", "seed match HOLDOUT", "match --model M / seed match", "<= 2x")
    if len(models) > 1 and "fit TRAIN (half)" in best.index:
        ratio("fit TRAIN (half)", "seed match HOLDOUT", "fit TRAIN (half) / seed match HOLDOUT",
              "-")
    ratio("  same, trees on all cores", "seed match HOLDOUT", "  trees on all cores", "<= 2x")
    if not args.no_fit:
        ratio("fit DATA", "seed match DATA", "fit DATA / seed match DATA", "<= 10x")
    nothing = match_nothing_f1(read_postings(hold_csv).groups())
    for label, f1 in f1s.items():
        print(f"F1 {label}: {f1:.4f}   (match nothing {nothing:.4f})")
    if args.baseline_src is not None:
        for label, _, _ in runs:
            same = subs[label, True] == subs[label, False]
            print(f"{label.strip()}: submission before and now {'identical' if same else 'DIFFER'}")

if __name__ == "__main__":
    main()
