"""Rebuild the general model shipped in the package (``Pipeline.pretrained()``).

    python benchmarks/train_pretrained.py --data ../shared/data
    python benchmarks/train_pretrained.py --data ../shared/data -o /tmp/general   # elsewhere

Learns only from data the project may redistribute a model of:

- PriceRunner offers (UCI Machine Learning Repository, dataset 837, CC BY 4.0): the two
  thirds of its label groups that ``train_test_split_groups(..., 1/3, random_state=0)``
  leaves for fitting (the other third is what ``benchmarks/transfer.py`` scores);
- thinned copies of those groups (each keeps one offer, the others each with
  probability 0.15 or 0.5), so that the model also sees catalogues where most products
  have one offer and a nearest neighbour is usually another product;
- catalogues made by :func:`shopee_match.make_catalog` (titles, and JPEG images whose
  phash the model learns to read), of several group-size mixes.

Never Shopee's competition data, whose terms restrict it. The folder written is a plain
saved pipeline (JSON, LightGBM text models; no pickle).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from shopee_match import Pipeline, make_catalog, read_postings, train_test_split_groups
from shopee_match.data import Postings

OUT = Path(__file__).resolve().parents[1] / "src" / "shopee_match" / "pretrained" / "general"


def training_catalogues(data: Path, seed: int = 0) -> list[Postings]:
    pr = read_postings(data / "pricerunner" / "postings.csv")
    pr_train, _ = train_test_split_groups(pr, 1 / 3, random_state=0)
    pr_train = Postings(pr_train.df[["posting_id", "title", "label_group"]], source="pricerunner (2/3)")
    pr_train = drop_shared_titles(pr_train)
    thinned = [thin(pr_train, keep, seed + i) for i, keep in enumerate((0.15, 0.5))]
    generated = [
        make_catalog(n_groups=500, per_group=(1, 6), images=True, seed=seed + 11),
        make_catalog(n_groups=800, per_group=(1, 2), images=True, seed=seed + 12),
    ]
    return [pr_train, *thinned, *generated]


def drop_shared_titles(p: Postings) -> Postings:
    """Without the offers whose title (as tokens) also names another product: pairs that no
    title can tell apart teach a title matcher only to distrust identical titles
    (PriceRunner has hundreds of such products, e.g. CPUs sold as distinct SKUs)."""
    from shopee_match.text.preprocess import TitlePreprocessor

    prep = TitlePreprocessor(stop_words=None, stem=False)
    key = pd.Series([" ".join(sorted(set(prep.tokens(t)))) for t in p.titles])
    per_key = pd.Series(p.groups()).groupby(key).nunique()
    ambiguous = key.map(per_key).to_numpy() > 1
    out = p.subset(np.flatnonzero(~ambiguous))
    out.source = f"{p.source}, titles naming one product"
    return out


def thin(p: Postings, keep: float, seed: int) -> Postings:
    """Every group keeps its first offer; each other offer stays with probability ``keep``."""
    rng = np.random.default_rng(seed)
    g = p.groups()
    first = np.zeros(len(g), dtype=bool)
    first[np.unique(g, return_index=True)[1]] = True
    out = p.subset(np.flatnonzero(first | (rng.random(len(g)) < keep)))
    out.source = f"{p.source} thinned to {keep}"
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="the folder holding pricerunner/")
    ap.add_argument("-o", "--output", type=Path, default=OUT)
    ap.add_argument("--prefilter-recall", type=float, default=None,
                    help="the reranker's prefilter_recall (default: Pipeline.default's; 0: "
                         "no prefilter, as models before it)")
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    cats = training_catalogues(args.data)
    for c in cats:
        print(f"{c.source}: {len(c)} postings, {c.df['label_group'].nunique()} groups")
    pipe = Pipeline.default(phash=True, verbose=False)
    # match sets may grow past the k neighbours searched (products with many offers)
    pipe.ensemble.set_params(grow=0.5, grow_rounds=None)
    # and learn on each catalogue matched how alike its titles must be (self-training
    # from its own code agreements; applied at predict time only)
    pipe.ensemble.set_params(self_train=True)
    if args.prefilter_recall is not None:
        pipe.ensemble.set_params(prefilter_recall=args.prefilter_recall or None)
    # phash is optional by design here: titles-only catalogues are the common case
    pipe.set_params(phash__embedder__on_missing="ignore")
    t0 = time.perf_counter()
    pipe.fit(cats)
    print(f"fitted in {time.perf_counter() - t0:.0f} s; out-of-fold F1 {pipe.tuning_.get('cv_f1')}")
    pipe.save(args.output)
    size = sum(p.stat().st_size for p in args.output.rglob("*") if p.is_file())
    print(f"saved to {args.output} ({size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
