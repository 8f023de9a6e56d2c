"""Serve a fitted pipeline: index a catalogue once, then match new postings as they come.

    python examples/serve_index.py                # 300 label groups, titles only
    python examples/serve_index.py --groups 100 --batches 2

A marketplace's catalogue is already matched; each day brings new postings, each to be
matched against the catalogue and against each other in seconds. ``MatchIndex.build(pipe, catalogue)``
keeps what every step needs (embeddings, candidate rows, the TF-IDF vocabulary);
``index.query(new)`` answers for the new postings only; ``index.add(new)`` folds them in.
The script compares the answers with batch ``predict`` on catalogue + new: they are the
same except where TF-IDF weights differ (batch relearns them from every posting; the
index keeps the catalogue's for catalogue postings, see docs/serving.md), which shows
most on a catalogue this small.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from shopee_match import MatchIndex, Pipeline, make_catalog, train_test_split_groups
from shopee_match.data import Postings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=300, help="label groups to generate")
    parser.add_argument("--batches", type=int, default=3, help="batches of new postings")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    # 1. A model fitted on labelled postings (here: generated; the reranker's default).
    data = make_catalog(n_groups=args.groups, images=False, seed=args.seed)
    train, live = train_test_split_groups(data, test_size=0.5, random_state=args.seed)
    pipe = Pipeline.default(phash=False).fit(train)

    # 2. The catalogue, and the postings that arrive later in batches of ~5 %.
    order = np.random.default_rng(args.seed).permutation(len(live))
    n_new = max(1, len(live) // 20)
    stream = [live.subset(np.sort(order[i * n_new:(i + 1) * n_new])) for i in range(args.batches)]
    catalogue = live.subset(np.sort(order[args.batches * n_new:]))

    t = time.perf_counter()
    index = MatchIndex.build(pipe, catalogue)
    print(f"indexed {len(index)} postings in {time.perf_counter() - t:.2f} s: {index}")
    folder = Path(tempfile.mkdtemp(prefix="serve_index_")) / "index"
    index.save(folder)

    # 3. Each batch: match it against everything indexed so far, then add it.
    index = MatchIndex.load(folder)  # memory-mapped; the saved model comes with it
    seen = catalogue
    for b, new in enumerate(stream):
        t = time.perf_counter()
        answer = index.query(new)
        took = time.perf_counter() - t
        index.add(new)
        seen = Postings(pd.concat([seen.df, new.df], ignore_index=True))
        sub = pipe.predict(seen)
        batch = dict(zip(sub.posting_id, sub.matches))
        same = np.mean([set(m.split()) == set(batch[p].split())
                        for p, m in zip(answer.posting_id, answer.matches)])
        print(f"batch {b}: {len(new)} new postings matched in {took:.2f} s; "
              f"same as batch predict for {same:.0%}; index now {len(index)}")
    print(answer.head(3).to_string(index=False))
    index.save(folder)
    print(f"saved to {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
