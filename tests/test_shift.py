"""Label-free catalogue profiles and the shift check (``shopee_match.shift``)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from shopee_match import Pipeline, make_catalog
from shopee_match.data import Postings
from shopee_match.shift import catalogue_profile, check_shift, shift_factor


def _coded(n: int, seed: int) -> Postings:
    """Near-identical titles that differ by a model code or a size: other products."""
    rng = np.random.default_rng(seed)
    codes = [f"KX-TS{c}W" for c in rng.integers(100, 999, size=12)]
    titles = [f"panasonic cordless phone {rng.choice(codes)} {rng.choice([16, 32, 64])}gb"
              for _ in range(n)]
    return Postings(pd.DataFrame({"posting_id": [f"c{i}" for i in range(n)], "title": titles,
                                  "label_group": np.arange(n)}))


def _worded(n: int, seed: int) -> Postings:
    """Offers of a few products, worded differently, no codes."""
    rng = np.random.default_rng(seed)
    words = ["cotton", "shirt", "men", "slim", "fit", "casual", "long", "sleeve", "blue",
             "original", "murah", "premium", "kaos", "pria"]
    titles = [" ".join(rng.choice(words, size=6, replace=False)) for _ in range(n)]
    return Postings(pd.DataFrame({"posting_id": [f"w{i}" for i in range(n)], "title": titles,
                                  "label_group": rng.integers(0, n // 4, size=n)}))


def test_profiles_tell_coded_from_worded_catalogues() -> None:
    coded, worded = catalogue_profile(_coded(120, 0)), catalogue_profile(_worded(120, 0))
    assert coded["near_pairs"] > 0 and worded["near_pairs"] > 0
    assert coded["conflict_share"] > 0.5 and coded["code_share"] > 0.9
    assert worded["conflict_share"] < 0.05 and worded["code_share"] < 0.05
    assert shift_factor([worded], coded) > 10
    assert shift_factor([worded], catalogue_profile(_worded(120, 1))) < 1.5
    # the nearest training catalogue counts
    assert shift_factor([worded, coded], coded) == pytest.approx(1.0)


def test_a_fitted_model_warns_on_an_unlike_catalogue(tmp_path) -> None:
    train = _worded(200, 2)
    pipe = Pipeline.default(images=False).fit(train)
    assert len(pipe.tuning_["profile"]) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a catalogue like the training one: no warning
        assert check_shift(pipe, _worded(150, 3)) < 2
    with pytest.warns(UserWarning, match="conflict on codes, sizes or numbers"):
        assert check_shift(pipe, _coded(150, 4)) > 2
    # the profile is saved and loaded with the model
    loaded = Pipeline.load(pipe.save(tmp_path / "model"))
    assert loaded.tuning_["profile"] == pipe.tuning_["profile"]
    with pytest.warns(UserWarning, match="conflict on codes"):
        check_shift(loaded, _coded(150, 4))
    # a model without a profile (the shipped one learnt from several kinds of shop)
    assert np.isnan(check_shift(Pipeline.pretrained(), make_catalog(n_groups=5, images=False)))


def test_a_catalogue_without_words_has_an_unknown_profile() -> None:
    p = Postings(pd.DataFrame({"posting_id": list("abc"), "title": ["!!", "??", ".."]}))
    prof = catalogue_profile(p)
    assert prof["near_pairs"] == 0 and np.isnan(prof["conflict_share"])
    assert np.isnan(shift_factor([prof], catalogue_profile(_coded(60, 0))))
