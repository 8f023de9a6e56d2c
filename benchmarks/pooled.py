"""Issue 19's pooled catalogue: every real shop in one file, matched by the shipped model,
beside the seed recipe, in one run: wall, CPU, peak RSS and F1 per shop.

    python benchmarks/pooled.py --data ../shared/data --work /tmp/pooled

The catalogue is Shopee ``train_dev.csv`` + PriceRunner + Amazon-Google (62,432 titles),
label groups prefixed by shop so they never cross, written to ``--work`` (never into
the project). Each command runs in its own child process, timed by ``/usr/bin/time``
(wall, CPU, peak RSS):

- the seed recipe as people write it: scikit-learn ``TfidfVectorizer`` (words), top-50
  cosine neighbours (``NearestNeighbors(metric="cosine", algorithm="brute")``), pairs
  with cosine >= 0.5;
- ``shopee-match match POOLED.csv`` (the shipped model, no labels; default memory budget);
- with ``--memory-runs 64MB 16GB``, the same again under those budgets: the submissions
  must be identical (the block engine's answer does not depend on the block).

F1 is the mean per-posting F1 over each shop's postings inside the pool, beside matching
nothing. ``--alone`` also matches each shop's file on its own with the shipped model (the
pooled-vs-alone comparison of issue 20).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

SHOPS = {"shopee": "shopee/train_dev.csv", "pricerunner": "pricerunner/postings.csv",
         "amazon_google": "amazon_google/postings.csv"}

SEED = r"""
import sys
import numpy as np, pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.neighbors import NearestNeighbors
df = pd.read_csv(sys.argv[1], usecols=["posting_id", "title"])
x = TfidfVectorizer().fit_transform(df.title.astype(str))
nn = NearestNeighbors(n_neighbors=min(50, len(df)), metric="cosine", algorithm="brute").fit(x)
dist, idx = nn.kneighbors(x)
ids = df.posting_id.to_numpy()
rows = [" ".join(ids[i[d <= 0.5]]) for d, i in zip(dist, idx)]
pd.DataFrame({"posting_id": ids, "matches": rows}).to_csv(sys.argv[2], index=False)
"""


def pooled(data: Path, work: Path) -> Path:
    """Write the pooled catalogue (``posting_id,title,label_group,source``)."""
    parts = []
    for shop, rel in SHOPS.items():
        df = pd.read_csv(data / rel, usecols=["posting_id", "title", "label_group"])
        df["label_group"] = shop + ":" + df.label_group.astype(str)
        df["source"] = shop
        parts.append(df)
    out = work / "pooled.csv"
    pd.concat(parts).to_csv(out, index=False)
    return out


def timed(cmd: list[str], label: str) -> dict[str, float | str]:
    """Run ``cmd`` under ``/usr/bin/time``: wall and CPU seconds, peak RSS (GiB)."""
    t0 = time.perf_counter()
    res = subprocess.run(["/usr/bin/time", "-f", "TIME %e %U %S %M", *cmd],
                         capture_output=True, text=True)
    if res.returncode:
        sys.exit(f"{label} failed:\n{res.stderr[-3000:]}")
    line = [x for x in res.stderr.splitlines() if x.startswith("TIME ")][-1].split()
    row: dict[str, float | str] = {"run": label, "wall_s": float(line[1]),
                                   "cpu_s": float(line[2]) + float(line[3]),
                                   "peak_gib": int(line[4]) / 2**20}
    print(f"  {label}: wall {row['wall_s']:.1f} s, CPU {row['cpu_s']:.1f} s, peak RSS "
          f"{row['peak_gib']:.2f} GiB ({time.perf_counter() - t0:.0f} s)", flush=True)
    return row


def f1_by_shop(sub: Path, labelled: pd.DataFrame) -> dict[str, float]:
    """Mean per-posting F1 of a submission over each shop's postings, and match nothing's."""
    from shopee_match.metrics import f1_scores, match_nothing_f1

    pred = pd.read_csv(sub).set_index("posting_id").matches.reindex(labelled.posting_id)
    by_group = labelled.groupby("label_group").posting_id.apply(list)
    true = [by_group[g] for g in labelled.label_group]
    f1 = np.asarray(f1_scores(true, list(pred.fillna("").str.split())))
    out = {}
    for shop in SHOPS:
        m = (labelled.source == shop).to_numpy()
        if m.any():
            out[shop] = float(f1[m].mean())
            out[f"{shop} (match nothing)"] = float(match_nothing_f1(labelled.label_group[m].to_numpy()))
    out["all"] = float(f1.mean())
    out["all (match nothing)"] = float(match_nothing_f1(labelled.label_group.to_numpy()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="../shared/data")
    ap.add_argument("--work", type=Path, default=Path("/tmp/pooled"))
    ap.add_argument("--memory-runs", nargs="*", default=[], metavar="SIZE",
                    help="also match under these budgets and check the submissions are identical")
    ap.add_argument("--alone", action="store_true", help="also match each shop alone")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    path = pooled(args.data, args.work)
    labelled = pd.read_csv(path)
    print(f"pooled catalogue: {len(labelled):,} postings from {len(SHOPS)} shops -> {path}")
    py = sys.executable
    rows = [timed([py, "-c", SEED, str(path), str(args.work / "seed.csv")], "seed recipe")]
    rows.append(timed([py, "-m", "shopee_match", "match", str(path), "-o",
                       str(args.work / "ours.csv"), "-q"], "shopee-match match (default budget)"))
    subs = {"seed recipe": args.work / "seed.csv", "shopee-match match": args.work / "ours.csv"}
    for size in args.memory_runs:
        out = args.work / f"ours_{size}.csv"
        rows.append(timed([py, "-m", "shopee_match", "match", str(path), "-o", str(out),
                           "--memory", size, "-q"], f"shopee-match match --memory {size}"))
        same = pd.read_csv(out).equals(pd.read_csv(args.work / "ours.csv"))
        print(f"    submission identical to the default budget's: {same}")
    table = pd.DataFrame(rows).set_index("run")
    seed = table.loc["seed recipe"]
    table["wall_x_seed"] = table.wall_s / seed.wall_s
    table["cpu_x_seed"] = table.cpu_s / seed.cpu_s
    print(table.round(2).to_string())
    scores = pd.DataFrame({name: f1_by_shop(sub, labelled) for name, sub in subs.items()})
    if args.alone:
        alone = {}
        for shop in SHOPS:
            part = labelled[labelled.source == shop]
            src = args.work / f"{shop}.csv"
            part.to_csv(src, index=False)
            out = args.work / f"{shop}_alone.csv"
            timed([py, "-m", "shopee_match", "match", str(src), "-o", str(out), "-q"],
                  f"{shop} alone")
            alone[shop] = f1_by_shop(out, part)[shop]
        scores["shopee-match, each shop alone"] = pd.Series(alone)
    print("\nmean per-posting F1 inside the pool (label groups never cross shops):")
    print(scores.round(4).to_string())


if __name__ == "__main__":
    main()
