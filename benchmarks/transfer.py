"""Transfer table: fit on one catalogue, score on others (never on the groups fitted).

    python benchmarks/transfer.py --data ../shared/data
    python benchmarks/transfer.py --data ../shared/data --rows nothing pretrained   # some rows

Columns: a group-disjoint third of Shopee's ``train_dev.csv`` (titles + phash, and titles
alone), a group-disjoint third of PriceRunner, and all of Amazon-Google (titles only, the
other columns unused). The other two thirds of Shopee and PriceRunner are what the
"fit on" rows learn from; the shipped pretrained model learnt from the same two thirds of
PriceRunner (see ``benchmarks/train_pretrained.py``) and never saw Shopee.

Rows: match nothing (each posting alone: F1 = 2 / (|group| + 1)), the seed recipe
(competition notebook TF-IDF, threshold tuned on Shopee, union with exact phash), the
untuned default that ``shopee-match match`` used before a model was shipped, the shipped
pretrained model, and ``Pipeline.default()`` fitted on Shopee, on PriceRunner and on both
(the PriceRunner and "both" rows with ``general=False``, as they were first measured).
The Shopee-fitted model is scored as fitted by default (general catalogues in the fit,
shift guard on), with the guard off (``fit_shopee_noguard``), fitted without the general
catalogues (``fit_shopee_nogeneral``) and with neither (``fit_shopee_nogeneral_noguard``,
the default before issue 20).
Each cell: mean per-posting F1, precision, recall and seconds to match. Fitted models are
kept under ``--work`` so a rerun only scores.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from shopee_match import Pipeline, read_postings, train_test_split_groups
from shopee_match.data import Postings
from shopee_match.metrics import graph_precision_recall_f1, match_nothing_f1

sys.path.insert(0, str(Path(__file__).parent))
from accuracy import seed_recipe

ROWS = ("nothing", "seed", "untuned", "pretrained", "fit_shopee", "fit_pricerunner", "fit_both",
        "fit_shopee_thin03", "fit_shopee_noguard", "fit_shopee_nogeneral",
        "fit_shopee_nogeneral_noguard")
LABELS = {
    "nothing": "match nothing",
    "seed": "seed recipe (tuned on Shopee)",
    "untuned": "untuned default (no model, before)",
    "pretrained": "shipped pretrained (`Pipeline.pretrained()`)",
    "fit_shopee": "`Pipeline.default()` fitted on Shopee",
    "fit_pricerunner": "`Pipeline.default()` fitted on PriceRunner",
    "fit_both": "`Pipeline.default()` fitted on both",
    "fit_shopee_thin03": "`Pipeline.default()` fitted on Shopee, reranker `thin=0.3`",
    "fit_shopee_noguard": "fitted on Shopee, `shift_guard=False`",
    "fit_shopee_nogeneral": "fitted on Shopee, `general=False`",
    "fit_shopee_nogeneral_noguard": "fitted on Shopee, `general=False, shift_guard=False` (before)",
}
#: rows that score another row's model with the shift guard off
NOGUARD = {"fit_shopee_noguard": "fit_shopee",
           "fit_shopee_nogeneral_noguard": "fit_shopee_nogeneral"}


def catalogues(data: Path, seed: int = 0) -> dict[str, Postings]:
    """The fit parts and the scored parts (group-disjoint thirds, ``random_state=seed``)."""
    sh_tr, sh_te = train_test_split_groups(read_postings(data / "shopee" / "train_dev.csv"), 1 / 3, seed)
    pr_tr, pr_te = train_test_split_groups(read_postings(data / "pricerunner" / "postings.csv"), 1 / 3, seed)
    ag = read_postings(data / "amazon_google" / "postings.csv")
    keep = ["posting_id", "title", "label_group"]
    sh_titles = Postings(sh_te.df[keep], source="shopee test (titles only)")
    return {"sh_tr": sh_tr, "pr_tr": pr_tr, "shopee": sh_te, "shopee_titles": sh_titles,
            "pricerunner": Postings(pr_te.df[keep], source="pricerunner test"),
            "amazon_google": Postings(ag.df[keep], source="amazon_google")}


TESTS = ("shopee", "shopee_titles", "pricerunner", "amazon_google")


def shipped(folder: Path | None) -> Pipeline:
    """The shipped model, or a candidate model folder scored in its place."""
    return Pipeline.load(folder) if folder else Pipeline.pretrained()


def fitted(row: str, cats: dict[str, Postings], work: Path, refit: bool,
           pretrained: Path | None = None) -> Any:
    """The row's pipeline: loaded from ``work`` when fitted before."""
    if row == "pretrained":
        return shipped(pretrained)
    if row in ("nothing", "untuned"):
        return None
    if row in NOGUARD:
        return fitted(NOGUARD[row], cats, work, refit, pretrained).set_params(shift_guard=False)
    path = work / row
    if path.is_dir() and not refit:
        return Pipeline.load(path)
    train: Any = {"seed": cats["sh_tr"], "fit_shopee": cats["sh_tr"],
                  "fit_pricerunner": cats["pr_tr"], "fit_both": [cats["sh_tr"], cats["pr_tr"]],
                  "fit_shopee_thin03": cats["sh_tr"], "fit_shopee_nogeneral": cats["sh_tr"]}[row]
    pipe = seed_recipe(True) if row == "seed" else Pipeline.default(phash=True)
    if row in ("fit_pricerunner", "fit_both", "fit_shopee_nogeneral"):
        pipe.set_params(general=False)
    if row == "seed":  # the competition's recipe, as it was
        pipe.set_params(shift_guard=False)
    if row.endswith("_thin03"):
        pipe.ensemble.set_params(thin=0.3)
    t0 = time.perf_counter()
    pipe.fit(train)
    print(f"  fitted {row} in {time.perf_counter() - t0:.0f} s", flush=True)
    pipe.save(path)
    return pipe


