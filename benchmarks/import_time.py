"""Time `import shopee_match` (and `from shopee_match import Pipeline`) in fresh processes.

    python benchmarks/import_time.py [--runs 5]

Prints the best and median of several cold starts beside `import numpy, pandas` (the
floor every data library pays) and `import sklearn` (what we avoid at import time).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

SNIPPETS = {
    "numpy+pandas (floor)": "import numpy, pandas",
    "shopee_match + Pipeline": "import shopee_match; from shopee_match import Pipeline",
    "sklearn.base": "import sklearn.base",
}


def time_import(stmt: str, runs: int) -> list[float]:
    code = f"import time; t = time.perf_counter(); {stmt}; print(time.perf_counter() - t)"
    return [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 check=True).stdout) for _ in range(runs)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    results = {name: time_import(stmt, args.runs) for name, stmt in SNIPPETS.items()}
    floor = min(results["numpy+pandas (floor)"])
    print(f"{'import':28s} {'best s':>8s} {'median s':>9s} {'x floor':>8s}")
    for name, times in results.items():
        print(f"{name:28s} {min(times):8.3f} {statistics.median(times):9.3f} {min(times) / floor:8.2f}")


if __name__ == "__main__":
    main()
