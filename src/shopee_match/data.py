"""Postings: the validated table every layer reads, its CSV reader, and group-aware splits."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "MAX_TITLE_CHARS",
    "Postings",
    "PostingsError",
    "group_kfold",
    "read_postings",
    "train_test_split_groups",
]

logger = logging.getLogger(__name__)

REQUIRED = ("posting_id",)
#: ``title`` is required unless the postings have an ``image`` column (an image-only catalogue).
OPTIONAL = ("title", "image", "image_phash", "label_group", "source")
#: Titles longer than this are cut (with a warning): no real product title is longer,
#: and a pathological one would dominate tokenising time.
MAX_TITLE_CHARS = 1000


class PostingsError(ValueError):
    """Bad postings input; the message names the file, column or row and the fix."""


class Postings:
    """A validated table of product postings.

    Columns: ``posting_id`` (unique), ``title``; optional ``image`` (file name under
    ``image_dir``), ``image_phash`` (16 hex digits), ``label_group`` (ground truth) and
    ``source`` (the shop or feed a posting came from, in a catalogue pooled from several:
    each source's postings are then judged among their own shop's neighbourhoods, see
    :mod:`~shopee_match.sources`). The attribute :attr:`source` is the file's name.
    ``title`` may be left out when there is an ``image`` column: an image-only catalogue,
    matched by image steps only (text steps then raise, naming the missing column).

    >>> p = Postings(pd.DataFrame({"posting_id": ["a", "b"], "title": ["Red Mug", "red mug"],
    ...                            "label_group": [1, 1]}))
    >>> len(p), p.has_labels
    (2, True)
    >>> [m.tolist() for m in p.true_matches()]
    [[0, 1], [0, 1]]
    """

    def __init__(
        self,
        df: pd.DataFrame,
        image_dir: str | Path | None = None,
        *,
        source: str = "postings",
    ) -> None:
        self.source = source
        self.df = _validate_frame(df, source)
        self.image_dir = Path(image_dir) if image_dir is not None else None
        if self.image_dir is not None and not self.image_dir.is_dir():
            raise PostingsError(
                f"{source}: image directory {str(self.image_dir)!r} does not exist; "
                "pass the folder that holds the `image` files."
            )

    # --- table access -------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.df)

    def __repr__(self) -> str:
        cols = ", ".join(self.df.columns)
        return f"Postings(n={len(self)}, columns=[{cols}], image_dir={self.image_dir})"

    @property
    def posting_id(self) -> np.ndarray:
        return self.df["posting_id"].to_numpy()

    @property
    def titles(self) -> list[str]:
        if not self.has_titles:
            raise PostingsError(
                f"{self.source}: no `title` column (an image-only catalogue), so text steps "
                "cannot run; use image steps only, e.g. Pipeline.default(images=True, "
                "text=False)."
            )
        return self.df["title"].tolist()

    @property
    def has_titles(self) -> bool:
        return "title" in self.df.columns

    @property
    def has_labels(self) -> bool:
        return "label_group" in self.df.columns

    @property
    def has_images(self) -> bool:
        return "image" in self.df.columns and self.image_dir is not None

    @property
    def has_phash(self) -> bool:
        return "image_phash" in self.df.columns

    @property
    def has_sources(self) -> bool:
        return "source" in self.df.columns

    def sources(self) -> np.ndarray:
        """Integer codes of the ``source`` column (0..n_sources-1), one per posting."""
        if not self.has_sources:
            raise PostingsError(f"{self.source}: no `source` column (the shop of each posting).")
        codes, _ = pd.factorize(self.df["source"])
        return codes.astype(np.intp)

    def image_paths(self) -> list[Path | None]:
        """Full path of each posting's image (``None`` where it has none)."""
        if not self.has_images:
            raise PostingsError(
                f"{self.source}: no images: pass `image_dir` (CLI: --images DIR) and an "
                "`image` column to use image steps."
            )
        assert self.image_dir is not None
        return [
            self.image_dir / name if isinstance(name, str) and name else None
            for name in self.df["image"]
        ]

    def subset(self, rows: Sequence[int] | np.ndarray) -> Postings:
        """The postings at positions ``rows``, as a new :class:`Postings`."""
        out = Postings.__new__(Postings)
        out.source = self.source
        out.df = self.df.iloc[np.asarray(rows, dtype=np.intp)].reset_index(drop=True)
        out.image_dir = self.image_dir
        return out

    # --- ground truth -------------------------------------------------------------
    def _require_labels(self) -> pd.Series:
        if not self.has_labels:
            raise PostingsError(
                f"{self.source}: needs a `label_group` column (ground truth) for fitting "
                "or evaluation; unlabelled postings can only be matched."
            )
        return self.df["label_group"]

    def groups(self) -> np.ndarray:
        """Integer codes of ``label_group`` (0..n_groups-1), one per posting."""
        codes, _ = pd.factorize(self._require_labels())
        return codes.astype(np.intp)

    def true_matches(self) -> list[np.ndarray]:
        """For each posting, the sorted row positions of its label group (itself included)."""
        codes = self.groups()
        order = np.argsort(codes, kind="stable")
        bounds = np.flatnonzero(np.diff(codes[order])) + 1
        members = np.split(order, bounds)
        by_code = {int(codes[m[0]]): np.sort(m) for m in members if len(m)}
        return [by_code[int(c)] for c in codes]


