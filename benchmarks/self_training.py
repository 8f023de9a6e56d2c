"""Self-training on the catalogue matched: the shipped model with and without it.

    python benchmarks/self_training.py --data ../shared/data

On each catalogue the shipped model's pair probabilities are computed once; then its own
cut (``PairReranker.select``) and the cut plus what self-training adds
(``PairReranker.matches``, ``self_train=True``) are scored against the labels, beside
match nothing. Catalogues: ``benchmarks/transfer.py``'s scored parts (the Shopee third,
titles only; the PriceRunner third the shipped model never saw; all of Amazon-Google),
Shopee's other two thirds (titles only) and three generated catalogues (the package's
generator: coded titles, one to ten offers a product). No constant of self-training was
chosen on any of them: the one-half point and the 0.5 similarity floor were set before
they were scored (see ``src/shopee_match/rerank/_selftrain.py``).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import scipy.sparse as sp

from shopee_match import Pipeline, Postings
from shopee_match._generate import GENERAL_MIXES, make_titles
from shopee_match.metrics import graph_f1_scores, match_nothing_f1

sys.path.insert(0, str(Path(__file__).parent))
from transfer import catalogues


def score(name: str, cat: Postings) -> str:
    """One table row: F1 of the cut and of the cut with self-training, and what it did."""
    pipe = Pipeline.pretrained()
    rr = pipe.combiner_
    proba = sp.csr_matrix(rr.predict_proba_graph(pipe.step_graphs(cat), cat.titles))
    g = cat.groups()
    cut = rr.select(proba)
    t0 = time.perf_counter()
    added = rr.self_trained(proba, cat.titles, cut)
    seconds = time.perf_counter() - t0
    both = sp.csr_matrix(cut + added)
    up = sp.triu(added, 1).tocoo()
    prec = f"{(g[up.row] == g[up.col]).mean():.2f}" if up.nnz else "-"
    return (f"| {name} | {len(cat):,} | {match_nothing_f1(g):.4f} | {graph_f1_scores(cut, g).mean():.4f} "
            f"| **{graph_f1_scores(both, g).mean():.4f}** | {up.nnz:,} | {prec} | {seconds:.1f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    cats = catalogues(args.data)
    keep = ["posting_id", "title", "label_group"]
    rows = {"Shopee third, titles": cats["shopee_titles"],
            "Shopee other two thirds, titles": Postings(cats["sh_tr"].df[keep]),
            "PriceRunner third": cats["pricerunner"],
            "Amazon-Google": cats["amazon_google"]}
    for i, (lo, hi) in enumerate(GENERAL_MIXES):
        rows[f"generated, {lo}-{hi} offers a product"] = Postings(
            make_titles(round(3000 / ((lo + hi) / 2)), (lo, hi), seed=77 + i))
    print("| catalogue | postings | match nothing | shipped cut | + self-training | pairs added "
          "| true among added | seconds |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, cat in rows.items():
        print(score(name, cat), flush=True)


if __name__ == "__main__":
    main()