def score(row: str, pipe: Any, test: Postings) -> dict[str, float]:
    t0 = time.perf_counter()
    if row == "nothing":
        g = sp.identity(len(test), format="csr")
    else:
        if row == "untuned":
            pipe = Pipeline.default(phash=test.has_phash, rerank=False).set_params(tune=False)
            pipe.fit(test)
        g = pipe.predict_graph(test)
    secs = time.perf_counter() - t0
    p, r, f = graph_precision_recall_f1(g, test.groups())
    return {"f1": float(f.mean()), "precision": float(p.mean()), "recall": float(r.mean()),
            "seconds": secs, "largest_set": int(np.diff(sp.csr_matrix(g).indptr).max()),
            "largest_group": int(np.bincount(test.groups()).max())}


def grow_check(cats: dict[str, Postings], pretrained: Path | None = None) -> None:
    """The shipped model with and without match sets growing past k: F1, and the largest
    match set beside the largest true group (chaining shows as sets far larger)."""
    print("\ngrowth past k (shipped model): F1 / largest match set / largest true group")
    for t in TESTS:
        cells = []
        for grow in (None, 0.5):
            pipe = shipped(pretrained)
            pipe.combiner_.set_params(grow=grow)
            c = score("pretrained", pipe, cats[t])
            cells.append(f"grow={grow}: {c['f1']:.4f} / {c['largest_set']} / {c['largest_group']}")
        print(f"  {t}: " + "; ".join(cells), flush=True)


def table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    head = "| row | " + " | ".join(f"{t} F1 / P / R / s" for t in TESTS) + " |"
    lines = [head, "|---|" + "---|" * len(TESTS)]
    for row, cells in results.items():
        vals = []
        for t in TESTS:
            c = cells.get(t)
            vals.append("—" if c is None else
                        f"**{c['f1']:.3f}** / {c['precision']:.3f} / {c['recall']:.3f} / {c['seconds']:.0f}")
        lines.append(f"| {LABELS[row]} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True,
                    help="the folder holding shopee/, pricerunner/, amazon_google/")
    ap.add_argument("--work", type=Path, default=Path("/tmp/shopee_match_transfer"),
                    help="where fitted models and results are kept")
    ap.add_argument("--rows", nargs="+", choices=ROWS, default=list(ROWS))
    ap.add_argument("--refit", action="store_true", help="fit again even if a model is in --work")
    ap.add_argument("--pretrained", type=Path, metavar="DIR",
                    help="score this model folder as the pretrained row (e.g. a candidate from "
                         "train_pretrained.py -o DIR) instead of the shipped one")
    ap.add_argument("--grow-check", action="store_true",
                    help="also score the shipped model with and without growth past k")
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    args.work.mkdir(parents=True, exist_ok=True)
    cats = catalogues(args.data)
    for t in TESTS:
        g = cats[t].groups()
        print(f"{t}: {len(g)} postings, {g.max() + 1} groups, match nothing F1 {match_nothing_f1(g):.4f}")
    results: dict[str, dict[str, dict[str, float]]] = {}
    out = args.work / "results.json"
    if out.is_file():
        results = json.loads(out.read_text())
    for row in args.rows:
        print(f"{LABELS[row]}", flush=True)
        pipe = fitted(row, cats, args.work, args.refit, args.pretrained)
        results[row] = {}
        for t in TESTS:
            results[row][t] = score(row, pipe, cats[t])
            c = results[row][t]
            print(f"  {t}: F1 {c['f1']:.4f} P {c['precision']:.4f} R {c['recall']:.4f} "
                  f"({c['seconds']:.0f} s)", flush=True)
        out.write_text(json.dumps(results, indent=1))
    ordered = {r: results[r] for r in ROWS if r in results}
    print()
    print(table(ordered))
    if args.grow_check:
        grow_check(cats, args.pretrained)


if __name__ == "__main__":
    main()
