"""Choosing the shipped model's cut without labels: criteria measured against hindsight.

    python benchmarks/unlabelled_cuts.py --data ../shared/data

On each scored catalogue of ``benchmarks/transfer.py`` (Shopee third, titles only; the
PriceRunner third the shipped model never saw; all of Amazon-Google) the shipped model's
pair probabilities are computed once, then every cut (threshold x min-matches) is scored.
Each criterion below picks a cut from what the catalogue shows of itself, no labels; a
criterion with a constant has it fitted on PriceRunner and is scored on the other two:

- ``plug-in``: the cut whose expected F1 is highest if the model's probabilities were
  true (a posting's expected true set: itself plus the sum of its pair probabilities);
- ``mixture``: a two-component Gaussian mixture over the logits of every candidate
  pair's probability (ZeroER's idea, on the model's score): the threshold where the
  upper component's posterior passes one half;
- ``clique``: the loosest cut whose match sets are at least a share ``c`` of their
  connected components (a loose cut chains products, so its sets stop being cliques);
  ``c`` is that share at PriceRunner's best cut;
- ``+ TF-IDF``: the shipped cut together with every candidate pair at TF-IDF cosine
  >= ``c`` (the pipeline's own title vectors), ``c`` the best on PriceRunner.

Also printed: the share of candidate pairs at TF-IDF cosine >= 0.5 that the shipped
cut keeps, and the share of true pairs among those it drops (a catalogue statistic
that separates Shopee from the other two; see RESULTS.md). Every F1 is printed beside
match nothing and the best cut in hindsight (a ceiling, not a result).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from shopee_match import Pipeline
from shopee_match.metrics import graph_f1_scores, match_nothing_f1

sys.path.insert(0, str(Path(__file__).parent))
from transfer import catalogues

NAMES = ("pricerunner", "shopee_titles", "amazon_google")
GRID = np.round(np.arange(0.1, 0.96, 0.05), 3)
COS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.01)


def clique_share(g: sp.csr_matrix) -> float:
    """Mean over postings of |match set| / |its connected component|."""
    _, lab = connected_components(g, directed=False)
    comp = np.bincount(lab)[lab]
    return float((np.diff(g.indptr) / comp).mean())


def plug_in_f1(g: sp.csr_matrix, proba: sp.csr_matrix, rowsum: np.ndarray) -> float:
    """Expected mean F1 of the cut ``g`` (diagonal included) were ``proba`` true."""
    size = np.diff(g.indptr) - 1
    etp = 1 + np.asarray(g.multiply(proba).sum(axis=1)).ravel()
    return float((2 * etp / (size + 2 + rowsum)).mean())


def mixture_cut(proba: sp.csr_matrix) -> float:
    """Threshold where a 2-component Gaussian mixture over pair logits switches."""
    from sklearn.mixture import GaussianMixture

    p = np.clip(sp.triu(proba, 1).tocsr().data, 1e-4, 1 - 1e-4)
    z = np.log(p / (1 - p)).reshape(-1, 1)
    gm = GaussianMixture(2, random_state=0).fit(z)
    hi = int(np.argmax(gm.means_.ravel()))
    grid = np.linspace(-6, 6, 1201).reshape(-1, 1)
    post = gm.predict_proba(grid)[:, hi]
    zc = float(grid[np.argmax(post >= 0.5), 0])
    return 1 / (1 + np.exp(-zc))


def analyse(name: str, pipe: Pipeline, cat: Any) -> dict[str, Any]:
    ens = pipe.combiner_
    graphs = pipe.step_graphs(cat)
    proba = sp.csr_matrix(ens.predict_proba_graph(graphs, cat.titles))
    cos = sp.csr_matrix(graphs["tfidf"])
    g = cat.groups()
    rowsum = np.asarray(proba.sum(axis=1)).ravel()
    cuts = {}
    for mm in (1, 2):
        for t in GRID:
            cut = ens.cut(proba, float(t), mm).tocsr()
            cuts[mm, float(t)] = (graph_f1_scores(cut, g).mean(), plug_in_f1(cut, proba, rowsum),
                                  clique_share(cut))
    shipped = ens.cut(proba, float(ens.threshold_)).tocsr()
    with_cos = {}
    for c in COS:
        extra = cos.copy()
        extra.data = (extra.data >= c).astype(np.float32)
        with_cos[c] = graph_f1_scores(((shipped + extra) > 0).astype(np.float32), g).mean()
    # the catalogue statistic: how many high-cosine pairs the shipped cut keeps
    hc = sp.triu(cos, 1).tocoo()
    k = hc.data >= 0.5
    r, c = hc.row[k], hc.col[k]
    kept = np.asarray(shipped[r, c]).ravel() > 0
    true = g[r] == g[c]
    return {"nothing": match_nothing_f1(g), "shipped": graph_f1_scores(shipped, g).mean(),
            "cuts": cuts, "mixture_t": mixture_cut(proba), "with_cos": with_cos,
            "kept_high_cos": float(kept.mean()), "true_dropped": float(true[~kept].mean()),
            "ens": ens, "proba": proba, "g": g}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    cats = catalogues(args.data)
    res = {n: analyse(n, Pipeline.pretrained(), cats[n]) for n in NAMES}
    pr = res["pricerunner"]
    best_pr = max(pr["cuts"], key=lambda k: pr["cuts"][k][0])
    c_star = pr["cuts"][best_pr][2]
    cos_star = max(COS, key=lambda c: pr["with_cos"][c])
    print(f"fitted on PriceRunner: clique share c = {c_star:.3f} (its best cut {best_pr}); "
          f"TF-IDF cosine c = {cos_star}")
    print("| catalogue | match nothing | shipped | plug-in | mixture | clique | + TF-IDF | "
          "best cut in hindsight | high-cosine pairs kept / true among dropped |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n, r in res.items():
        cuts = r["cuts"]
        best = max(cuts, key=lambda k: cuts[k][0])
        plug = max(cuts, key=lambda k: cuts[k][1])
        loose = [k for k in cuts if k[0] == 1 and cuts[k][2] >= c_star]
        cl = min(loose, key=lambda k: k[1]) if loose else (1, float(GRID[-1]))
        mix = r["ens"].cut(r["proba"], r["mixture_t"], 1)
        f_mix = graph_f1_scores(mix, r["g"]).mean()
        print(f"| {n} | {r['nothing']:.3f} | {r['shipped']:.3f} | {cuts[plug][0]:.3f} {plug} | "
              f"{f_mix:.3f} (t {r['mixture_t']:.2f}) | {cuts[cl][0]:.3f} {cl} | "
              f"{r['with_cos'][cos_star]:.3f} | {cuts[best][0]:.3f} {best} | "
              f"{r['kept_high_cos']:.3f} / {r['true_dropped']:.3f} |", flush=True)
    print("\nshipped cut + TF-IDF cosine >= c, every c:")
    for n, r in res.items():
        print(f"  {n}: " + ", ".join(f"{c}: {v:.4f}" for c, v in r["with_cos"].items()))


if __name__ == "__main__":
    main()