def _validate_frame(df: Any, source: str) -> pd.DataFrame:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{source}: expected a pandas DataFrame, got {type(df).__name__}.")
    df = df.copy()
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in REQUIRED if c not in df.columns]
    if "title" not in df.columns and "image" not in df.columns:
        missing.append("title")
    if missing:
        raise PostingsError(
            f"{source}: missing required column(s) {missing}; found {list(df.columns)}. "
            "A postings CSV needs at least `posting_id,title` (or `posting_id,image` for "
            "an image-only catalogue); name yours with columns={...} (CLI: --id-column, "
            "--title-column)."
        )
    if df["posting_id"].isna().any():
        row = int(np.flatnonzero(df["posting_id"].isna().to_numpy())[0])
        raise PostingsError(f"{source}: row {row + 1}: empty `posting_id`; every posting needs an id.")
    df["posting_id"] = df["posting_id"].astype(str).str.strip()
    dup = df["posting_id"].duplicated(keep="first")
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0])
        pid = df["posting_id"].iloc[row]
        raise PostingsError(
            f"{source}: row {row + 1}: duplicate posting_id {pid!r} "
            f"({int(dup.sum())} duplicate(s) in all); posting ids must be unique."
        )
    if df["posting_id"].str.contains(r"\s", regex=True).any():
        row = int(np.flatnonzero(df["posting_id"].str.contains(r"\s").to_numpy())[0])
        raise PostingsError(
            f"{source}: row {row + 1}: posting_id {df['posting_id'].iloc[row]!r} contains "
            "whitespace, which the submission format uses as a separator; remove it."
        )
    if "title" in df.columns:
        _check_titles(df, source)
    if "image_phash" in df.columns:
        _check_phash(df, source)
    for col, what in (("label_group", "label every posting or drop the column to match "
                                      "without ground truth"),
                      ("source", "name every posting's shop or drop the column")):
        if col in df.columns and df[col].isna().any():
            row = int(np.flatnonzero(df[col].isna().to_numpy())[0])
            raise PostingsError(f"{source}: row {row + 1}: empty `{col}`; {what}.")
    return df.reset_index(drop=True)


def _check_titles(df: pd.DataFrame, source: str) -> None:
    titles = df["title"]
    empty = titles.isna() | (titles.astype(str).str.strip() == "")
    if empty.any():
        rows = (np.flatnonzero(empty.to_numpy()) + 1).tolist()
        shown = ", ".join(map(str, rows[:5])) + (" ..." if len(rows) > 5 else "")
        warnings.warn(
            f"{source}: {len(rows)} posting(s) have an empty title (rows {shown}); they "
            "are kept and can still match by image.",
            UserWarning,
            stacklevel=4,
        )
    df["title"] = titles.fillna("").astype(str)
    long = df["title"].str.len() > MAX_TITLE_CHARS
    if long.any():
        row = int(np.flatnonzero(long.to_numpy())[0])
        warnings.warn(
            f"{source}: {int(long.sum())} title(s) longer than {MAX_TITLE_CHARS} characters "
            f"(first at row {row + 1}) were cut to that length.",
            UserWarning,
            stacklevel=4,
        )
        df.loc[long, "title"] = df.loc[long, "title"].str.slice(0, MAX_TITLE_CHARS)


