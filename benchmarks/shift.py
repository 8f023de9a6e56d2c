"""The shift check's factor between the fit parts and the scored parts of the transfer table.

    python benchmarks/shift.py --data ../shared/data

Profiles (``shopee_match.shift.catalogue_profile``, no labels) of the parts that
``benchmarks/transfer.py``'s fitted rows learn from (Shopee's and PriceRunner's other two
thirds, titles) and of the scored parts, and the factor ``check_shift`` would compare with
``SHIFT_FACTOR`` for a model fitted on each fit part.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

from shopee_match.data import Postings
from shopee_match.shift import SHIFT_FACTOR, catalogue_profile, shift_factor

sys.path.insert(0, str(Path(__file__).parent))
from transfer import TESTS, catalogues


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    cats = catalogues(args.data)
    keep = ["posting_id", "title", "label_group"]
    fit = {"fit on Shopee": Postings(cats["sh_tr"].df[keep]),
           "fit on PriceRunner": Postings(cats["pr_tr"].df[keep])}
    names = [t for t in TESTS if t != "shopee"]
    profiles = {}
    for name, cat in {**fit, **{t: cats[t] for t in names}}.items():
        t0 = time.perf_counter()
        profiles[name] = catalogue_profile(cat)
        p = profiles[name]
        print(f"{name}: {len(cat)} postings, near pairs {p['near_pairs']:.0f}, conflict share "
              f"{p['conflict_share']:.3f}, code share {p['code_share']:.3f} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    print("\n| model | " + " | ".join(names) + f" |  (warns above {SHIFT_FACTOR})")
    print("|---|" + "---|" * len(names))
    for name in fit:
        cells = [f"{shift_factor([profiles[name]], profiles[t]):.2f}" for t in names]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
