"""KNN speed: every installed backend side by side, beside the BLAS floor.

Each measurement runs in its own process (same data, same seed) so its peak memory is
its own. The floor is the bare float32 matrix product of the same shape (n x d times
d x n, in row blocks into one preallocated buffer, since n x n does not fit at 70k):
no exact method can beat it without skipping work (the NumPy self-join skips half of
it: X @ X.T is symmetric). Approximate backends report recall@k against the exact one.

    python benchmarks/knn_speed.py --n 10000 34000 70000 \\
        --titles ../shared/data/shopee/train_dev.csv

On a GPU (CuPy importable and a device present) it adds CuPy, cuML and the device's
FP32 matmul rate. Never copy the data into the repository: pass its path.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DENSE = {
    # label: (backend name, constructor kwargs)
    "floor (BLAS sgemm)": ("floor", {}),
    "numpy (default: blocks)": ("numpy", {}),
    "numpy kernel=numpy": ("numpy", {"kernel": "numpy"}),
    "numpy n_jobs=1": ("numpy", {"n_jobs": 1}),
    "numpy symmetric=True": ("numpy", {"symmetric": True}),
    "sklearn brute": ("sklearn", {}),
    "faiss IndexFlatIP": ("faiss", {}),
    "faiss IVF": ("faiss_ivf", {}),
    "faiss HNSW": ("faiss_hnsw", {}),
    "cupy": ("cupy", {}),
    "cuml": ("cuml", {}),
}


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_data(n: int, d: int, seed: int = 0) -> np.ndarray:
    """Clustered unit vectors (groups of ~4 near-duplicates, as product postings)."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((max(1, n // 4), d), dtype=np.float32)
    noise = 0.6 * rng.standard_normal((n, d), dtype=np.float32)
    x = centers[rng.integers(0, len(centers), n)] + noise
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def _floor(x: np.ndarray, rows: int = 4096) -> None:
    buf = np.empty((min(rows, len(x)), len(x)), dtype=np.float32)
    for s in range(0, len(x), rows):
        e = min(s + rows, len(x))
        np.matmul(x[s:e], x.T, out=buf[: e - s])


def child(args: argparse.Namespace) -> None:
    """Run one measurement; print a JSON line."""
    x = make_data(args.n, args.d)
    base = _rss_mib()
    res: dict[str, object] = {}
    if args.backend == "floor":
        t = time.perf_counter()
        _floor(x)
        res["time"] = time.perf_counter() - t
    elif args.backend == "gpu_roofline":
        import cupy as cp

        a = cp.asarray(x)
        out = cp.empty((len(x), len(x)), dtype=cp.float32) if len(x) <= 40_000 else None
        rows = len(x) if out is not None else 8192
        buf = out if out is not None else cp.empty((rows, len(x)), dtype=cp.float32)
        cp.matmul(a[:rows], a.T, out=buf[:rows])  # warm-up
        cp.cuda.Device().synchronize()
        t = time.perf_counter()
        for s in range(0, len(x), rows):
            e = min(s + rows, len(x))
            cp.matmul(a[s:e], a.T, out=buf[: e - s])
        cp.cuda.Device().synchronize()
        res["time"] = time.perf_counter() - t
    else:
        from shopee_match.neighbors import get_backend

        kwargs = json.loads(args.kwargs)
        # warm-up on 64 rows: imports and compiled-kernel loading are one-off costs
        get_backend(args.backend, x[:64], **kwargs).fit(x[:64]).search(x[:64], 5)
        t = time.perf_counter()
        b = get_backend(args.backend, x, **kwargs).fit(x)
        sims, idx = b.search(x, args.k)
        res["time"] = time.perf_counter() - t
        res["exact"] = bool(b.exact)
        np.save(args.out, idx)
        np.save(args.out.replace(".npy", "_sims.npy"), sims)
    res["peak_mib"] = _rss_mib()
    res["extra_mib"] = _rss_mib() - base
    print(json.dumps(res))


def run_one(label: str, backend: str, kwargs: dict, n: int, d: int, k: int, tmp: Path,
            env: dict[str, str]) -> dict | None:
    out = tmp / f"{backend}_{abs(hash(label))}_{n}.npy"
    cmd = [sys.executable, __file__, "--child", "--backend", backend, "--kwargs",
           json.dumps(kwargs), "--n", str(n), "--d", str(d), "--k", str(k), "--out", str(out)]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        msg = (p.stderr.strip().splitlines() or ["?"])[-1]
        print(f"  {label}: skipped ({msg})", file=sys.stderr)
        return None
    res = json.loads(p.stdout.strip().splitlines()[-1])
    res["idx_path"] = str(out)
    return res


