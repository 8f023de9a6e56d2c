"""Peers on the same catalogues: what a user would otherwise pick, titles only, no labels.

    python benchmarks/peers.py --data ../shared/data --peers-python /work/venv-peers/bin/python
    python benchmarks/peers.py --data ../shared/data --catalogues amazon_google --methods nothing tfidf ours
    python benchmarks/peers.py --data ../shared/data --catalogues amazon_google_shops \
        --peers-python /work/venv-peers/bin/python

Catalogues: all of Amazon-Google; the group-disjoint third of Shopee's ``train_dev.csv``
scored by ``benchmarks/transfer.py`` (titles only); the third of PriceRunner the shipped
model never learnt from; and a pooled catalogue (all of ``train_dev.csv``, PriceRunner
and Amazon-Google in one table, label groups prefixed by shop, a ``source`` column naming
the shop), where each shop's F1 inside the pool is printed beside its F1 matched alone.

Methods: match nothing (each posting alone), splink (DuckDB backend, title comparisons,
EM without labels, clusters at match probability 0.5 / 0.9 / 0.99: the best of the three
in hindsight), pyJedAI (token blocking, block purging and filtering, string matching,
connected components), a TF-IDF cosine threshold (scikit-learn's vectorizer, match sets
= neighbours at cosine >= 0.5 or >= 0.7: the better in hindsight) and ours (the shipped
``Pipeline.pretrained()``, no choice made on the scored groups; on the pool it reads the
``source`` column, ``ours_nosource`` is the same model with that column dropped and
``ours_exclusive`` the same with no pair kept inside a source). ``pricerunner_merchants``
is the PriceRunner third with each offer's merchant as its source: an aggregator's feeds,
where offers of one product meet across shops (and never inside one). ``amazon_google_shops``
is Amazon-Google with each offer's shop (the ``amz_`` / ``goog_`` id prefix) as its source:
a record-linkage task, and every method is told so (``LINKED``): splink with ``link_type=
"link_only"`` (one input table per shop; connected components or its single best links,
each shop duplicate-free), pyJedAI as clean-clean ER (two datasets; unique mapping
clustering or its clean-clean connected components), the TF-IDF threshold keeping pairs
across shops only, ours reading the column (``ours``) or with no pair inside a shop
(``ours_exclusive``); every peer still gets the best of its settings. The peers are optional
benchmark dependencies (``benchmarks/requirements-peers.txt``); they run as a subprocess
in ``--peers-python`` (default: this interpreter), so they may live in another
environment. A peer that cannot be imported is reported as such. Every cell: mean
per-posting F1, its method's wall time in seconds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from shopee_match import Pipeline, read_postings
from shopee_match.data import Postings
from shopee_match.metrics import graph_f1_scores, match_nothing_f1
from shopee_match.sources import combine_by_source

sys.path.insert(0, str(Path(__file__).parent))
from transfer import catalogues as transfer_catalogues

CATALOGUES = ("amazon_google", "shopee_titles", "pricerunner", "pooled", "pricerunner_merchants",
              "amazon_google_shops")
#: Catalogues whose ``source`` says where pairs may be: only across sources. Every method
#: is told so: splink links (``link_only``), pyJedAI runs clean-clean ER, TF-IDF keeps pairs
#: across sources only, ours reads the column (``ours_exclusive``: no pair inside one).
LINKED = ("amazon_google_shops",)
METHODS = ("nothing", "splink", "pyjedai", "tfidf", "ours", "ours_nosource", "ours_exclusive")
SOURCE_METHODS = ("ours_nosource", "ours_exclusive")
SHOPS = {"shopee": "shopee/train_dev.csv", "pricerunner": "pricerunner/postings.csv",
         "amazon_google": "amazon_google/postings.csv"}
RUNNER = Path(__file__).with_name("_peers_run.py")


def pooled(data: Path) -> Postings:
    """All three shops in one catalogue: ids and label groups prefixed by shop, a
    ``source`` column naming it, titles only."""
    frames = []
    for shop, rel in SHOPS.items():
        df = read_postings(data / rel).df[["posting_id", "title", "label_group"]].copy()
        df["posting_id"] = shop + ":" + df["posting_id"].astype(str)
        df["label_group"] = shop + ":" + df["label_group"].astype(str)
        df["source"] = shop
        frames.append(df)
    return Postings(pd.concat(frames, ignore_index=True), source="pooled")


def merchants(data: Path, third: Postings) -> Postings:
    """The PriceRunner third with each offer's merchant as its ``source``."""
    full = pd.read_csv(data / SHOPS["pricerunner"], dtype=str, keep_default_na=False)
    df = third.df.copy()
    df["source"] = df["posting_id"].map(dict(zip(full["posting_id"], full["merchant_id"])))
    return Postings(df, source="pricerunner third by merchant")


