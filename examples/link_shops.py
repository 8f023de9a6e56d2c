"""Link two (or more) shops' catalogues with the shipped model, no labels needed.

    python examples/link_shops.py                 # a generated catalogue of three shops
    python examples/link_shops.py offers.csv      # posting_id,title,source[,label_group]

Each shop lists a product at most once (a price-comparison feed, two catalogues to
link), so no pair inside a shop is kept (``exclusive_sources=True``), and with
``"one"`` each offer keeps at most one match in each other shop, the most probable.
The shipped model also learns on each shop how alike its titles must be (self-training
on its own code agreements). With a ``label_group`` column every way is scored beside
matching nothing; the evidence of a few linked pairs is printed in words.
"""

from __future__ import annotations

import sys

import numpy as np

from shopee_match import Pipeline, Postings, read_postings
from shopee_match.datasets import make_titles
from shopee_match.metrics import graph_f1_scores, match_nothing_f1
from shopee_match.review import score_pairs


def generated() -> Postings:
    """Products with two or three offers, each offer in a different shop."""
    df = make_titles(n_groups=400, per_group=(1, 3), seed=7)
    df["source"] = "shop" + (df.groupby("label_group").cumcount() % 3).astype(str)
    return Postings(df, source="three generated shops")


def main() -> None:
    offers = read_postings(sys.argv[1]) if len(sys.argv) > 1 else generated()
    if not offers.has_sources:
        raise SystemExit(f"{offers.source}: needs a `source` column naming each offer's shop.")
    print(f"{len(offers)} offers from {offers.df['source'].nunique()} shops")
    pipe = Pipeline.pretrained()
    graphs = pipe.step_graphs(offers)  # the candidates, searched once for every way below
    for how in (False, True, "one"):
        pipe.set_params(exclusive_sources=how)
        g = pipe.combine_graphs(graphs, offers)
        pairs = (g.nnz - len(offers)) // 2
        line = f"exclusive_sources={how!r}: {pairs} pairs"
        if offers.has_labels:
            f1 = graph_f1_scores(g, offers.groups()).mean()
            line += f", F1 {f1:.3f} (match nothing {match_nothing_f1(offers.groups()):.3f})"
        print(line)
    scores = score_pairs(pipe.set_params(exclusive_sources="one"), offers)
    table = scores.table(kept=True, top=2)
    src = dict(zip(offers.df["posting_id"], offers.df["source"]))
    across = table[[src[a] != src[b] for a, b in zip(table["left_id"], table["right_id"])]]
    titles = dict(zip(offers.df["posting_id"], offers.titles))
    rng = np.random.default_rng(0)
    for i in rng.choice(len(across), size=min(3, len(across)), replace=False):
        row = across.iloc[int(i)]
        print(f"- {titles[row['left_id']]!r} ~ {titles[row['right_id']]!r}: {row['evidence']}")


if __name__ == "__main__":
    main()