def _check_phash(df: pd.DataFrame, source: str) -> None:
    ph = df["image_phash"]
    ok = ph.isna() | ph.astype(str).str.fullmatch(r"[0-9a-fA-F]{16}")
    if not ok.all():
        row = int(np.flatnonzero(~ok.to_numpy())[0])
        raise PostingsError(
            f"{source}: row {row + 1}: image_phash {ph.iloc[row]!r} is not 16 hex digits "
            "(a 64-bit perceptual hash); fix it or drop the column to compute it from images."
        )
    df["image_phash"] = ph.where(ph.isna(), ph.astype(str).str.lower())


def read_postings(
    csv: str | Path,
    image_dir: str | Path | None = None,
    *,
    encoding: str | None = None,
    columns: Mapping[str, str] | None = None,
) -> Postings:
    """Read a postings CSV (``posting_id,title[,image,image_phash,label_group,source]``, or
    ``posting_id,image[,label_group]`` for an image-only catalogue).

    UTF-8 is tried first; a file that is not UTF-8 is read as latin-1 with a warning
    (pass ``encoding`` to choose). ``columns`` maps our column names to the file's, e.g.
    ``{"posting_id": "id", "title": "name"}`` for an ``id,name,price`` CSV (other columns
    are kept as they are).

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "p.csv")
    >>> _ = open(path, "w").write("posting_id,title\\n1,Red mug\\n2,Blue mug\\n")
    >>> len(read_postings(path))
    2
    """
    path = Path(csv)
    if not path.is_file():
        raise PostingsError(f"{path}: no such file; check the path to the postings CSV.")
    rename = _column_map(columns, path)
    dtype = {rename.get(c, c): str for c in ("posting_id", "title", "image", "image_phash",
                                             "source")}
    kwargs: dict[str, Any] = {"dtype": dtype, "keep_default_na": False, "na_values": [""]}
    used = encoding or "utf-8"
    try:
        if encoding is None:
            try:
                df = pd.read_csv(path, encoding="utf-8", **kwargs)
            except UnicodeDecodeError:
                used = "latin-1"
                warnings.warn(
                    f"{path}: not valid UTF-8; read as latin-1. Pass encoding=... "
                    "(CLI: --encoding) if that is wrong.",
                    UserWarning,
                    stacklevel=2,
                )
                df = pd.read_csv(path, encoding="latin-1", **kwargs)
        else:
            df = pd.read_csv(path, encoding=encoding, **kwargs)
    except pd.errors.EmptyDataError as exc:
        raise PostingsError(f"{path}: the file is empty; expected a header `posting_id,title`.") from exc
    except pd.errors.ParserError as exc:
        raise PostingsError(f"{path}: not a readable CSV ({exc}).") from exc
    _check_unique_header(path, used)
    if rename:
        df = _renamed(df, rename, path)
    return Postings(df, image_dir=image_dir, source=str(path))


def _column_map(columns: Mapping[str, str] | None, path: Path) -> dict[str, str]:
    """``columns`` checked: our names (``posting_id``, ``title``...) to the file's."""
    known = (*REQUIRED, *OPTIONAL)
    out = dict(columns or {})
    bad = [k for k in out if k not in known]
    if bad:
        raise PostingsError(f"{path}: columns={{...}} names {bad}, which are not postings "
                            f"columns; map any of {list(known)} to the file's column names.")
    return {k: str(v) for k, v in out.items() if str(v) != k}


def _renamed(df: pd.DataFrame, rename: dict[str, str], path: Path) -> pd.DataFrame:
    """The file's columns renamed to ours; a one-line error for a column not there."""
    df.columns = [str(c).strip() for c in df.columns]
    for ours, theirs in rename.items():
        if theirs not in df.columns:
            flag = {"posting_id": " (--id-column)", "title": " (--title-column)",
                    "source": " (--source-column)"}.get(ours, "")
            raise PostingsError(f"{path}: no column `{theirs}` to read as `{ours}`{flag}; "
                                f"the header has {list(map(str, df.columns))}.")
        if ours in df.columns:
            raise PostingsError(f"{path}: has a `{ours}` column and `{theirs}` is to be read "
                                f"as `{ours}`; rename or drop one of them.")
    return df.rename(columns={v: k for k, v in rename.items()})