def shops(ag: Postings) -> Postings:
    """Amazon-Google with each offer's shop (the ``amz_`` / ``goog_`` id prefix) as ``source``."""
    df = ag.df.copy()
    df["source"] = df["posting_id"].astype(str).str.split("_", n=1).str[0]
    return Postings(df, source="amazon_google by shop")


def load(data: Path, names: list[str]) -> dict[str, Postings]:
    cats = transfer_catalogues(data)
    out = {n: cats[n] for n in names if n in cats}
    if "amazon_google_shops" in names:
        out["amazon_google_shops"] = shops(cats["amazon_google"])
    if "pooled" in names:
        out["pooled"] = pooled(data)
    if "pricerunner_merchants" in names:
        out["pricerunner_merchants"] = merchants(data, cats["pricerunner"])
    return out


def sample(cat: Postings, groups: int | None, seed: int = 0) -> Postings:
    """A random subset of whole label groups (exploring on a smaller catalogue)."""
    if not groups:
        return cat
    g = cat.groups()
    keep = np.random.default_rng(seed).permutation(g.max() + 1)[:groups]
    return cat.subset(np.flatnonzero(np.isin(g, keep)))


def clusters_graph(labels: np.ndarray) -> sp.csr_matrix:
    """Match sets from clusters: every posting matches its cluster (itself included)."""
    codes = pd.factorize(labels)[0]
    n = len(codes)
    member = sp.csr_matrix((np.ones(n), (np.arange(n), codes)), shape=(n, codes.max() + 1))
    return (member @ member.T).tocsr()


