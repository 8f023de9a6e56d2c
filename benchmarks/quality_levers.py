"""Matching-quality levers on held-out label groups (issue 4), one row per lever.

Fits on two thirds of the groups of a labelled postings CSV (``A``), scores the other
third (``B``; THE split: ``train_test_split_groups(..., test_size=1/3, random_state=0)``).
Every tuned value comes from A only, on three group folds of A whose size is like B's
(F1 falls as the scored set grows, so tuning on all of A at once picks thresholds that
are too strict). Then the same fitted models, not retuned, score a generated
English-electronics catalogue (titles only, no phash): the "other domain" check.

    python benchmarks/quality_levers.py --data ../shared/data/shopee/train_dev.csv
    python benchmarks/quality_levers.py --data ... --rows seed,tfidf,rerank   # a subset

Rows: seed (sklearn TF-IDF on raw titles, cosine threshold, union with exact phash),
tfidf (the library's TfidfEmbedder), min2, phash radius, qe (neighbourhood blending),
rerank1 (one-stage PairReranker over tfidf + phash candidates), rerank1_qe (+ blended
tfidf candidates as a modality), rerank1_all (+ word-only and char-only tfidf modalities),
rerank2_qe (two stacked stages over tfidf, blended tfidf and phash: the recommended recipe).
Set OMP_NUM_THREADS=1 on a shared machine.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from shopee_match import HashMatcher, NeighborMatcher, PhashEmbedder, Postings, TfidfEmbedder
from shopee_match.data import group_kfold, read_postings, train_test_split_groups
from shopee_match.neighbors.blend import blend
from shopee_match.neighbors.graph import add_self, select
from shopee_match.rerank import PairReranker

ROWS = ["seed", "tfidf", "min2", "phash_radius", "qe", "rerank1", "rerank1_qe", "rerank1_all",
        "rerank2_qe"]
GRID = np.round(np.arange(0.2, 0.95, 0.02), 3)
K = 30
RADIUS = 8
log = logging.getLogger("quality_levers")


# --- an "other domain" catalogue: English electronics names, no images --------------------
_E_BRANDS = ["Samsung", "Sony", "Logitech", "Anker", "Kingston", "SanDisk", "Asus", "Lenovo",
             "Dell", "HP", "Xiaomi", "JBL", "Philips", "TP-Link", "Corsair", "Razer"]
_E_TYPES = [("Wireless Mouse", ["DPI", None]), ("Mechanical Keyboard", [None]),
            ("USB-C Charger", ["W"]), ("Portable SSD", ["TB", "GB"]), ("microSD Card", ["GB"]),
            ("Bluetooth Speaker", ["W"]), ("Gaming Headset", [None]), ("Monitor", ["inch"]),
            ("Power Bank", ["mAh"]), ("Wi-Fi Router", ["Mbps"]), ("Webcam", ["p"]),
            ("Laptop Stand", [None]), ("HDMI Cable", ["m"]), ("Smart Watch", ["mm"])]
_E_SIZES = {"DPI": [1600, 4000, 8000], "W": [20, 30, 45, 65, 100], "TB": [1, 2, 4],
            "GB": [32, 64, 128, 256, 512], "inch": [24, 27, 32], "mAh": [10000, 20000],
            "Mbps": [1200, 1800, 3000], "p": [720, 1080], "m": [1, 2, 3], "mm": [41, 45]}
_E_COLORS = ["Black", "White", "Silver", "Graphite", "Blue", "Red"]
_E_NOISE = ["New", "Genuine", "Brand New", "Original", "Fast Shipping", "(Renewed)", "2023",
            "with Warranty", "for PC/Mac", "Retail Box", "OEM", "Latest Model"]
_E_ABBR = {"Wireless": "Wrls", "Mechanical": "Mech.", "Bluetooth": "BT", "Portable": "Port.",
           "Keyboard": "Kbd", "Charger": "Chgr", "Monitor": "Display"}


def make_electronics(n_groups: int = 1500, seed: int = 0) -> Postings:
    """Titles-only English electronics listings; groups come in families that share brand
    and product type but differ by model number or capacity (hard negatives)."""
    rng = np.random.default_rng(seed)
    bases: list[str] = []
    while len(bases) < n_groups:
        brand = _E_BRANDS[rng.integers(len(_E_BRANDS))]
        kind, units = _E_TYPES[rng.integers(len(_E_TYPES))]
        unit = units[rng.integers(len(units))]
        series = "".join(rng.choice(list("ABCDEGKMNPRSTVWXZ"), size=int(rng.integers(1, 3))))
        for _ in range(int(rng.integers(1, 5))):
            model = f"{series}{rng.integers(1, 999)}{rng.choice(['', '', 'X', ' Pro', ' Plus'])}"
            size = "" if unit is None else f"{rng.choice(_E_SIZES[unit])}{unit}"
            color = _E_COLORS[rng.integers(len(_E_COLORS))]
            bases.append(" ".join(w for w in (brand, model, kind, size, color) if w))
    rows = []
    for g, base in enumerate(bases[:n_groups]):
        for _ in range(int(rng.integers(2, 6))):
            words = base.split()
            if rng.random() < 0.4:
                words = [_E_ABBR.get(w, w) for w in words]
            if rng.random() < 0.3 and len(words) > 4:
                del words[-1]  # colour dropped
            if rng.random() < 0.3:
                i = int(rng.integers(1, len(words) - 1))
                words[i], words[i + 1] = words[i + 1], words[i]
            if rng.random() < 0.3:  # "1TB" -> "1 TB"
                words = [w[:-2] + " " + w[-2:] if w[:1].isdigit() and w[-2:].isalpha() else w
                         for w in words]
            t = " ".join(words)
            for _ in range(int(rng.integers(0, 3))):
                tag = _E_NOISE[rng.integers(len(_E_NOISE))]
                t = f"{tag} {t}" if rng.random() < 0.4 else f"{t} - {tag}"
            rows.append((t.upper() if rng.random() < 0.1 else t, g))
    df = pd.DataFrame(rows, columns=["title", "label_group"])
    df.insert(0, "posting_id", [f"e{i:07d}" for i in range(len(df))])
    return Postings(df, source="electronics")


# --- helpers --------------------------------------------------------------------------------
def f1_graph(g: sp.csr_matrix, groups: np.ndarray) -> float:
    """Mean per-posting F1 of a match graph (the competition metric, vectorised)."""
    coo = add_self(sp.csr_matrix(g)).tocoo()
    n = g.shape[0]
    same = groups[coo.row] == groups[coo.col]
    inter = np.bincount(coo.row[same], minlength=n)
    npred = np.bincount(coo.row, minlength=n)
    ntrue = np.bincount(groups)[groups]
    return float(np.mean(2 * inter / (npred + ntrue)))


def union(*gs: sp.csr_matrix) -> sp.csr_matrix:
    out = sp.csr_matrix(gs[0], dtype=np.float32)
    for g in gs[1:]:
        out = out + sp.csr_matrix(g, dtype=np.float32)
    out.data[:] = 1.0
    return out


def seed_embed(p: Postings) -> sp.csr_matrix:
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(stop_words="english", binary=True, max_features=25000)
    return sp.csr_matrix(vec.fit_transform(p.titles), dtype=np.float32)


def knn(emb: Any) -> sp.csr_matrix:
    return NeighborMatcher(k=K, backend="sparse").candidates(emb)


def candidates(p: Postings, kinds: tuple[str, ...]) -> dict[str, sp.csr_matrix]:
    """Candidate graphs per modality, the vocabulary learnt on ``p`` itself."""
    out: dict[str, sp.csr_matrix] = {}
    emb = TfidfEmbedder(fit_on="predict").fit_embed(p)
    for kind in kinds:
        if kind == "tfidf":
            out[kind] = knn(emb)
        elif kind == "tfidf_qe":
            out[kind] = knn(blend(emb, out.get("tfidf", knn(emb))))
        elif kind == "word":
            out[kind] = knn(TfidfEmbedder(char_ngram_range=None).fit_embed(p))
        elif kind == "char":
            out[kind] = knn(TfidfEmbedder(word_ngram_range=None).fit_embed(p))
        elif kind == "phash":
            out[kind] = (HashMatcher(max_distance=RADIUS).candidates(PhashEmbedder().embed(p))
                         if p.has_phash else sp.csr_matrix((len(p), len(p)), dtype=np.float32))
        else:
            raise ValueError(kind)
    return out


def tune(folds: list[Any], rule: Callable[[Any, float], sp.csr_matrix]) -> float:
    scores = [np.mean([f1_graph(rule(c, t), g) for c, g in folds]) for t in GRID]
    return float(GRID[int(np.argmax(scores))])


# --- the levers ---------------------------------------------------------------------------
def threshold_row(row: str, a_folds: list[Postings], b: Postings, other: Postings) -> dict:
    """First-stage levers: one cosine threshold, tuned on A's folds."""
    def prep(p: Postings) -> tuple[dict[str, sp.csr_matrix], np.ndarray]:
        emb = seed_embed(p) if row == "seed" else TfidfEmbedder(fit_on="predict").fit_embed(p)
        c = knn(emb)
        if row == "qe":
            c = knn(blend(emb, c))
        has = p.has_phash
        n = len(p)
        r = 6 if row == "phash_radius" else 0
        ph = (HashMatcher(max_distance=r).match_graph(PhashEmbedder().embed(p)) if has
              else sp.identity(n, format="csr", dtype=np.float32))
        return {"text": c, "phash": ph}, p.groups()

    min2 = row in ("min2", "phash_radius", "qe")

    def rule(c: dict[str, sp.csr_matrix], t: float) -> sp.csr_matrix:
        text = select(c["text"], t, 2, t - 0.15) if min2 else select(c["text"], t)
        return union(text, c["phash"])

    folds = [prep(p) for p in a_folds]
    t = tune(folds, rule)
    cb, gb = prep(b)
    co, go = prep(other)
    return {"B": f1_graph(rule(cb, t), gb), "other": f1_graph(rule(co, t), go),
            "params": f"threshold={t}" + (" min2 floor=t-0.15" if min2 else "")}


