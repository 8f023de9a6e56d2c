"""SIGKILL at random moments of `fit`, `match`, `eda` and `save` leaves the previous
output or none, never a partial one, and the next run works.

The commands run as real `python -m shopee_match` subprocesses: once to completion
(timing it, and checking it writes what the in-process run writes), then killed after
random delays over that time. Most of a command's time goes to starting and computing,
so the library's writers also run in loops that are killed while they write: a saved
model (`Pipeline.save`), the EDA plots (`eda_plots`) and a submission written as `match`
writes it. SHOPEE_KILL_TRIALS sets the kills per case (default 2).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shopee_match import Pipeline, make_catalog
from shopee_match.cli import main

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")]

TRIALS = int(os.environ.get("SHOPEE_KILL_TRIALS", "2"))
Snapshot = dict[str, bytes]


def _snapshot(path: Path) -> Snapshot | None:
    """The bytes of a file, or of every file under a folder by relative path; None if absent."""
    if not path.exists():
        return None
    if path.is_file():
        return {"": path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _litter(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*") if p.name.endswith((".tmp", ".old")))


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """Two labelled CSVs: `new.csv` (what the killed runs write from) and `old.csv` (the
    earlier output), and the complete outputs of each, written in-process."""
    root = tmp_path_factory.mktemp("kill")
    for name, seed, groups in (("new", 1, 150), ("old", 2, 12)):
        make_catalog(groups, images=False, seed=seed).df.to_csv(root / f"{name}.csv", index=False)
        out = root / f"ref_{name}"
        assert main(["fit", str(root / f"{name}.csv"), "-o", str(out / "model"),
                     "--distributable", "-q"]) == 0
        assert main(["match", str(root / f"{name}.csv"), "--model", str(out / "model"), "-o",
                     str(out / "sub.csv"), "-q"]) == 0
        assert main(["eda", str(root / f"{name}.csv"), "-o", str(out / "eda"), "-q"]) == 0
    return root


def _command(kind: str, work: Path, target: Path) -> list[str]:
    new = str(work / "new.csv")
    if kind == "fit":
        return ["fit", new, "-o", str(target), "--distributable", "-q"]
    if kind == "match":
        return ["match", new, "--model", str(work / "ref_new" / "model"), "-o", str(target), "-q"]
    if kind == "eda":
        return ["eda", new, "-o", str(target), "-q"]
    raise AssertionError(kind)


_WRITE_LOOP = """
import sys
import pandas as pd
from shopee_match import Pipeline, read_postings
from shopee_match._persist import atomic_file
from shopee_match.plots import eda_plots

kind, src, out = sys.argv[1:4]
if kind == "save":
    pipe = Pipeline.load(src)
    write = lambda: pipe.save(out)
elif kind == "plots":
    postings = read_postings(src)
    write = lambda: eda_plots(postings, out)
else:  # the submission, as `match` writes it
    sub = pd.read_csv(src, dtype=str, keep_default_na=False)

    def write():
        with atomic_file(out, "w", encoding="utf-8", newline="") as fh:
            sub.to_csv(fh, index=False)
print("ready", flush=True)
while True:
    write()
"""
LOOPS = {"save": "model", "plots": "eda", "submission": "sub.csv"}


def _spawn(kind: str, work: Path, target: Path) -> subprocess.Popen[bytes]:
    if kind in LOOPS:  # the library's writer, writing again and again until killed
        src = {"save": work / "ref_new" / "model", "plots": work / "new.csv",
               "submission": work / "ref_new" / "sub.csv"}[kind]
        args = ["-c", _WRITE_LOOP, kind, str(src), str(target)]
    else:
        args = ["-m", "shopee_match", *_command(kind, work, target)]
    return subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def _outputs(kind: str, work: Path) -> tuple[str, Path, Path]:
    """(output name, its complete new version, its previous version)."""
    name = {"fit": "model", "match": "sub.csv", "eda": "eda", **LOOPS}[kind]
    return name, work / "ref_new" / name, work / "ref_old" / name


def _place(src: Path, dst: Path) -> None:
    if dst.is_dir():
        shutil.rmtree(dst)
    elif dst.exists():
        dst.unlink()
    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        shutil.copyfile(src, dst)


def _check_after_kill(kind: str, target: Path, new: Snapshot, old: Snapshot | None,
                      where: str) -> None:
    got = _snapshot(target)
    if kind in ("eda", "plots"):  # one PNG per figure, each written atomically
        for rel, data in (got or {}).items():
            if rel.endswith(".tmp"):
                continue  # the killed run's temporary file; the next run removes it
            assert data in (new.get(rel), (old or {}).get(rel)), f"{where}: partial {rel}"
        return
    got = {k: v for k, v in (got or {}).items() if not k.endswith(".tmp")} or None
    assert got is None or got in (new, old), f"{where}: {target.name} is partial"


def _prepare(trial: int, old_ref: Path, target: Path) -> Snapshot | None:
    """Even trials start from the previous output, odd ones from none."""
    if trial % 2 == 0:
        _place(old_ref, target)
    elif target.is_dir():
        shutil.rmtree(target)
    elif target.exists():
        target.unlink()
    return _snapshot(target)


def _kill(proc: subprocess.Popen[bytes], delay: float) -> int:
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    return proc.wait(timeout=60)


@pytest.mark.parametrize("kind", ["fit", "match", "eda"])
def test_killed_command_leaves_previous_or_complete_output(work, tmp_path, kind):
    name, new_ref, old_ref = _outputs(kind, work)
    new = _snapshot(new_ref)
    assert new
    rng = random.Random(f"kill-{kind}")
    target = tmp_path / name
    t0 = time.perf_counter()
    proc = _spawn(kind, work, target)  # once to completion: the timing, and the output
    assert proc.wait(timeout=300) == 0, proc.stderr.read().decode() if proc.stderr else ""
    duration = time.perf_counter() - t0
    assert _snapshot(target) == new
    for trial in range(TRIALS):
        old = _prepare(trial, old_ref, target)
        delay = duration * rng.uniform(0.35, 1.05)
        code = _kill(_spawn(kind, work, target), delay)
        where = f"{kind}, trial {trial}, killed after {delay:.2f}s of {duration:.2f}s (rc {code})"
        _check_after_kill(kind, target, new, old, where)
    assert main(_command(kind, work, target)) == 0  # the next run works and cleans up
    assert _snapshot(target) == new
    assert _litter(tmp_path) == []


@pytest.mark.parametrize("kind", list(LOOPS))
def test_writer_killed_while_writing_leaves_previous_or_complete_output(work, tmp_path, kind):
    name, new_ref, old_ref = _outputs(kind, work)
    new = _snapshot(new_ref)
    assert new
    rng = random.Random(f"kill-loop-{kind}")
    target = tmp_path / name
    for trial in range(TRIALS + 1):
        old = _prepare(trial, old_ref, target)
        proc = _spawn(kind, work, target)
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        delay = rng.uniform(0.0, 1.0)  # the loop only writes: any moment is mid-write
        code = _kill(proc, delay)
        _check_after_kill(kind, target, new, old, f"{kind}, trial {trial}, {delay:.2f}s (rc {code})")
    if kind == "save":  # the next write works and cleans up
        Pipeline.load(new_ref).save(target)
    elif kind == "plots":
        assert main(["eda", str(work / "new.csv"), "-o", str(target), "-q"]) == 0
    else:
        assert main(_command("match", work, target)) == 0
    assert _snapshot(target) == new
    assert _litter(tmp_path) == []