def _installed(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _gpu() -> bool:
    try:
        import cupy

        return bool(cupy.cuda.runtime.getDeviceCount() > 0)
    except Exception:
        return False


def dense_section(args: argparse.Namespace) -> None:
    gpu = _gpu()
    want = {
        "faiss": _installed("faiss"), "faiss_ivf": _installed("faiss"),
        "faiss_hnsw": _installed("faiss"), "cupy": gpu, "cuml": gpu and _installed("cuml"),
    }
    env = dict(os.environ)
    print(f"## Dense top-k (d={args.d}, k={args.k}), one run, every backend in its own process, "
          f"best of {args.repeat} interleaved round(s)\n")
    if not gpu:
        print("No GPU on this machine: CuPy / cuML rows and the FP32 roofline are not measured.\n")
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        for n in args.n:
            print(f"### n = {n:,}\n")
            print("| backend | time (s) | / floor | speed-up vs sklearn | peak RSS (MiB) | "
                  "extra (MiB) | recall@k / recall(sim >= t) |")
            print("|---|---:|---:|---:|---:|---:|---:|")
            rows: dict[str, dict] = {}
            for _ in range(args.repeat):  # interleaved rounds; the fastest of each is kept
                for label, (backend, kw) in DENSE.items():
                    if not want.get(backend, True):
                        continue
                    if args.only and backend not in args.only and backend != "floor":
                        continue
                    if backend == "sklearn" and n > args.max_sklearn:
                        continue
                    res = run_one(label, backend, kw, n, args.d, args.k, tmp, env)
                    if res is not None and res["time"] < rows.get(label, {"time": 1e99})["time"]:
                        rows[label] = res
            if gpu:
                res = run_one("gpu roofline", "gpu_roofline", {}, n, args.d, args.k, tmp, env)
                if res is not None:
                    flops = 2.0 * n * n * args.d
                    print(f"GPU FP32 matmul: {flops / res['time'] / 1e12:.1f} TFLOP/s\n")
            floor = rows.get("floor (BLAS sgemm)", {}).get("time")
            skl = rows.get("sklearn brute", {}).get("time")
            exact_idx = exact_sims = None
            for label in ("numpy (default: blocks)", "faiss IndexFlatIP"):
                if label in rows:
                    exact_idx = np.load(rows[label]["idx_path"])
                    exact_sims = np.load(rows[label]["idx_path"].replace(".npy", "_sims.npy"))
                    break
            for label, r in rows.items():
                recall = ""
                if r.get("exact") is False and exact_idx is not None:
                    got = np.load(r["idx_path"])
                    hits = sum(len(np.intersect1d(a, b))
                               for a, b in zip(got, exact_idx, strict=True))
                    # the neighbours a matcher would keep: exact similarity >= threshold
                    strong = exact_sims >= args.recall_threshold
                    hit_s = sum(len(np.intersect1d(a, b[m]))
                                for a, b, m in zip(got, exact_idx, strong, strict=True))
                    recall = (f"{hits / exact_idx.size:.4f} / "
                              f"{hit_s / max(1, int(strong.sum())):.4f}")
                f = f"{r['time'] / floor:.2f}x" if floor else ""
                s = f"{skl / r['time']:.2f}x" if skl else ""
                print(f"| {label} | {r['time']:.2f} | {f} | {s} | {r['peak_mib']:.0f} | "
                      f"{r['extra_mib']:.0f} | {recall} |")
            print()
            sys.stdout.flush()


def sparse_section(args: argparse.Namespace) -> None:
    from sklearn.neighbors import NearestNeighbors

    from shopee_match import TfidfEmbedder, read_postings
    from shopee_match.neighbors._sparse import SparseBackend

    postings = read_postings(args.titles)
    print(f"## Sparse TF-IDF top-k (k={args.k}) on {len(postings):,} real titles\n")
    print("| vectors | features | nnz/row | F dense | ours (s) | sklearn cosine (s) | "
          "speed-up | same top-k sims |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    variants = {
        "default (word 1-2 + char 2-4)": TfidfEmbedder(),
        "word 1-2 only": TfidfEmbedder(char_ngram_range=None),
    }
    for label, emb in variants.items():
        x = emb.fit(postings).embed(postings)
        t = time.perf_counter()
        b = SparseBackend().fit(x)
        sims, _ = b.search(x, args.k)
        ours = time.perf_counter() - t
        t = time.perf_counter()
        nn = NearestNeighbors(metric="cosine", algorithm="brute").fit(x)
        dist, _ = nn.kneighbors(x, n_neighbors=min(args.k, x.shape[0]))
        skl = time.perf_counter() - t
        ref = (1.0 - dist).astype(np.float32)
        ref[ref <= 1e-6] = -np.inf  # sparse backend does not return zero-similarity pairs
        got = np.where(np.isfinite(sims), sims, -9)
        same = np.isclose(got, np.where(np.isfinite(ref), ref, -9), atol=1e-4).mean()
        print(f"| {label} | {x.shape[1]:,} | {x.nnz / x.shape[0]:.0f} | {len(b.head_cols_)} | "
              f"{ours:.2f} | {skl:.2f} | {skl / ours:.2f}x | {same:.4f} |")
        sys.stdout.flush()
    print()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, nargs="+", default=[10_000, 34_000, 70_000])
    p.add_argument("--d", type=int, default=512)
    p.add_argument("--k", type=int, default=50)
    p.add_argument("--titles", type=Path, default=None, help="train.csv for the sparse section")
    p.add_argument("--only", nargs="*", default=None, help="backend names to run")
    p.add_argument("--max-sklearn", type=int, default=10**9, help="skip sklearn above this n")
    p.add_argument("--repeat", type=int, default=1,
                   help="interleaved rounds per n; the fastest time of each backend is kept")
    p.add_argument("--recall-threshold", type=float, default=0.3,
                   help="recall is also reported for neighbours at or above this cosine")
    p.add_argument("--no-dense", action="store_true")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--backend", default="", help=argparse.SUPPRESS)
    p.add_argument("--kwargs", default="{}", help=argparse.SUPPRESS)
    p.add_argument("--out", default="", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        args.n = args.n[0]
        child(args)
        return
    from threadpoolctl import threadpool_info

    blas = [f"{i['internal_api']} {i.get('version')} ({i.get('architecture')}, "
            f"{i['num_threads']} threads)" for i in threadpool_info() if i["user_api"] == "blas"]
    print(f"# KNN speed\n\nCPU cores: {os.cpu_count()}; BLAS: {'; '.join(blas)}; "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')}\n")
    if not args.no_dense:
        dense_section(args)
    if args.titles is not None:
        sparse_section(args)


if __name__ == "__main__":
    main()
