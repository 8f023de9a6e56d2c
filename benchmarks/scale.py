"""Text + phash matching of a million generated postings on one machine.

Stages (each timed, with the process's RSS high-water mark after it):

1. postings: titles from ``shopee_match.datasets.make_titles``; per label group a random
   64-bit phash, each posting a copy with 0-3 flipped bits; 0.1 % of postings share one
   placeholder hash (a blank image);
2. text vectors: word-level TF-IDF (``TfidfEmbedder(char_ngram_range=None)``), then the
   approximate step: columns with document frequency above ``--max-df`` (default 50:
   brand, product, colour, size and seller words, and typos of them, shared by hundreds
   to tens of thousands of postings) are dropped and rows renormalised. The exact sparse
   top-k over the full vocabulary costs sum(df^2) multiply-adds, ~10^11 here; pruned,
   the product is tiny. Recall against the exact
   (unpruned) cosine neighbours is measured on a sample;
3. text matches: ``NeighborMatcher(backend="sparse").match_graph`` (threshold-aware);
4. phash matches: ``HashMatcher(max_distance=r)`` (multi-index hashing);
5. union of both graphs, match sets; F1 against the labels on a sample.

    python benchmarks/scale.py --n 1000000

``--model default`` times the fitted default recipe instead (``Pipeline.default()``
fitted on a separate generated catalogue of ``--train-groups`` groups): TF-IDF learnt
on the postings matched, candidate graphs (k-NN, blended k-NN, phash pairs), the
two-stage pair reranker; F1 against the labels of all postings.

    python benchmarks/scale.py --model default --n 50000
"""

from __future__ import annotations

import argparse
import resource
import time
from typing import Any

import numpy as np
import scipy.sparse as sp

from shopee_match import HashMatcher, NeighborMatcher, TfidfEmbedder
from shopee_match.data import Postings
from shopee_match.datasets import make_titles


def _peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _rss_gib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**30


class Stages:
    def __init__(self) -> None:
        self.rows: list[tuple[str, float, float, float]] = []
        self.t0 = time.perf_counter()

    def __call__(self, name: str) -> Stages:
        self.name = name
        return self

    def __enter__(self) -> None:
        self.t = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        dt = time.perf_counter() - self.t
        self.rows.append((self.name, dt, _rss_gib(), _peak_gib()))
        print(f"  {self.name}: {dt:.1f} s, RSS {_rss_gib():.2f} GiB, peak {_peak_gib():.2f} GiB",
              flush=True)


