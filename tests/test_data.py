"""Postings validation, the CSV reader on bad files, and group-aware splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shopee_match import (
    Postings,
    PostingsError,
    group_kfold,
    read_postings,
    train_test_split_groups,
)
from shopee_match.data import MAX_TITLE_CHARS


def _write(tmp_path, text: str | bytes, name: str = "p.csv"):
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_read_minimal_csv(tmp_path):
    p = read_postings(_write(tmp_path, "posting_id,title\na,Red mug\nb,Blue mug\n"))
    assert len(p) == 2
    assert p.titles == ["Red mug", "Blue mug"]
    assert not p.has_labels and not p.has_images and not p.has_phash


def test_missing_required_column_names_it(tmp_path):
    path = _write(tmp_path, "id,title\na,Red mug\n")
    with pytest.raises(PostingsError, match=r"p\.csv.*missing required column.*posting_id"):
        read_postings(path)
    with pytest.raises(PostingsError, match="title"):
        read_postings(_write(tmp_path, "posting_id,name\na,x\n", "q.csv"))


def test_duplicate_posting_id_names_row(tmp_path):
    path = _write(tmp_path, "posting_id,title\na,x\nb,y\na,z\n")
    with pytest.raises(PostingsError, match=r"row 3: duplicate posting_id 'a'"):
        read_postings(path)


def test_empty_and_nan_titles_warn_and_are_kept(tmp_path):
    path = _write(tmp_path, 'posting_id,title\na,Red mug\nb,\nc,"   "\n')
    with pytest.warns(UserWarning, match=r"2 posting\(s\) have an empty title \(rows 2, 3\)"):
        p = read_postings(path)
    assert len(p) == 3 and p.titles[1] == ""


def test_huge_title_is_cut_with_warning(tmp_path):
    path = _write(tmp_path, "posting_id,title\na," + "x" * 100_000 + "\nb,ok\n")
    with pytest.warns(UserWarning, match="longer than"):
        p = read_postings(path)
    assert len(p.titles[0]) == MAX_TITLE_CHARS and p.titles[1] == "ok"


def test_latin1_file_is_read_with_warning(tmp_path):
    path = _write(tmp_path, "posting_id,title\na,Caf\xe9 cr\xe8me 200g\n".encode("latin-1"))
    with pytest.warns(UserWarning, match="not valid UTF-8; read as latin-1"):
        p = read_postings(path)
    assert p.titles == ["Café crème 200g"]


def test_explicit_encoding(tmp_path):
    path = _write(tmp_path, "posting_id,title\na,Caf\xe9\n".encode("cp1252"))
    assert read_postings(path, encoding="cp1252").titles == ["Café"]


def test_header_only_csv_gives_empty_postings(tmp_path):
    p = read_postings(_write(tmp_path, "posting_id,title\n"))
    assert len(p) == 0


def test_empty_file_and_missing_file(tmp_path):
    with pytest.raises(PostingsError, match="empty"):
        read_postings(_write(tmp_path, ""))
    with pytest.raises(PostingsError, match="no such file"):
        read_postings(tmp_path / "nope.csv")


def test_bad_phash_names_row(tmp_path):
    path = _write(tmp_path, "posting_id,title,image_phash\na,x,94974f937d4c2433\nb,y,xyz\n")
    with pytest.raises(PostingsError, match=r"row 2: image_phash 'xyz'"):
        read_postings(path)


def test_missing_image_dir(tmp_path):
    path = _write(tmp_path, "posting_id,title,image\na,x,a.jpg\n")
    with pytest.raises(PostingsError, match="image directory"):
        read_postings(path, image_dir=tmp_path / "nowhere")


def test_whitespace_in_id_rejected(tmp_path):
    with pytest.raises(PostingsError, match="whitespace"):
        read_postings(_write(tmp_path, 'posting_id,title\n"a b",x\n'))


def test_empty_label_group_rejected(tmp_path):
    with pytest.raises(PostingsError, match=r"row 2: empty `label_group`"):
        read_postings(_write(tmp_path, "posting_id,title,label_group\na,x,1\nb,y,\n"))


def test_true_matches_with_singleton_group():
    p = Postings(pd.DataFrame({"posting_id": list("abcd"), "title": list("abcd"),
                               "label_group": [7, 7, 9, 7]}))
    sets = [m.tolist() for m in p.true_matches()]
    assert sets == [[0, 1, 3], [0, 1, 3], [2], [0, 1, 3]]


def test_fit_needs_labels_message():
    p = Postings(pd.DataFrame({"posting_id": ["a"], "title": ["x"]}))
    with pytest.raises(PostingsError, match="label_group"):
        p.groups()


def test_split_is_group_disjoint_and_complete(titles_catalog):
    train, test = train_test_split_groups(titles_catalog, test_size=0.3, random_state=1)
    assert set(train.df.label_group).isdisjoint(test.df.label_group)
    assert len(train) + len(test) == len(titles_catalog)
    assert sorted(train.posting_id.tolist() + test.posting_id.tolist()) == sorted(
        titles_catalog.posting_id.tolist()
    )


def test_group_kfold_covers_each_row_once(titles_catalog):
    groups = titles_catalog.groups()
    seen = np.zeros(len(groups), dtype=int)
    for train_rows, test_rows in group_kfold(groups, n_splits=4):
        assert set(groups[train_rows]).isdisjoint(groups[test_rows])
        seen[test_rows] += 1
    assert (seen == 1).all()
    with pytest.raises(ValueError, match="Cannot make 5 group folds from 2"):
        list(group_kfold(np.array([0, 0, 1]), n_splits=5))