def rerank_row(row: str, a_folds: list[Postings], b: Postings, other: Postings,
               max_iter: int, optional_phash: bool = False) -> dict:
    stages, _, which = row.removeprefix("rerank").partition("_")
    kinds = {"": ("tfidf", "phash"), "qe": ("tfidf", "tfidf_qe", "phash"),
             "all": ("tfidf", "tfidf_qe", "word", "char", "phash")}[which]
    cands = [candidates(p, kinds) for p in a_folds]
    optional = ["phash"] if optional_phash else []
    rr = PairReranker(max_iter=max_iter, n_stages=int(stages), optional_modalities=optional,
                      n_jobs=1).fit(
        cands, [p.groups() for p in a_folds], [p.titles for p in a_folds])
    out = {"params": f"{kinds} k={K} radius={RADIUS} max_iter={max_iter} stages={stages} optional={optional} "
                     f"threshold={rr.threshold_} (cv F1 {rr.cv_f1_:.4f})"}
    for name, p in (("B", b), ("other", other)):
        proba = rr.predict_proba_graph(candidates(p, kinds), p.titles)
        out[name] = f1_graph(rr.select(proba), p.groups())
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="labelled postings CSV (train_dev.csv)")
    ap.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated subset of {ROWS}")
    ap.add_argument("--max-iter", type=int, default=150, help="boosting rounds of the reranker")
    ap.add_argument("--optional-phash", action="store_true",
                    help="train the reranker with phash-less twins (optional_modalities)")
    ap.add_argument("--other-groups", type=int, default=1500, help="groups in the other domain")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("shopee_match", "shopee_match.neighbors"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    a, b = train_test_split_groups(read_postings(args.data), test_size=1 / 3, random_state=0)
    a_folds = [a.subset(f) for _, f in group_kfold(a.groups(), 3, 0)]
    other = make_electronics(args.other_groups, seed=0)
    log.info("fit on A: %d postings; score B: %d postings (%d groups); other domain: %d "
             "postings (%d groups)", len(a), len(b), b.groups().max() + 1, len(other),
             other.groups().max() + 1)
    log.info("| lever | F1 on B (n=%d) | F1 other domain (n=%d) | tuned on A | seconds |",
             len(b), len(other))
    log.info("|---|---|---|---|---|")
    for row in args.rows.split(","):
        t0 = time.time()
        if row.startswith("rerank"):
            res = rerank_row(row, a_folds, b, other, args.max_iter, args.optional_phash)
        elif row in ROWS:
            res = threshold_row(row, a_folds, b, other)
        else:
            raise SystemExit(f"unknown row {row!r}; choose from {ROWS}")
        log.info("| %s | %.4f | %.4f | %s | %.0f |", row, res["B"], res["other"], res["params"],
                 time.time() - t0)


if __name__ == "__main__":
    main()
