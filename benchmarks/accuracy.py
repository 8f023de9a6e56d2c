"""Accuracy on held-out label groups: fit on one CSV, score another.

    python benchmarks/accuracy.py --train A.csv --test B.csv
    python benchmarks/accuracy.py --data ../shared/data/shopee/train_dev.csv   # split it

With ``--data`` the file is split into group-disjoint parts (``--test-size`` of the groups
scored). Prints the F1 of each step and of the final match sets, and the seed recipe
(TF-IDF cosine threshold tuned on the training groups, union with exact phash) on the
same split for reference. The CSVs are never copied into the project.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from shopee_match import (
    HashMatcher,
    NeighborMatcher,
    PhashEmbedder,
    Pipeline,
    TfidfEmbedder,
    read_postings,
    train_test_split_groups,
)
from shopee_match.data import Postings
from shopee_match.ensemble import Ensemble


def seed_recipe(has_phash: bool) -> Pipeline:
    """The competition notebook's recipe: plain TF-IDF (no preprocessing beyond lower-case,
    English stop words, binary tf, 25k features), threshold tuned, union with exact phash."""
    from shopee_match.text.preprocess import TitlePreprocessor

    tfidf = TfidfEmbedder(
        word_ngram_range=(1, 1), char_ngram_range=None, sublinear_tf=False,
        max_features=25_000,
        preprocessor=TitlePreprocessor(decode=False, stem=False, join_units=False),
    )
    steps = [("tfidf", tfidf, NeighborMatcher(threshold=0.5))]
    if has_phash:
        steps.append(("phash", PhashEmbedder(), HashMatcher(max_distance=0)))
    return Pipeline(steps, ensemble=Ensemble(how="union"), fixed_steps=["phash"])


def run(train: Postings, test: Postings, model: str | None) -> pd.DataFrame:
    rows = []
    has_phash = train.has_phash or train.has_images
    candidates = {"seed recipe": seed_recipe(has_phash)}
    if model:
        candidates["shopee_match (loaded)"] = Pipeline.load(model)
    else:
        candidates["shopee_match default"] = Pipeline.default(phash=has_phash)
    for label, pipe in candidates.items():
        t0 = time.perf_counter()
        if not model or label == "seed recipe":
            pipe.fit(train)
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        table = pipe.evaluate(test)
        pred_s = time.perf_counter() - t0
        for step, r in table.iterrows():
            rows.append({"pipeline": label, "step": step, **r.to_dict(),
                         "fit_s": fit_s, "predict_s": pred_s})
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=Path)
    ap.add_argument("--test", type=Path)
    ap.add_argument("--data", type=Path, help="one labelled CSV to split by groups instead")
    ap.add_argument("--test-size", type=float, default=1 / 3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", help="score a saved pipeline instead of fitting the default")
    args = ap.parse_args()
    if args.data:
        train, test = train_test_split_groups(read_postings(args.data), args.test_size, args.seed)
    elif args.train and args.test:
        train, test = read_postings(args.train), read_postings(args.test)
    else:
        ap.error("give --train and --test, or --data")
    shared = set(train.df["label_group"]) & set(test.df["label_group"])
    if shared:
        raise SystemExit(f"train and test share {len(shared)} label groups; use group-disjoint sets")
    print(f"train: {len(train)} postings / {train.df.label_group.nunique()} groups; "
          f"test: {len(test)} postings / {test.df.label_group.nunique()} groups")
    table = run(train, test, args.model)
    with pd.option_context("display.width", 140):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))


if __name__ == "__main__":
    main()
