"""A few labelled groups against none: the shipped model calibrated to each catalogue.

    python benchmarks/calibrate.py --data ../shared/data
    python benchmarks/calibrate.py --data ../shared/data --shares 0.02 0.05 0.2 --seeds 0 1 2

For each scored catalogue of ``benchmarks/transfer.py`` (a group-disjoint third of Shopee,
with phash and titles alone; a third of PriceRunner the shipped model never saw; all of
Amazon-Google), a share of its label groups is "labelled" (``train_test_split_groups``,
per seed) and the rest hidden. The shipped model's threshold and min-matches are chosen on
the labelled groups (``shopee_match.calibration``, with the rest of the catalogue as
unlabelled context) and every figure is scored on the hidden groups only, beside match
nothing on the same postings, the shipped threshold, and the best threshold in hindsight
(tuned on the scored groups themselves: a ceiling, not a result).

The pair probabilities are computed once per catalogue (they do not depend on which rows
are labelled), every cut of them once; each split re-scores the cuts on its labelled rows
and picks one with the library's own ``best_point`` (what ``calibrate`` does: each cut with
and without what self-training adds, ``st`` in the table's cuts). One
end-to-end ``Pipeline.calibrate`` call per catalogue checks that it picks the same cut.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from shopee_match import Pipeline, train_test_split_groups
from shopee_match.calibration import CALIBRATION_GRID, best_point, self_trained_pairs
from shopee_match.data import Postings
from shopee_match.metrics import graph_f1_scores, match_nothing_f1

sys.path.insert(0, str(Path(__file__).parent))
from transfer import TESTS, catalogues


def split_rows(cat: Postings, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row positions of the labelled share of groups and of the hidden rest."""
    lab, _ = train_test_split_groups(cat, 1 - share, random_state=seed)
    is_lab = cat.df["posting_id"].isin(set(lab.df["posting_id"])).to_numpy()
    return np.flatnonzero(is_lab), np.flatnonzero(~is_lab)


def unlabelled_stats(tfidf: sp.csr_matrix, proba: sp.csr_matrix) -> str:
    """What an unlabelled catalogue shows of itself: the share of postings whose best text
    neighbour is mutual, the median best cosine and relative gap to the second, and the
    mean of each posting's highest pair probability."""
    g = sp.csr_matrix(tfidf, dtype=np.float64)
    g.setdiag(0)
    g.eliminate_zeros()
    n = g.shape[0]
    has = np.diff(g.indptr) > 0
    best = np.asarray(g.argmax(axis=1)).ravel()
    mutual = has & has[best] & (best[best] == np.arange(n))
    rows = [np.sort(g.data[a:b])[::-1] for a, b in zip(g.indptr[:-1], g.indptr[1:]) if b - a > 1]
    top1 = np.array([r[0] for r in rows])
    gap = np.array([(r[0] - r[1]) / r[0] for r in rows])
    pmax = np.asarray(proba.max(axis=1).todense()).ravel()
    return (f"mutual best {mutual[has].mean():.3f}, best cosine {np.median(top1):.3f}, "
            f"gap to 2nd {np.median(gap):.3f}, mean max P {pmax.mean():.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--shares", type=float, nargs="+", default=[0.02, 0.05, 0.2])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    cats = catalogues(args.data)
    print("| catalogue | labelled groups | match nothing | shipped | calibrated | ceiling | cut (t, min) |")
    print("|---|---|---|---|---|---|---|")
    for name in TESTS:
        cat = cats[name]
        pipe = Pipeline.pretrained()
        ens = pipe.combiner_
        t0 = time.perf_counter()
        graphs = pipe.step_graphs(cat)
        proba = ens.predict_proba_graph(graphs, cat.titles)
        secs = time.perf_counter() - t0
        stats = unlabelled_stats(graphs["tfidf"], proba)
        g = cat.groups()
        learnt = self_trained_pairs(ens, proba, cat.titles)  # None: no self-training
        options = [False] if learnt is None else [False, True]
        shipped = graph_f1_scores(ens.matches(proba, cat.titles), g)
        mms = tuple(sorted({1, int(ens.min_matches)}))
        cuts = {}  # every (min matches, self-training, threshold) graph once; splits rescore
        for mm in mms:
            for st in options:
                for t in CALIBRATION_GRID:
                    g_t = ens.cut(proba, float(t), mm)
                    cuts[(mm, st), float(t)] = sp.csr_matrix(g_t + learnt) if st else g_t
        truth = {k: graph_f1_scores(v, g) for k, v in cuts.items()}
        first_cut = None
        for share in args.shares:
            cells = []
            for seed in args.seeds:
                lab, hidden = split_rows(cat, share, seed)
                known = g.copy()
                known[hidden] = g.max() + 1 + np.arange(len(hidden))  # hidden: own groups
                curves = {(mm, st): np.array([graph_f1_scores(cuts[(mm, st), float(t)], known)[
                    lab].mean() for t in CALIBRATION_GRID]) for mm in mms for st in options}
                t, mm, _ = best_point(curves)
                if share == args.shares[-1] and seed == args.seeds[0]:
                    first_cut = (t, mm)
                ceiling = max(v[hidden].mean() for v in truth.values())
                cells.append((len(np.unique(g[lab])), match_nothing_f1(g[hidden]),
                              shipped[hidden].mean(), truth[mm, t][hidden].mean(), ceiling,
                              f"{t:.3f}, {mm[0]}{', st' if mm[1] else ''}"))
            a = np.array([c[:5] for c in cells], dtype=float)
            m, s = a.mean(0), a.std(0)
            print(f"| {name} ({share:.0%}) | {m[0]:.0f} | {m[1]:.3f} | {m[2]:.3f} | "
                  f"**{m[3]:.3f}** ± {s[3]:.3f} | {m[4]:.3f} | {'; '.join(c[5] for c in cells)} |",
                  flush=True)
        # end to end: the public call on the first split picks the same cut
        lab, hidden = split_rows(cat, args.shares[-1], args.seeds[0])
        t1 = time.perf_counter()
        p2 = Pipeline.pretrained().calibrate(cat.subset(lab), context=cat.subset(hidden))
        c = p2.tuning_["calibration"]
        same = ("same cut" if (c["threshold"], (c["min_matches"], c.get("self_train", False)))
                == first_cut else "OTHER CUT")
        print(f"  ({name}: probabilities {secs:.0f} s; Pipeline.calibrate on "
              f"{c['labelled_postings']} labelled + {c['context_postings']} context postings: "
              f"threshold {c['threshold']:.3f}, min {c['min_matches']}, "
              f"{time.perf_counter() - t1:.0f} s, {same} as the fast path; unlabelled: "
              f"{stats})", flush=True)


if __name__ == "__main__":
    main()
