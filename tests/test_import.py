"""`import shopee_match` is light: no TensorFlow, keras-hub, faiss, scikit-learn or CuPy.

(Its time is measured in benchmarks/import_time.py, not here: timings do not belong in tests.)
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import shopee_match

HEAVY = ("tensorflow", "keras", "keras_hub", "faiss", "cupy", "cuml", "torch", "sklearn", "dask",
         "matplotlib")


def test_import_loads_no_heavy_module():
    code = (
        "import sys, json; import shopee_match; from shopee_match import Pipeline, Postings, "
        "make_catalog, NeighborMatcher, HashMatcher, BlendMatcher, PhashEmbedder, f1_score, "
        "NotFittedError, Matcher, Combiner; "
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_public_names():
    for name in shopee_match.__all__:
        assert getattr(shopee_match, name) is not None
    assert shopee_match.__version__.count(".") == 2


def test_the_classes_users_meet_are_importable_from_the_package():
    from shopee_match import BlendMatcher, NotFittedError, PairReranker, Pipeline
    from shopee_match.neighbors.blend import BlendMatcher as Blend
    from shopee_match.rerank import PairReranker as Reranker

    assert PairReranker is Reranker and BlendMatcher is Blend
    # the error an unfitted pipeline raises is the one the package names
    with pytest.raises(NotFittedError):
        Pipeline.default().predict(shopee_match.make_catalog(3, images=False))
    assert issubclass(NotFittedError, (ValueError, AttributeError))


def test_loading_a_text_pipeline_does_not_import_tensorflow(tmp_path):
    from shopee_match import Pipeline, make_catalog

    Pipeline.default(rerank=False, phash=False).fit(make_catalog(20, images=False)).save(tmp_path / "m")
    code = (
        "import sys; from shopee_match import Pipeline, make_catalog; "
        f"p = Pipeline.load({str(tmp_path / 'm')!r}); p.predict(make_catalog(10, images=False)); "
        "print([m for m in ('tensorflow', 'keras') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
