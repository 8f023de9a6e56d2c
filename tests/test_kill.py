"""SIGKILL at random moments of `fit`, `match`, `eda` and `save` leaves the previous
output or none, never a partial one, and the next run works.

Each command runs as a real `python -m shopee_match` subprocess: once to completion
(timing it, and checking it writes what the in-process run writes), then killed after
random delays over that time, most of them late, where the writing happens. Set
SHOPEE_KILL_TRIALS for more kills (default 3 per command).
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

TRIALS = int(os.environ.get("SHOPEE_KILL_TRIALS", "3"))
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
    for name, seed, groups in (("new", 1, 15), ("old", 2, 12)):
        make_catalog(groups, images=False, seed=seed).df.to_csv(root / f"{name}.csv", index=False)
        out = root / f"ref_{name}"
        assert main(["fit", str(root / f"{name}.csv"), "-o", str(out / "model"), "--no-rerank",
                     "-q"]) == 0
        assert main(["match", str(root / f"{name}.csv"), "--model", str(out / "model"), "-o",
                     str(out / "sub.csv"), "-q"]) == 0
        assert main(["eda", str(root / f"{name}.csv"), "-o", str(out / "eda"), "-q"]) == 0
    return root


def _command(kind: str, work: Path, target: Path) -> list[str]:
    new = str(work / "new.csv")
    if kind == "fit":
        return ["fit", new, "-o", str(target), "--no-rerank", "-q"]
    if kind == "match":
        return ["match", new, "--model", str(work / "ref_new" / "model"), "-o", str(target), "-q"]
    if kind == "eda":
        return ["eda", new, "-o", str(target), "-q"]
    raise AssertionError(kind)


_SAVE_LOOP = """
import sys
from shopee_match import Pipeline
pipe = Pipeline.load(sys.argv[1])
for _ in range(int(sys.argv[3])):
    pipe.save(sys.argv[2])
"""


def _spawn(kind: str, work: Path, target: Path) -> subprocess.Popen[bytes]:
    if kind == "save":  # the library call itself, saving again and again
        args = ["-c", _SAVE_LOOP, str(work / "ref_new" / "model"), str(target), "20"]
    else:
        args = ["-m", "shopee_match", *_command(kind, work, target)]
    return subprocess.Popen([sys.executable, *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def _outputs(kind: str, work: Path) -> tuple[str, Path, Path]:
    """(output name, its complete new version, its previous version)."""
    name = {"fit": "model", "save": "model", "match": "sub.csv", "eda": "eda"}[kind]
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
    if kind == "eda":  # one PNG per figure, each written atomically
        for rel, data in (got or {}).items():
            if rel.endswith(".tmp"):
                continue  # the killed run's temporary file; the next run removes it
            assert data in (new.get(rel), (old or {}).get(rel)), f"{where}: partial {rel}"
        return
    got = {k: v for k, v in (got or {}).items() if not k.endswith(".tmp")} or None
    assert got is None or got in (new, old), f"{where}: {target.name} is partial"


@pytest.mark.parametrize("kind", ["fit", "match", "eda", "save"])
def test_kill_leaves_previous_or_complete_output(work, tmp_path, kind):
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
        with_previous = trial % 2 == 0
        if with_previous:
            _place(old_ref, target)
        elif target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        old = _snapshot(target)
        delay = duration * rng.uniform(0.35, 1.05)
        proc = _spawn(kind, work, target)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        code = proc.wait(timeout=60)
        where = f"{kind}, trial {trial}, killed after {delay:.2f}s of {duration:.2f}s (rc {code})"
        _check_after_kill(kind, target, new, old, where)
    # the next run works, and leaves no temporary files behind
    if kind == "save":
        Pipeline.load(work / "ref_new" / "model").save(target)
    else:
        assert main(_command(kind, work, target)) == 0
    assert _snapshot(target) == new
    assert _litter(tmp_path) == []
