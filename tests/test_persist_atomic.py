"""Atomic writes: the modes a plain open()/mkdir() gives, and what a killed writer leaves.

Through the helpers, the API (Pipeline.save, eda_plots) and the command (`shopee-match`).
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from shopee_match import Pipeline, make_catalog
from shopee_match._persist import _host, atomic_dir, atomic_file, clean_stale, temp_dir
from shopee_match.cli import main
from shopee_match.plots import eda_plots


@pytest.fixture(params=[0o022, 0o027, 0o002])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _check_tree(root: Path, mask: int) -> int:
    """Every file is 0o666 & ~mask and every folder 0o777 & ~mask; returns entries checked."""
    n = 0
    for p in [root, *root.rglob("*")]:
        want = (0o777 if p.is_dir() else 0o666) & ~mask
        assert _mode(p) == want, f"{p}: {oct(_mode(p))} != {oct(want)}"
        n += 1
    return n


def _no_litter(folder: Path) -> None:
    left = [p.name for p in folder.iterdir() if p.name.endswith((".tmp", ".old"))]
    assert left == []


def test_helpers_give_umask_modes(tmp_path, umask):
    with atomic_file(tmp_path / "a.csv") as fh:
        fh.write("x\n")
    assert _mode(tmp_path / "a.csv") == 0o666 & ~umask
    with atomic_file(tmp_path / "a.csv") as fh:  # replacing: still a new file's mode
        fh.write("y\n")
    assert (tmp_path / "a.csv").read_text() == "y\n"
    assert _mode(tmp_path / "a.csv") == 0o666 & ~umask
    for _ in range(2):  # created, then swapped for the old one
        with atomic_dir(tmp_path / "m") as d:
            (d / "f.json").write_text("{}")
        assert _mode(tmp_path / "m") == 0o777 & ~umask
    t = temp_dir("shopee_match_test_")
    try:
        assert _mode(t) == 0o777 & ~umask
    finally:
        t.rmdir()
    _no_litter(tmp_path)


def test_api_outputs_have_umask_modes(tmp_path, umask):
    data = make_catalog(n_groups=8, image_dir=tmp_path / "img", image_size=32, seed=2)
    pipe = Pipeline.default(rerank=False).fit(data)
    pipe.save(tmp_path / "model")
    assert _check_tree(tmp_path / "model", umask) >= 3
    written = eda_plots(data, tmp_path / "eda")
    assert len(written) == 3
    assert _check_tree(tmp_path / "eda", umask) == 4
    assert _mode(data.image_dir) == 0o777 & ~umask  # make_catalog's folder and images
    assert _check_tree(data.image_dir, umask) == len(data) + 1


def test_cli_outputs_have_umask_modes(tmp_path, umask, capsys):
    csv = tmp_path / "train.csv"
    make_catalog(n_groups=10, images=False, seed=4).df.to_csv(csv, index=False)
    out = tmp_path / "out"
    assert main(["fit", str(csv), "-o", str(out / "model"), "-q", "--no-rerank"]) == 0
    assert main(["match", str(csv), "--model", str(out / "model"), "-o",
                 str(out / "sub.csv"), "-q"]) == 0
    assert main(["eda", str(csv), "-o", str(out / "eda"), "-q"]) == 0
    assert _check_tree(out, umask) >= 8
    _no_litter(out)


def test_failed_write_keeps_previous_file_and_folder(tmp_path):
    target = tmp_path / "s.csv"
    target.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_file(target) as fh:
        fh.write("half of the ne")
        raise RuntimeError("boom")
    assert target.read_text() == "old\n"
    model = tmp_path / "m"
    with atomic_dir(model) as d:
        (d / "a.json").write_text("1")
    with pytest.raises(RuntimeError), atomic_dir(model) as d:
        (d / "a.json").write_text("2")
        raise RuntimeError("boom")
    assert (model / "a.json").read_text() == "1"
    _no_litter(tmp_path)


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(proc.stdout)


def test_leftovers_of_a_killed_writer_are_cleaned(tmp_path):
    target = tmp_path / "sub.csv"
    dead = tmp_path / f".sub.csv.{_host()}.{_dead_pid()}.0a1b2c3d.tmp"
    dead.write_text("partial")
    live = tmp_path / f".sub.csv.{_host()}.{os.getpid()}.0a1b2c3d.tmp"  # a writer at work
    live.write_text("in progress")
    dead_dir = tmp_path / f".sub.csv.{_host()}.{_dead_pid()}.00ff.tmp"
    dead_dir.mkdir()
    (dead_dir / "x").write_text("partial")
    with atomic_file(target) as fh:
        fh.write("new\n")
    assert not dead.exists() and not dead_dir.exists()
    assert live.read_text() == "in progress"
    assert target.read_text() == "new\n"


def test_swap_cut_between_its_renames_brings_previous_folder_back(tmp_path):
    model = tmp_path / "model"
    with atomic_dir(model) as d:
        (d / "config.json").write_text("previous")
    # what a writer killed after `model -> .model.old` and before `tmp -> model` leaves
    os.replace(model, tmp_path / ".model.old")
    clean_stale(model)
    assert (model / "config.json").read_text() == "previous"
    # and a swap whose clean-up was cut: the stale .old goes, the new folder stays
    (tmp_path / ".model.old").mkdir()
    with atomic_dir(model) as d:
        (d / "config.json").write_text("new")
    assert (model / "config.json").read_text() == "new"
    _no_litter(tmp_path)


def test_output_over_a_folder_is_one_line(tmp_path, capsys):
    csv = tmp_path / "p.csv"
    csv.write_text("posting_id,title\n1,Red mug\n2,Blue mug\n")
    (tmp_path / "sub.csv").mkdir()
    model = tmp_path / "model"
    Pipeline.default(rerank=False, phash=False).set_params(tune=False).fit(
        make_catalog(5, images=False)).save(model)
    capsys.readouterr()
    assert main(["match", str(csv), "--model", str(model), "-o", str(tmp_path / "sub.csv"),
                 "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sub.csv" in err[0] and "folder" in err[0]
    # and a model folder over a file
    train = tmp_path / "train.csv"
    make_catalog(5, images=False).df.to_csv(train, index=False)
    (tmp_path / "m.txt").write_text("mine")
    assert main(["fit", str(train), "-o", str(tmp_path / "m.txt"), "-q", "--no-rerank"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "m.txt" in err[0] and "not a directory" in err[0]
    assert (tmp_path / "m.txt").read_text() == "mine"