def make_phashes(groups: np.ndarray, seed: int = 0, placeholder: float = 0.001) -> np.ndarray:
    """Clustered 64-bit codes: a random base per group, 0-3 bits flipped per posting."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 2**63, size=groups.max() + 1, dtype=np.uint64) * np.uint64(2)
    base ^= rng.integers(0, 2, size=len(base), dtype=np.uint64)
    codes = base[groups]
    n_flips = rng.choice(4, size=len(codes), p=[0.4, 0.3, 0.2, 0.1])
    for f in range(1, 4):
        on = n_flips >= f
        bit = rng.integers(0, 64, size=int(on.sum())).astype(np.uint64)
        codes[on] ^= np.uint64(1) << bit
    blank = rng.random(len(codes)) < placeholder
    codes[blank] = np.uint64(0)
    return codes


def codes_to_vectors(codes: np.ndarray) -> np.ndarray:
    """uint64 codes -> ±1/8 float32 rows (as ``PhashEmbedder``), without hex strings."""
    out = np.empty((len(codes), 64), dtype=np.float32)
    for b in range(64):
        bit = (codes >> np.uint64(63 - b)) & np.uint64(1)
        out[:, b] = np.where(bit == 1, 0.125, -0.125)
    return out


def prune_df(x: sp.csr_matrix, max_df: int) -> sp.csr_matrix:
    """Drop columns with document frequency above ``max_df``; renormalise rows."""
    df = np.bincount(x.indices, minlength=x.shape[1])
    keep = np.flatnonzero(df <= max_df)
    y = x[:, keep].tocsr()
    norms = np.sqrt(np.asarray(y.multiply(y).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    y = sp.csr_matrix(sp.diags((1.0 / norms).astype(np.float32)) @ y, dtype=np.float32)
    return y


def _with_phash(df: Any, seed: int) -> Postings:
    codes = make_phashes(df["label_group"].to_numpy(), seed=seed)
    df = df.reset_index(drop=True).copy()
    df["image_phash"] = [f"{int(c):016x}" for c in codes]
    return Postings(df)


def run_default(args: argparse.Namespace, st: Stages) -> None:
    """The fitted default recipe on ``args.n`` generated postings, stage by stage."""
    from shopee_match import Pipeline
    from shopee_match.metrics import graph_precision_recall_f1

    with st("generate titles + phashes"):
        postings = _with_phash(make_titles(int(args.n / 3.5) + 1, seed=0).iloc[: args.n], 0)
        train = _with_phash(make_titles(args.train_groups, seed=99_999), 1)
    with st(f"fit Pipeline.default() on {len(train):,} other postings"):
        pipe = Pipeline.default().fit(train)
    with st("embed (TF-IDF learnt on the postings, phash)"):
        emb = pipe.embed_steps(postings)
    with st("candidates (k-NN, blended k-NN, phash pairs)"):
        graphs = pipe.step_graphs(postings, emb)
    del emb
    print("    candidate pairs: " + ", ".join(f"{k} {g.nnz:,}" for k, g in graphs.items()))
    with st("rerank (pair features, two stages of trees, selection)"):
        final = pipe.combine_graphs(graphs, postings)
    f1 = graph_precision_recall_f1(final, postings.groups())[2].mean()
    print(f"    F1 vs labels (all {len(postings):,} postings): {f1:.4f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--max-df", type=float, default=50,
                   help="drop terms in more postings than this (a fraction of n if <= 1)")
    p.add_argument("--text-threshold", type=float, default=0.5)
    p.add_argument("--radius", type=int, default=2, help="phash Hamming radius")
    p.add_argument("--k", type=int, default=50)
    p.add_argument("--sample", type=int, default=1000, help="queries for recall / F1")
    p.add_argument("--model", default="union", choices=["union", "default"],
                   help="'default': the fitted default recipe (see above)")
    p.add_argument("--train-groups", type=int, default=1000,
                   help="labelled groups to fit the default recipe on")
    args = p.parse_args()
    st = Stages()
    print(f"# scale: n = {args.n:,}, model {args.model}")
    if args.model == "default":
        run_default(args, st)
        _table(st)
        return

    with st("generate titles + phashes"):
        df = make_titles(int(args.n / 3.5) + 1, seed=0).iloc[: args.n]
        postings = Postings(df.reset_index(drop=True))
        groups = df["label_group"].to_numpy()
        codes = make_phashes(groups)
    n = len(postings)

    with st("text: word TF-IDF fit + embed"):
        full = TfidfEmbedder(word_ngram_range=(1, 1), char_ngram_range=None).fit(postings)
        x_full = full.embed(postings)
    max_df = int(args.max_df * n) if args.max_df <= 1 else int(args.max_df)
    with st(f"text: prune df > {max_df}"):
        x = prune_df(x_full, max_df)
    print(f"    vocabulary {x_full.shape[1]:,} -> {x.shape[1]:,} terms, nnz/row "
          f"{x_full.nnz / n:.1f} -> {x.nnz / n:.1f}")

    with st("text: sparse top-k + threshold (match graph)"):
        text_g = NeighborMatcher(threshold=args.text_threshold, k=args.k,
                                 backend="sparse").match_graph(x)
    with st("phash: vectors"):
        ph = codes_to_vectors(codes)
    with st(f"phash: HashMatcher radius {args.radius}"):
        hash_g = HashMatcher(max_distance=args.radius).match_graph(ph)
        del ph
    with st("union + match sets"):
        union = (text_g + hash_g).tocsr()
        union.data[:] = 1
        sizes = np.diff(union.indptr)
    print(f"    text pairs {text_g.nnz - n:,}, phash pairs {hash_g.nnz - n:,}, "
          f"union {union.nnz - n:,}; mean set size {sizes.mean():.2f}, max {sizes.max()}")

    with st("quality on a sample"):
        rng = np.random.default_rng(1)
        q = rng.choice(n, size=min(args.sample, n), replace=False)
        found = hit = 0
        f1: dict[str, list[float]] = {"text": [], "phash": [], "union": []}
        graphs = {"text": text_g, "phash": hash_g, "union": union}
        for c in range(0, len(q), 100):  # exact unpruned cosine, 100 sample rows at a time
            exact = (x_full[q[c:c + 100]] @ x_full.T).toarray()
            for r, i in enumerate(q[c:c + 100]):
                row = exact[r]
                top = np.argpartition(-row, min(args.k, n - 1))[: args.k]
                want = {int(j) for j in top if row[j] >= args.text_threshold and j != i}
                got = set(text_g.indices[text_g.indptr[i]:text_g.indptr[i + 1]].tolist())
                found += len(want)
                hit += len(want & got)
                true = set(np.flatnonzero(groups == groups[i]).tolist())
                for name, g in graphs.items():
                    pred = set(g.indices[g.indptr[i]:g.indptr[i + 1]].tolist())
                    f1[name].append(2 * len(pred & true) / (len(pred) + len(true)))
            del exact
    recall = hit / max(found, 1)
    print(f"    text recall vs exact unpruned cosine >= {args.text_threshold} (top-{args.k}): "
          f"{recall:.4f} ({hit}/{found})")
    print("    F1 vs labels: " + ", ".join(f"{k} {np.mean(v):.4f}" for k, v in f1.items()))

    _table(st)


def _table(st: Stages) -> None:
    total = time.perf_counter() - st.t0
    print("\n| stage | time (s) | RSS after (GiB) | peak so far (GiB) |\n|---|---:|---:|---:|")
    for name, dt, rss, peak in st.rows:
        print(f"| {name} | {dt:.1f} | {rss:.2f} | {peak:.2f} |")
    print(f"| **total** | **{total:.1f}** | | **{_peak_gib():.2f}** |")


if __name__ == "__main__":
    main()
