"""Matching new postings against an indexed catalogue (``MatchIndex``), issue 13.

Two parts:

``holdout``: the default pipeline (TF-IDF + blended TF-IDF + phash, pair reranker) is
fitted on half the label groups of a Shopee file; on the other half, ``--n-new``
postings are queried against an index of the rest (open and frozen vocabulary, see
``docs/serving.md``) and compared with batch ``predict`` on the whole half: F1 of
both against the labels, and the mean Jaccard similarity of each queried posting's
match set with its batch one. The split files go to ``--tmp``
(never into the project)::

    python benchmarks/index_speed.py holdout --data ../shared/data/shopee/train_dev.csv

``scale``: generated postings (titles from ``make_titles``, clustered phashes as in
``benchmarks/scale.py``), a text + phash pipeline (word TF-IDF, vocabulary learnt from
the catalogue, cosine >= 0.5 in the top 50; phash within 2 bits; union), an index of
``n`` postings saved and loaded memory-mapped, then ``--n-new`` new postings queried
(cold: the first query after loading, which builds the search structures; warm: the
next ones). Index size on disk and the process's memory are printed. ``--max-df 50``
drops the terms in more than 50 catalogue postings, as ``benchmarks/scale.py`` does for
the all-pairs search (exact cosine over the full vocabulary costs a product with every
posting sharing a brand or colour word)::

    python benchmarks/index_speed.py scale --n 100000 300000 1000000
    python benchmarks/index_speed.py scale --n 100000 300000 1000000 --max-df 50
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from shopee_match import (
    BaseEmbedder,
    HashMatcher,
    MatchIndex,
    NeighborMatcher,
    PhashEmbedder,
    Pipeline,
    TfidfEmbedder,
    read_postings,
    train_test_split_groups,
)
from shopee_match._registry import register
from shopee_match.data import Postings
from shopee_match.ensemble import Ensemble
from shopee_match.metrics import f1_scores


def _rss_gib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**30


def _peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _du_mib(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def _sets(sub: pd.DataFrame) -> dict[str, set[str]]:
    return {pid: set(m.split()) for pid, m in zip(sub.posting_id, sub.matches)}


def _f1(pred: dict[str, set[str]], truth: dict[str, set[str]], ids: list[str]) -> float:
    return float(np.mean([2 * len(pred[i] & truth[i]) / (len(pred[i]) + len(truth[i]))
                          for i in ids]))


def holdout(args: argparse.Namespace) -> None:
    tmp = Path(args.tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    data = read_postings(args.data)
    train, test = train_test_split_groups(data, test_size=args.test_size, random_state=0)
    test.df.to_csv(tmp / "holdout.csv", index=False)
    print(f"# holdout: fit on {len(train)}, holdout {len(test)} postings "
          f"({test.df.label_group.nunique()} groups), {args.n_new} of them queried")
    model = tmp / "model"
    if args.reuse_model and model.is_dir():
        pipe = Pipeline.load(model)
        print("  reused the model in", model)
    else:
        t = time.perf_counter()
        pipe = Pipeline.default(phash=data.has_phash).fit(train)
        pipe.save(model)
        print(f"  fit: {time.perf_counter() - t:.1f} s")
    rng = np.random.default_rng(args.seed)
    new_rows = np.sort(rng.choice(len(test), size=args.n_new, replace=False))
    cat_rows = np.setdiff1d(np.arange(len(test)), new_rows)
    new, cat = test.subset(new_rows), test.subset(cat_rows)
    ids = list(new.posting_id)
    truth_all = dict(zip(test.posting_id, (set(test.posting_id[m]) for m in test.true_matches())))
    t = time.perf_counter()
    batch = _sets(pipe.predict(test))
    t_batch = time.perf_counter() - t
    f1_batch_all = float(f1_scores(test.true_matches(),
                                   [np.flatnonzero(np.isin(test.posting_id, list(batch[p])))
                                    for p in test.posting_id]).mean())
    print(f"  batch predict on all {len(test)}: {t_batch:.1f} s, F1 {f1_batch_all:.4f}")
    print("\n| vocabulary | radius | build (s) | query (s) | F1 batch (queried) | F1 index | ΔF1 "
          "| mean Jaccard vs batch | identical sets |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for combo in args.runs:
        vocabulary, radius = combo.split(":")
        t = time.perf_counter()
        index = MatchIndex.build(pipe, cat, radius=int(radius), vocabulary=vocabulary)
        t_build = time.perf_counter() - t
        t = time.perf_counter()
        got = _sets(index.query(new))
        t_query = time.perf_counter() - t
        jac = np.array([len(got[i] & batch[i]) / len(got[i] | batch[i]) for i in ids])
        fb, fi = _f1(batch, truth_all, ids), _f1(got, truth_all, ids)
        print(f"| {vocabulary} | {index.radius} | {t_build:.1f} | {t_query:.1f} | {fb:.4f} | {fi:.4f} | "
              f"{fi - fb:+.4f} | {jac.mean():.4f} | {(jac == 1).mean():.3f} |", flush=True)


def _generated(n: int, seed: int) -> Postings:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from scale import make_phashes

    from shopee_match.datasets import make_titles

    df = make_titles(int(n / 3.5) + 1, seed=seed).iloc[:n].reset_index(drop=True)
    codes = make_phashes(df["label_group"].to_numpy(), seed=seed)
    df["image_phash"] = [f"{int(c):016x}" for c in codes]
    return Postings(df)


@register()
class PrunedTfidf(BaseEmbedder):
    """Word TF-IDF without the terms in more than ``max_df`` postings (rows renormalised):
    the approximate text step of ``benchmarks/scale.py`` as an embedder. The kept terms
    are learnt with the vocabulary (``fit_on="predict"``: on the postings matched, or on
    the catalogue for an index)."""

    name = "pruned_tfidf"

    def __init__(self, max_df: int = 50, fit_on: str = "predict") -> None:
        self.max_df = max_df
        self.fit_on = fit_on

    def _learn(self, postings: Postings) -> None:
        self.tfidf_ = TfidfEmbedder(word_ngram_range=(1, 1), char_ngram_range=None).fit(postings)
        df = np.bincount(self.tfidf_.embed(postings).indices,
                         minlength=len(self.tfidf_.vectorizers_[0][1].vocabulary_))
        self.keep_ = np.flatnonzero(df <= self.max_df)

    def fit(self, postings: Postings) -> PrunedTfidf:
        if self.fit_on == "train":
            self._learn(postings)
        return self

    def embed(self, postings: Postings) -> sp.csr_matrix:
        if self.fit_on == "predict":
            self._learn(postings)
        return prune(self.tfidf_.embed(postings), self.keep_)

    def save_state(self, path: Path) -> None:
        if self.fit_on != "train":  # relearnt on every embed: nothing to keep
            return
        self.tfidf_.save_state(path)
        np.save(path / "keep.npy", self.keep_, allow_pickle=False)

    def load_state(self, path: Path) -> None:
        if self.fit_on == "train":
            self.tfidf_ = TfidfEmbedder(word_ngram_range=(1, 1), char_ngram_range=None)
            self.tfidf_.load_state(path)
            self.keep_ = np.load(path / "keep.npy", allow_pickle=False)


def prune(x: sp.csr_matrix, keep: np.ndarray) -> sp.csr_matrix:
    y = sp.csr_matrix(x[:, keep], dtype=np.float32)
    norms = np.sqrt(np.asarray(y.multiply(y).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return sp.csr_matrix(sp.diags((1.0 / norms).astype(np.float32)) @ y, dtype=np.float32)


def text_phash_pipeline(fit_on: Postings, max_df: int | None = None) -> Pipeline:
    tfidf: Any = TfidfEmbedder(word_ngram_range=(1, 1), char_ngram_range=None, fit_on="predict")
    if max_df is not None:
        tfidf = PrunedTfidf(max_df=max_df)
    steps = [("tfidf", tfidf, NeighborMatcher(threshold=0.5, k=50)),
             ("phash", PhashEmbedder(), HashMatcher(max_distance=2))]
    return Pipeline(steps, ensemble=Ensemble(how="union"), tune=False).fit(fit_on)


def scale(args: argparse.Namespace) -> None:
    tmp = Path(args.tmp)
    print("| catalogue | build (s) | on disk (MiB) | RSS loaded (GiB) | cold query (s) "
          "| warm query (s, best of 3) | RSS after (GiB) | mean matches |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|", flush=True)
    for n in args.n:
        everything = _generated(n + args.n_new, seed=args.seed)
        rng = np.random.default_rng(args.seed)
        new_rows = np.sort(rng.choice(len(everything), size=args.n_new, replace=False))
        cat_rows = np.setdiff1d(np.arange(len(everything)), new_rows)
        cat, new = everything.subset(cat_rows), everything.subset(new_rows)
        del everything
        pipe = text_phash_pipeline(cat.subset(range(1000)), args.max_df)
        t = time.perf_counter()
        index = MatchIndex.build(pipe, cat)
        path = index.save(tmp / f"index_{n}")
        t_build = time.perf_counter() - t
        del index, cat
        disk = _du_mib(path)
        index = MatchIndex.load(path)
        rss0 = _rss_gib()
        t = time.perf_counter()
        sub = index.query(new)
        cold = time.perf_counter() - t
        warm = []
        for _ in range(3):
            t = time.perf_counter()
            index.query(new)
            warm.append(time.perf_counter() - t)
        mean = sub.matches.str.count(" ").mean() + 1
        print(f"| {n:,} | {t_build:.1f} | {disk:.0f} | {rss0:.2f} | {cold:.2f} | {min(warm):.2f} "
              f"| {_rss_gib():.2f} | {mean:.2f} |", flush=True)
        del index
        if not args.keep:
            shutil.rmtree(path)
    print(f"peak RSS {_peak_gib():.2f} GiB")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="part", required=True)
    h = sub.add_parser("holdout")
    h.add_argument("--data", required=True)
    h.add_argument("--test-size", type=float, default=0.5)
    h.add_argument("--n-new", type=int, default=1000)
    h.add_argument("--runs", nargs="+", default=["open:2", "frozen:2", "open:1"],
                   help="VOCABULARY:RADIUS of each index: open or frozen TF-IDF vocabulary; "
                        "hops of recomputed catalogue rows (2: exact for the default reranker)")
    h.add_argument("--reuse-model", action="store_true", help="load the model saved in --tmp")
    s = sub.add_parser("scale")
    s.add_argument("--n", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    s.add_argument("--n-new", type=int, default=1000)
    s.add_argument("--keep", action="store_true", help="keep the saved indexes")
    s.add_argument("--max-df", type=int, default=None,
                   help="drop terms in more than this many catalogue postings (as scale.py)")
    for q in (h, s):
        q.add_argument("--tmp", default="/tmp/shopee_match_index_bench")
        q.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    holdout(args) if args.part == "holdout" else scale(args)


if __name__ == "__main__":
    main()
