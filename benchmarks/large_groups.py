"""Products with more offers than the neighbours searched: match-set growth, one round
against rounds until nothing changes (the shipped model, no labels).

    python benchmarks/large_groups.py

Each catalogue mixes small products with a few of hundreds of offers (``make_titles``,
ids and groups prefixed per part). The shipped model scores the candidate pairs once;
then its cut and self-training run with ``grow_rounds=1`` and with ``grow_rounds=None``
(the shipped setting). Printed: mean F1 (all, postings of the large products, the
others) beside match nothing, the largest match set and the pairs joining two products.
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import pandas as pd

#: (products, offers per product) per part; each catalogue is one list
MIXES = {
    "100-300 offers": [(1500, (1, 4)), (8, (100, 300))],
    "40-120 offers": [(2000, (1, 2)), (20, (40, 120))],
    "300-500 offers": [(800, (1, 6)), (4, (300, 500))],
}


def catalogue(mix: list[tuple[int, tuple[int, int]]], seed: int) -> pd.DataFrame:
    from shopee_match.datasets import make_titles

    parts = []
    for k, (n, per) in enumerate(mix):
        df = make_titles(n, per_group=per, seed=seed + k)
        df["posting_id"] = f"s{k}_" + df["posting_id"].astype(str)
        df["label_group"] = f"s{k}:" + df["label_group"].astype(str)
        parts.append(df)
    return pd.concat(parts, ignore_index=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=500)
    args = ap.parse_args()

    from shopee_match import Pipeline, Postings
    from shopee_match.metrics import graph_f1_scores, match_nothing_f1

    pipe = Pipeline.pretrained()
    pipe.set_params(verbose=False)
    rr = pipe.combiner_
    print("| catalogue | postings | match nothing | rounds | F1 | large products | others "
          "| largest set | pairs across products | seconds (cut) |")
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for i, (name, mix) in enumerate(MIXES.items()):
        df = catalogue(mix, args.seed + 10 * i)
        cat = Postings(df)
        g = cat.groups()
        large = np.asarray(df["label_group"].str.startswith(f"s{len(mix) - 1}:"))
        proba = rr.predict_proba_graph(pipe.step_graphs(cat), cat.titles)
        for rounds in (1, None):
            t0 = time.perf_counter()
            m = copy.deepcopy(rr).set_params(grow_rounds=rounds).matches(proba, cat.titles)
            secs = time.perf_counter() - t0
            f1 = graph_f1_scores(m, g)
            pairs = m.tocoo()
            across = int(((g[pairs.row] != g[pairs.col])).sum() // 2)
            print(f"| {name} | {len(df)} | {match_nothing_f1(g):.4f} | {rounds or 'until stable'} "
                  f"| **{f1.mean():.4f}** | {f1[large].mean():.4f} | {f1[~large].mean():.4f} "
                  f"| {int(np.diff(m.tocsr().indptr).max())} | {across} | {secs:.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
