"""What the general catalogues cost a fit: ``Pipeline.default()`` fitted on the same
labelled postings with ``general=False`` and ``general=True``, one after the other in one
process (wall and CPU seconds, and their ratios).

    python benchmarks/general_cost.py --data ../shared/data

The postings are the two thirds of Shopee's ``train_dev.csv`` that
``benchmarks/transfer.py`` fits on (``train_test_split_groups(..., 1/3, random_state=0)``).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

from shopee_match import Pipeline, read_postings, train_test_split_groups


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="the folder holding shopee/")
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    train, _ = train_test_split_groups(read_postings(args.data / "shopee" / "train_dev.csv"),
                                       1 / 3, random_state=0)
    times = {}
    for general in (False, True):
        pipe = Pipeline.default(phash=True).set_params(general=general)
        w0, c0 = time.perf_counter(), time.process_time()
        pipe.fit(train)
        times[general] = (time.perf_counter() - w0, time.process_time() - c0)
        print(f"general={general}: {len(train)} postings + {pipe.tuning_['general_postings']} "
              f"generated; wall {times[general][0]:.0f} s, CPU {times[general][1]:.0f} s",
              flush=True)
    print(f"ratio general / not: wall {times[True][0] / times[False][0]:.2f}x, "
          f"CPU {times[True][1] / times[False][1]:.2f}x")


if __name__ == "__main__":
    main()
