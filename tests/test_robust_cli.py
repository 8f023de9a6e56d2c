"""The whole `shopee-match` command over generated CSV files (hypothesis).

Random columns (missing, repeated, unknown), encodings, 0 to a few hundred rows, random
bytes in titles and ids. Every run ends one of two ways: exit 0 with a valid output
(a submission, a model, plots, an F1 table), or exit 2 with one line naming the file
and nothing else. Never a traceback, never exit 1, never an output from a failed run.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import warnings
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from shopee_match import Pipeline, make_catalog
from shopee_match.cli import main

ENCODINGS = ["utf-8", "utf-8-sig", "latin-1", "cp1252", "utf-16", "shift_jis"]
COLUMNS = ["posting_id", "title", "label_group", "image_phash", "image", "price", "Title", ""]

words = st.sampled_from(["Red", "mug", "300ml", "ACME", "6pcs", "Kopi", "☮", "é", "!!", "-", "12"])
title_text = st.lists(words, max_size=8).map(" ".join)
raw = st.binary(max_size=12)  # arbitrary bytes: quotes, commas, NULs, newlines, bad UTF-8


@st.composite
def csv_files(draw: st.DrawFn) -> tuple[bytes, str, list[str]]:
    """(file bytes, the encoding the text was written in, the header)."""
    header = draw(st.one_of(
        st.just(["posting_id", "title", "label_group"]),
        st.just(["posting_id", "title"]),
        st.permutations(["posting_id", "title", "label_group", "image_phash", "price"]),
        st.lists(st.sampled_from(COLUMNS), min_size=1, max_size=5),  # may repeat a name
    ))
    encoding = draw(st.sampled_from(ENCODINGS))
    n = draw(st.one_of(st.integers(0, 12), st.integers(0, 300)))
    groups = draw(st.integers(1, 40))
    seed = draw(st.integers(0, 2**16))
    # each way of being wrong is rare, so that many files are good and get matched
    dup_ids, bad_phash, no_label = (draw(st.integers(0, 9)) == 0 for _ in range(3))
    lines = [",".join(header)]
    for i in range(n):
        cells = []
        for j, col in enumerate(header):
            k = (seed + 7 * i + 13 * j) % 97
            if col == "posting_id":
                cells.append(f"id{i // 2}" if dup_ids and k % 11 == 0 else f"id{i}")
            elif col == "label_group":
                cells.append("" if no_label and k % 23 == 0 else str((seed + i) % groups))
            elif col == "image_phash":
                cells.append("zz" if bad_phash and k % 5 == 0 else f"{(seed * 2654435761 + i) % 2**64:016x}")
            else:
                cells.append(draw(title_text) if k % 3 else f"\"{draw(title_text)}, {i}\"")
        lines.append(",".join(cells))
    text = "\n".join(lines) + ("\n" if draw(st.booleans()) else "")
    data = bytearray(text.encode(encoding, errors="replace"))
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 3]))):  # random bytes into titles, ids
        if len(data) > 2:
            at = draw(st.integers(0, len(data) - 1))
            data[at:at] = draw(raw)
    return bytes(data), encoding, header


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """A small fitted model, for `match`/`evaluate --model` (the other runs use the default)."""
    folder = tmp_path_factory.mktemp("robust")
    make_catalog(20, images=False, seed=9).df.to_csv(folder / "train.csv", index=False)
    assert main(["fit", str(folder / "train.csv"), "-o", str(folder / "model"), "--no-rerank",
                 "-q"]) == 0
    return folder / "model"


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
            warnings.catch_warnings():
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def _check_submission(path: Path) -> None:
    sub = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert list(sub.columns) == ["posting_id", "matches"]
    ids = set(sub["posting_id"])
    assert len(ids) == len(sub)
    for pid, matches in zip(sub["posting_id"], sub["matches"]):
        members = matches.split()
        assert pid in members and set(members) <= ids


def _check_one_line(code: int, out: str, err: str, csv: Path, target: Path) -> None:
    lines = err.strip().splitlines()
    assert code == 2, f"exit {code}: {err}"
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and csv.name in lines[0], lines[0]
    assert "Traceback" not in err and not target.exists()


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(case=csv_files(), command=st.sampled_from(["match", "match", "eda", "evaluate", "fit"]),
       pass_encoding=st.sampled_from([None, None, "right", "utf-8", "nonsense-enc"]),
       with_model=st.booleans())
def test_cli_on_generated_csv(tmp_path, model, case, command, pass_encoding, with_model):
    data, encoding, _ = case
    work = tmp_path / "w"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    csv = work / "in put.csv"
    csv.write_bytes(data)
    enc = {"right": encoding, None: None}.get(pass_encoding, pass_encoding)
    target = work / {"match": "sub.csv", "eda": "eda", "evaluate": "plots", "fit": "model"}[command]
    argv = [command, str(csv), "-q"]
    argv += ["--encoding", enc] if enc else []
    if command == "evaluate":
        argv += ["--plots", str(target)]
    else:
        argv += ["-o", str(target)]
    if command == "fit":
        argv += ["--no-rerank", "--folds", "2"]
    elif command in ("match", "evaluate") and with_model:
        argv += ["--model", str(model)]
    code, out, err = _run(argv)
    event(f"{command}: exit {code}")
    if code != 0:
        _check_one_line(code, out, err, csv, target)
        return
    assert "Traceback" not in err and "error" not in err
    if command == "match":
        _check_submission(target)
    elif command == "fit":
        Pipeline.load(target)
        assert out.startswith("fitted on ")
    elif command == "eda":
        assert {p.name for p in target.iterdir()} >= {"title_lengths.png"}
    else:
        assert "final" in out
