"""Evidence in words: a pair's feature contributions grouped into what a person checks
(codes, sizes, numbers, rare words, ranks both ways, similarity) and phrased with the
pair's own titles (``shared code KXTS108W``, ``sizes differ 64GB / 128GB``)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache

import numpy as np

from ..text.codes import split_kinds
from ..text.preprocess import TitlePreprocessor

__all__ = ["feature_group", "modality_label", "phrase"]

_PREP = TitlePreprocessor(stop_words=None, stem=False)
_UNIT = re.compile(r"^\d+(?:\.\d+)?(\D*)$")
_TRAILING = re.compile(r"[^\W\d_]+$")

#: what a person calls each of the package's usual steps
_LABELS = {"tfidf": "title text", "tfidf_qe": "title text (expanded)", "phash": "image hash",
           "bert": "title meaning", "image": "image", "effnet": "image"}

_TITLE_GROUPS = {"code": "codes", "core": "codes", "qty": "sizes", "num": "numbers",
                 "word": "words", "idf": "words", "ntok": "length", "len": "length"}
_RANK = ("rank_ij", "rank_ji", "mutual_best", "place_i", "place_j", "ratio_i", "ratio_j",
         "gap_i", "gap_j")
_SIM = ("sim", "sim2", "shared", "present")


def modality_label(name: str) -> str:
    """A step's name as a person reads it (``tfidf`` -> ``title text``)."""
    if re.fullmatch(r"stage\d+", name):
        return "the first-pass model"
    return _LABELS.get(name, name.replace("_", " "))


def feature_group(feature: str) -> str:
    """The group a pair feature's contribution is summed into: ``codes``, ``sizes``,
    ``numbers``, ``words``, ``length``, or ``<step>:rank`` / ``:sim`` / ``:crowd``.

    >>> feature_group("qty_unit_conflict"), feature_group("tfidf__rank_ji")
    ('sizes', 'tfidf:rank')
    """
    if "__" not in feature:
        return _TITLE_GROUPS.get(feature.split("_")[0], "words")
    step, what = feature.split("__", 1)
    if what in _RANK:
        return f"{step}:rank"
    if what in _SIM:
        return f"{step}:sim"
    return f"{step}:crowd"


@lru_cache(maxsize=65536)
def _kinds(title: str) -> tuple[list[str], set[str], set[str], set[str], set[str]]:
    toks = _PREP.tokens(title)
    codes, qty, nums = split_kinds(toks)
    return toks, codes, qty, nums, codes | qty | nums


def _first(xs: Sequence[str] | set[str], n: int = 1) -> str:
    return ", ".join(sorted(xs, key=lambda t: (-len(t), t))[:n]).upper()


def _ordinal(v: float) -> str:
    if not math.isfinite(v):
        return "-"
    k = int(v)
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


def _title_phrase(group: str, left: str, right: str, sign: float,
                  rarity: Mapping[str, int]) -> str:
    lt, lc, lq, ln, lk = _kinds(left)
    rt, rc, rq, rn, rk = _kinds(right)
    if group == "codes":
        shared = lc & rc
        if shared:
            return f"shared code {_first(shared)}"
        cores = {_TRAILING.sub("", c) for c in lc} & {_TRAILING.sub("", c) for c in rc}
        if lc and rc and cores:
            return f"codes of one family {_first(lc)} / {_first(rc)}"
        if lc and rc:
            return f"codes differ {_first(lc)} / {_first(rc)}"
        if lc or rc:
            return f"code {_first(lc or rc)} on one side only"
        return "no model codes to disagree" if sign >= 0 else "no model codes to confirm"
    if group == "sizes":
        shared = lq & rq
        only_l, only_r = lq - shared, rq - shared
        if only_l and only_r and (not shared or sign < 0):
            return f"sizes differ {_first(only_l)} / {_first(only_r)}"
        if shared:
            return f"same size {_first(shared)}"
        if lq or rq:
            return f"size {_first(lq or rq)} on one side only"
        return "no sizes to disagree" if sign >= 0 else "no sizes to confirm"
    if group == "numbers":
        shared = ln & rn
        if shared and sign >= 0:
            return f"shared number {_first(shared)}"
        if ln and rn and not shared:
            return f"numbers differ {_first(ln)} / {_first(rn)}"
        if ln ^ rn:
            return f"number {_first(ln ^ rn)} on one side only"
        if shared:
            return "same numbers"
        return "no numbers to disagree" if sign >= 0 else "no numbers to confirm"
    if group == "length":
        return f"titles of {len(lt)} and {len(rt)} words"
    words_l, words_r = set(lt) - lk, set(rt) - rk
    if sign >= 0:
        common = sorted(words_l & words_r, key=lambda t: (rarity.get(t, 1), t))[:3]
        return ("rare words shared: " + ", ".join(common)) if common else "few words shared"
    only = sorted(words_l ^ words_r, key=lambda t: (rarity.get(t, 1), t))[:3]
    return ("words on one side only: " + ", ".join(only)) if only else "few words shared"


def phrase(group: str, values: Mapping[str, float], left: str | None, right: str | None,
           sign: float, rarity: Mapping[str, int]) -> str:
    """The words for one group of a pair's evidence; ``values`` are the pair's feature
    values by name, ``sign`` the direction the group pushed (+: same product)."""
    if ":" not in group:
        if left is None or right is None:
            return group
        return _title_phrase(group, left, right, sign, rarity)
    step, what = group.split(":")
    label = modality_label(step)
    sim = values.get(f"{step}__sim", np.nan)
    if what == "rank":
        rij, rji = values.get(f"{step}__rank_ij", np.nan), values.get(f"{step}__rank_ji", np.nan)
        if not (math.isfinite(rij) or math.isfinite(rji)):
            return f"not among the candidates by {label}"
        if rij == 1 and rji == 1:
            return f"each other's best match by {label}"
        return f"rank both ways by {label}: {_ordinal(rij)} / {_ordinal(rji)}"
    if what == "sim":
        if not math.isfinite(sim):
            return f"not proposed by {label}"
        what_sim = "probability" if step.startswith("stage") else "similarity"
        return f"{label} {what_sim} {sim:.2f}"
    top = values.get(f"{step}__s5_i", np.nan)
    if sign < 0 and math.isfinite(top):
        return f"many close neighbours by {label} (5th at {top:.2f})"
    return f"few close neighbours by {label}"