def _check_unique_header(path: Path, encoding: str) -> None:
    """Refuse a header naming a column twice (pandas would silently rename one ``X.1``)."""
    header = pd.read_csv(path, encoding=encoding, header=None, nrows=1, dtype=str,
                         keep_default_na=False).iloc[0].tolist()
    seen: set[str] = set()
    for i, name in enumerate(header):
        if name in seen:
            what = f"column `{name}`" if name.strip() else "an empty column name"
            raise PostingsError(
                f"{path}: {what} appears twice in the header (again as column {i + 1}); "
                "rename or remove one of them."
            )
        seen.add(name)


# --- group-aware splits ------------------------------------------------------------
def train_test_split_groups(
    postings: Postings, test_size: float = 1 / 3, random_state: int | None = 0
) -> tuple[Postings, Postings]:
    """Split postings so that no ``label_group`` is on both sides.

    >>> df = pd.DataFrame({"posting_id": list("abcdef"), "title": list("abcdef"),
    ...                    "label_group": [1, 1, 2, 2, 3, 3]})
    >>> tr, te = train_test_split_groups(Postings(df), test_size=1/3)
    >>> set(tr.df.label_group) & set(te.df.label_group)
    set()
    """
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"`test_size` must be in (0, 1), got {test_size!r}.")
    codes = postings.groups()
    n_groups = int(codes.max()) + 1 if len(codes) else 0
    if n_groups < 2:
        raise PostingsError(
            f"{postings.source}: need at least 2 label groups to split, got {n_groups}."
        )
    rng = np.random.default_rng(random_state)
    perm = rng.permutation(n_groups)
    n_test = min(max(1, round(test_size * n_groups)), n_groups - 1)
    test_groups = np.zeros(n_groups, dtype=bool)
    test_groups[perm[:n_test]] = True
    is_test = test_groups[codes]
    return postings.subset(np.flatnonzero(~is_test)), postings.subset(np.flatnonzero(is_test))


def group_kfold(
    groups: np.ndarray, n_splits: int = 3, random_state: int | None = 0
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(train_rows, test_rows)`` with whole groups on one side, shuffled by group."""
    groups = np.asarray(groups)
    uniq, codes = np.unique(groups, return_inverse=True)
    if len(uniq) < n_splits:
        raise ValueError(
            f"Cannot make {n_splits} group folds from {len(uniq)} label groups; "
            "lower n_splits or add labelled data."
        )
    rng = np.random.default_rng(random_state)
    fold_of_group = rng.permutation(len(uniq)) % n_splits
    fold = fold_of_group[codes]
    for f in range(n_splits):
        yield np.flatnonzero(fold != f), np.flatnonzero(fold == f)


def concat_postings(catalogues: Sequence[Postings]) -> Postings:
    """Several labelled catalogues as one :class:`Postings` (for fitting embedders).

    Label groups never merge across catalogues (``<i>:`` is put before each catalogue's
    labels); ids that clash across catalogues get the same prefix; images keep their
    full paths.

    >>> a = Postings(pd.DataFrame({"posting_id": ["1", "2"], "title": ["x", "y"],
    ...                            "label_group": [7, 7]}))
    >>> b = Postings(pd.DataFrame({"posting_id": ["1"], "title": ["z"], "label_group": [7]}))
    >>> both = concat_postings([a, b])
    >>> both.posting_id.tolist(), both.groups().tolist()
    (['0:1', '0:2', '1:1'], [0, 0, 1])
    """
    if not catalogues:
        raise ValueError("concat_postings needs at least one Postings.")
    if len(catalogues) == 1:
        return catalogues[0]
    ids = pd.concat([c.df["posting_id"] for c in catalogues])
    clash = ids.duplicated(keep=False).any()
    frames = []
    for i, cat in enumerate(catalogues):
        df = cat.df.copy()
        if clash:
            df["posting_id"] = f"{i}:" + df["posting_id"].astype(str)
        if "label_group" in df.columns:
            df["label_group"] = f"{i}:" + df["label_group"].astype(str)
        if "image" in df.columns:
            df["image"] = ([str(p) if p is not None else None for p in cat.image_paths()]
                           if cat.has_images else None)
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    has_images = any(c.has_images for c in catalogues)
    source = " + ".join(c.source for c in catalogues)
    return Postings(df, image_dir=Path("/") if has_images else None, source=source)
