"""Run on a Kaggle-style folder: ``train.csv`` + ``train_images/`` (and optionally
``test.csv`` + ``test_images/``), as the Shopee competition ships its data.

    python examples/kaggle_folder.py --data /path/to/shopee-product-matching -o out/
    python examples/kaggle_folder.py -o out/        # builds such a folder from generated data

``train.csv`` has the competition's columns ``posting_id,image,image_phash,title,
label_group``. The script fits on two thirds of the training label groups, scores the
rest, writes EDA and evaluation plots, refits on all of ``train.csv`` and, when the folder
has a ``test.csv``, writes ``submission.csv`` for it.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from shopee_match import Pipeline, make_catalog, read_postings, train_test_split_groups
from shopee_match.image.phash import compute_phash


def build_folder(root: Path, n_groups: int, seed: int = 0) -> Path:
    """A small folder laid out like the competition's, from :func:`make_catalog`."""
    root.mkdir(parents=True, exist_ok=True)
    for split, offset in (("train", 0), ("test", 1)):
        cat = make_catalog(n_groups=n_groups if split == "train" else max(2, n_groups // 4),
                           image_dir=root / f"{split}_images", seed=seed + offset)
        df = cat.df
        df["posting_id"] = f"{split}_" + df["posting_id"]
        df["image_phash"] = [compute_phash(p) for p in cat.image_paths()]
        if split == "train":
            columns = ["posting_id", "image", "image_phash", "title", "label_group"]
        else:  # the competition's test.csv has no labels
            columns = ["posting_id", "image", "image_phash", "title"]
        df[columns].to_csv(root / f"{split}.csv", index=False)
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", metavar="DIR",
                        help="folder with train.csv and train_images/ (default: generate one)")
    parser.add_argument("-o", "--output", metavar="DIR", default="kaggle_out",
                        help="where plots and submission.csv go")
    parser.add_argument("--groups", type=int, default=120,
                        help="label groups to generate when --data is not given")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    args = parser.parse_args(argv)

    if args.data:
        data = Path(args.data)
    else:
        data = build_folder(Path(tempfile.mkdtemp(prefix="kaggle_")) / "shopee", args.groups)
        print(f"no --data: generated a competition-style folder at {data}")
    out = Path(args.output)

    train_images = data / "train_images"
    postings = read_postings(data / "train.csv",
                             image_dir=train_images if train_images.is_dir() else None)
    print(f"read {len(postings)} postings "
          f"({postings.df['label_group'].nunique()} label groups) from {data / 'train.csv'}")
    if not args.no_plots:
        from shopee_match.plots import eda_plots

        written = eda_plots(postings, out / "eda")
        print(f"EDA plots: {', '.join(p.name for p in written)}")

    # Honest numbers: fit on some label groups, score the others.
    train, valid = train_test_split_groups(postings, test_size=1 / 3, random_state=0)
    pipe = Pipeline.default().fit(train)
    print(f"tuned on {len(train)} postings: thresholds {pipe.tuning_['thresholds']}")
    scores = pipe.evaluate(valid)
    print(f"held-out groups ({len(valid)} postings):")
    print(scores.round(3).to_string())
    if not args.no_plots:
        from shopee_match.plots import evaluation_plots

        written = evaluation_plots(pipe, valid, out / "evaluation")
        print(f"evaluation plots: {', '.join(p.name for p in written)}")

    # The submission: refit on every labelled posting, match the test postings.
    test_csv = data / "test.csv"
    if test_csv.is_file():
        pipe = Pipeline.default().fit(postings)
        test_images = data / "test_images"
        test = read_postings(test_csv, image_dir=test_images if test_images.is_dir() else None)
        submission = pipe.predict(test)
        out.mkdir(parents=True, exist_ok=True)
        submission.to_csv(out / "submission.csv", index=False)
        print(f"wrote {out / 'submission.csv'} ({len(submission)} postings)")
    pipe.save(out / "model")
    print(f"saved the pipeline to {out / 'model'}; final held-out F1 "
          f"{scores.loc['final', 'f1']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