def tfidf_graph(titles: list[str], t: float, block: int = 2048,
                source: np.ndarray | None = None) -> sp.csr_matrix:
    """Neighbours at cosine >= t of scikit-learn TF-IDF word vectors (itself included);
    with ``source``, only neighbours from another source."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    x = TfidfVectorizer().fit_transform(titles).tocsr()
    rows = []
    for a in range(0, x.shape[0], block):
        s = (x[a:a + block] @ x.T).tocsr()
        s.data[s.data < t - 1e-9] = 0
        if source is not None:  # keep pairs across sources only
            coo = s.tocoo()
            same = source[coo.row + a] == source[coo.col]
            s = sp.csr_matrix((np.where(same, 0.0, coo.data), (coo.row, coo.col)), shape=s.shape)
        s.eliminate_zeros()
        rows.append(s)
    g = sp.vstack(rows).tocsr()
    g.setdiag(1)
    return g


def run_peer(method: str, cat: Postings, python: str,
             link: bool = False) -> tuple[dict[str, np.ndarray], float] | str:
    """Clusters from a peer run in ``python``; a string saying why when it cannot run.
    With ``link`` the peer is given the ``source`` column and links across sources."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.csv", Path(tmp) / "out.npz"
        table = pd.DataFrame({"id": np.arange(len(cat)), "title": cat.titles})
        if link:
            table["source"] = cat.df["source"].astype(str).to_numpy()
        table.to_csv(src, index=False)
        t0 = time.perf_counter()
        res = subprocess.run([python, str(RUNNER), method, str(src), str(dst)],
                             capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if res.returncode:
            tail = (res.stderr.strip().splitlines() or ["(no message)"])[-1]
            return f"not run: {tail[:200]}"
        with np.load(dst) as z:
            return {k: z[k] for k in z.files if k != "seconds"}, wall


Scorer = Callable[[sp.csr_matrix], dict[str, float]]


def scorer(cat: Postings, alone: dict[str, np.ndarray] | None) -> Scorer:
    """F1 of a graph on ``cat``; on the pool also each shop's F1 inside it."""
    g = cat.groups()

    def score(graph: sp.csr_matrix) -> dict[str, float]:
        f = graph_f1_scores(graph, g)
        out = {"f1": float(f.mean())}
        if alone is not None:
            for shop, rows in alone.items():
                out[shop] = float(f[rows].mean())
        return out

    return score


def evaluate(method: str, cat: Postings, score: Scorer, python: str,
             link: bool = False) -> dict[str, Any]:
    """The method's best setting on ``cat``: scores, setting and wall seconds (``link``:
    pairs only across ``cat``'s sources, each peer told so its own way)."""
    t0 = time.perf_counter()
    if method == "nothing":
        return {**score(sp.identity(len(cat), format="csr")), "setting": "-", "seconds": 0.0}
    if method in ("ours", "ours_nosource", "ours_exclusive"):
        pipe = Pipeline.pretrained()
        if method == "ours_nosource":  # the pool as one shop: its `source` column dropped
            cat = Postings(cat.df.drop(columns="source"), source=cat.source)
        if method == "ours_exclusive":  # no two offers of one product from one source
            graph = combine_by_source(pipe, pipe.step_graphs(cat), cat, exclusive=True)
        else:
            graph = pipe.predict_graph(cat)
        return {**score(graph), "setting": "shipped", "seconds": time.perf_counter() - t0}
    if method == "tfidf":
        source = cat.df["source"].astype(str).to_numpy() if link else None
        cells = [(score(tfidf_graph(cat.titles, t, source=source)), f"cos >= {t}")
                 for t in (0.5, 0.7)]
        best = max(cells, key=lambda c: c[0]["f1"])
        every = " ".join(f"{k}: {c['f1']:.4f}" for c, k in cells)
        return {**best[0], "setting": f"{best[1]} of {every}",
                "seconds": (time.perf_counter() - t0) / 2}
    got = run_peer(method, cat, python, link)
    if isinstance(got, str):
        return {"f1": float("nan"), "setting": got, "seconds": float("nan")}
    labels, wall = got
    cells = [(score(clusters_graph(v)), k) for k, v in labels.items()]
    best = max(cells, key=lambda c: c[0]["f1"])
    every = " ".join(f"{k}: {c['f1']:.4f}" for c, k in cells)
    return {**best[0], "setting": f"{best[1]} of {every}", "seconds": wall}


def shop_rows(cat: Postings) -> dict[str, np.ndarray]:
    src = cat.df["source"].to_numpy()
    return {s: np.flatnonzero(src == s) for s in SHOPS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True,
                    help="the folder holding shopee/, pricerunner/, amazon_google/")
    ap.add_argument("--catalogues", nargs="+", choices=CATALOGUES, default=list(CATALOGUES))
    ap.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    ap.add_argument("--peers-python", default=sys.executable,
                    help="the interpreter with splink and pyjedai installed")
    ap.add_argument("--groups", type=int, default=None,
                    help="score a random subset of this many label groups (exploring)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/shopee_match_peers.json"))
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    cats = load(args.data, args.catalogues)
    results: dict[str, dict[str, Any]] = {}
    for name in args.catalogues:
        cat = sample(cats[name], args.groups)
        alone = shop_rows(cat) if name == "pooled" else None
        nothing = match_nothing_f1(cat.groups())
        print(f"{name}: {len(cat)} postings, {cat.groups().max() + 1} groups, "
              f"match nothing {nothing:.4f}", flush=True)
        results[name] = {}
        for method in args.methods:
            if method in SOURCE_METHODS and not cat.has_sources:
                continue
            r = evaluate(method, cat, scorer(cat, alone), args.peers_python, name in LINKED)
            results[name][method] = r
            shops = "".join(f", {s} {r[s]:.4f}" for s in (alone or {}) if s in r)
            print(f"  {method}: F1 {r['f1']:.4f} (match nothing {nothing:.4f}; {r['setting']}; "
                  f"{r['seconds']:.0f} s{shops})", flush=True)
        if alone is not None:
            results[name]["alone"] = pooled_alone(cat, alone, args)
        args.out.write_text(json.dumps(results, indent=1))
    print()
    print(table(results, args.methods))


def pooled_alone(cat: Postings, alone: dict[str, np.ndarray], args: argparse.Namespace) -> dict[str, Any]:
    """Each shop matched on its own, by every method, for the inside-vs-alone columns."""
    out: dict[str, Any] = {}
    for shop, rows in alone.items():
        part = cat.subset(rows)
        out[shop] = {m: evaluate(m, part, scorer(part, None), args.peers_python)["f1"]
                     for m in args.methods if m not in SOURCE_METHODS}
        for m in SOURCE_METHODS:
            if m in args.methods:
                out[shop][m] = out[shop].get("ours", float("nan"))
        print(f"  {shop} alone: " + ", ".join(f"{m} {v:.4f}" for m, v in out[shop].items()),
              flush=True)
    return out


def table(results: dict[str, dict[str, Any]], methods: list[str]) -> str:
    lines = ["| catalogue | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for name, cells in results.items():
        vals = [f"{cells[m]['f1']:.3f} ({cells[m]['seconds']:.0f} s)" if m in cells else "-"
                for m in methods]
        lines.append(f"| {name} | " + " | ".join(vals) + " |")
        if "alone" in cells:
            for shop, alone in cells["alone"].items():
                vals = [f"{cells[m].get(shop, float('nan')):.3f} vs {alone[m]:.3f}" for m in methods]
                lines.append(f"| {name}: {shop} inside vs alone | " + " | ".join(vals) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
