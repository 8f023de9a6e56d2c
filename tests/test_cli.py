"""The `shopee-match` command: the happy paths and every bad input, end to end."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from shopee_match.cli import main


@pytest.fixture(scope="module")
def catalog_csv(tmp_path_factory, image_catalog):
    folder = tmp_path_factory.mktemp("cli")
    path = folder / "catalog.csv"
    image_catalog.df.to_csv(path, index=False)
    return path, image_catalog.image_dir


@pytest.fixture(scope="module")
def model_dir(catalog_csv, tmp_path_factory):
    path, images = catalog_csv
    out = tmp_path_factory.mktemp("model") / "m"
    assert main(["fit", str(path), "--images", str(images), "-o", str(out), "-q"]) == 0
    return out


def _check_submission(sub_path, postings_csv):
    sub = pd.read_csv(sub_path, dtype=str)
    ids = pd.read_csv(postings_csv, dtype=str)["posting_id"]
    assert sub["posting_id"].tolist() == ids.tolist()
    for pid, matches in zip(sub["posting_id"], sub["matches"]):
        assert pid in matches.split()
        assert set(matches.split()) <= set(ids)


def test_fit_then_match_and_evaluate(catalog_csv, model_dir, tmp_path, capsys):
    path, images = catalog_csv
    out = tmp_path / "sub.csv"
    assert main(["match", str(path), "--images", str(images), "--model", str(model_dir),
                 "-o", str(out), "-q"]) == 0
    _check_submission(out, path)
    capsys.readouterr()
    assert main(["evaluate", str(path), "--images", str(images), "--model", str(model_dir), "-q"]) == 0
    text = capsys.readouterr().out
    assert "final" in text and "tfidf" in text and "phash" in text
    f1 = float(text.split("final")[1].split()[0])
    assert 0.5 < f1 <= 1.0


def test_match_titles_only_csv_without_model(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text("posting_id,title\n1,Red mug 300ml\n2,red mug 300 ml\n3,Blue desk lamp\n")
    out = tmp_path / "s.csv"
    assert main(["match", str(csv), "-o", str(out), "-q"]) == 0
    sub = pd.read_csv(out, dtype=str)
    assert sub["matches"].tolist() == ["1 2", "1 2", "3"]


def test_demo_writes_submission(tmp_path, capsys):
    out = tmp_path / "demo.csv"
    assert main(["demo", "--groups", "30", "-o", str(out), "--workdir", str(tmp_path / "w"), "-q"]) == 0
    text = capsys.readouterr().out
    assert "held-out F1" in text
    assert len(pd.read_csv(out)) > 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"id,title\n1,x\n", "missing required column"),
        (b"posting_id,title\n1,x\n1,y\n", "row 2: duplicate posting_id '1'"),
        (b"", "the file is empty"),
        (b"posting_id,title,image_phash\n1,x,zz\n", "row 1: image_phash 'zz'"),
    ],
)
def test_bad_csv_gives_one_line_error(tmp_path, capsys, content, message):
    csv = tmp_path / "bad.csv"
    csv.write_bytes(content)
    out = tmp_path / "s.csv"
    assert main(["match", str(csv), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]
    assert "bad.csv" in err[0]
    assert not out.exists()


def test_evaluate_without_labels_is_clear(tmp_path, capsys):
    csv = tmp_path / "u.csv"
    csv.write_text("posting_id,title\n1,x\n")
    assert main(["evaluate", str(csv)]) == 2
    assert "label_group" in capsys.readouterr().err


def test_header_only_and_latin1(tmp_path, capsys):
    csv = tmp_path / "h.csv"
    csv.write_text("posting_id,title\n")
    out = tmp_path / "s.csv"
    assert main(["match", str(csv), "-o", str(out), "-q"]) == 0
    assert pd.read_csv(out).empty
    lat = tmp_path / "l.csv"
    lat.write_bytes("posting_id,title\n1,Caf\xe9 200g\n2,cafe 200g\n".encode("latin-1"))
    assert main(["match", str(lat), "-o", str(out)]) == 0
    assert "latin-1" in capsys.readouterr().err


def test_missing_images_warn_and_run_goes_on(tmp_path, capsys):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "broken.jpg").write_text("not an image")
    csv = tmp_path / "i.csv"
    csv.write_text("posting_id,title,image\n1,Red mug,gone.jpg\n2,Red mug,broken.jpg\n")
    out = tmp_path / "s.csv"
    assert main(["match", str(csv), "--images", str(tmp_path / "imgs"), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "gone.jpg" in err and "broken.jpg" in err
    assert pd.read_csv(out, dtype=str)["matches"].tolist() == ["1 2", "1 2"]


def test_bad_model_dir(tmp_path, catalog_csv, capsys):
    path, _ = catalog_csv
    assert main(["match", str(path), "--model", str(tmp_path / "none"), "-o", str(tmp_path / "s.csv")]) == 2
    assert "no such pipeline folder" in capsys.readouterr().err


def test_failed_run_leaves_no_output(tmp_path, model_dir, capsys):
    csv = tmp_path / "p.csv"
    csv.write_text("posting_id,title\n1,x\n")
    out = tmp_path / "out" / "s.csv"
    out.parent.mkdir()
    # a model whose config is damaged makes the run fail after reading the input
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    (broken / "config.json").write_text("{")
    assert main(["match", str(csv), "--model", str(broken), "-o", str(out)]) == 2
    assert list(out.parent.iterdir()) == []


def test_debug_shows_traceback_and_entry_point(tmp_path):
    csv = tmp_path / "bad.csv"
    csv.write_text("id\n1\n")
    plain = subprocess.run([sys.executable, "-m", "shopee_match", "match", str(csv), "-o", "x.csv"],
                           capture_output=True, text=True, cwd=tmp_path)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    debug = subprocess.run([sys.executable, "-m", "shopee_match", "match", str(csv), "-o", "x.csv",
                            "--debug"], capture_output=True, text=True, cwd=tmp_path)
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_fit_distributable_and_no_rerank(catalog_csv, tmp_path):
    import json

    path, images = catalog_csv
    out = tmp_path / "dist"
    assert main(["fit", str(path), "--images", str(images), "-o", str(out), "-q",
                 "--distributable"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["ensemble"]["class"] == "shopee_match>Ensemble"
    assert cfg["steps"][0]["embedder"]["params"]["fit_on"] == "train"
    assert [s["name"] for s in cfg["steps"]] == ["tfidf", "phash"]
    default = tmp_path / "default"
    assert main(["fit", str(path), "--images", str(images), "-o", str(default), "-q"]) == 0
    cfg = json.loads((default / "config.json").read_text())
    assert cfg["ensemble"]["class"] == "shopee_match>PairReranker"


def test_awkward_rows_warn_and_run_goes_on(tmp_path, capsys):
    """Empty and NaN titles, a 100,000-character title and a one-posting label group."""
    csv = tmp_path / "awkward.csv"
    rows = ["posting_id,title,label_group",
            "1,Red mug 300ml,a", "2,red mug 300 ml,a", "3,,b", '4,"   ",c',
            "5," + "x" * 100_000 + ",d", "6,Blue lamp,e", "7,blue lamp LED,e", "8,Green cup,f"]
    csv.write_text("\n".join(rows) + "\n")
    out = tmp_path / "s.csv"
    assert main(["match", str(csv), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "empty title" in err and "longer than" in err
    sub = pd.read_csv(out, dtype=str)
    assert len(sub) == 8 and sub.loc[0, "matches"] == "1 2"
    assert main(["evaluate", str(csv), "-q"]) == 0
    assert "final" in capsys.readouterr().out
