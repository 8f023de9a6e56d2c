"""The offline review page: one self-contained HTML file (style, script and data inline;
thumbnails linked relative to the file) that opens from disk with no server and no
network.

It shows the catalogue's match sets (biggest and least certain first, searchable by title
or id) with each pair's probability and evidence in words, and a labelling queue
(:func:`~shopee_match.review.queue.review_queue`). The page contract, which scripts and
tests rely on:

- each queued pair is an element with ``data-pair``, ``data-left`` and ``data-right``
  (the two posting ids; also ``data-stratum`` and ``data-weight``: how the queue sampled
  it) holding buttons with ``data-answer="same"`` and ``data-answer="different"``;
- answers are kept in the page and in ``localStorage``; the *Export labels.csv* button
  downloads ``left_id,right_id,same`` (1/0) and ``window.shopeeMatch.exportLabels()``
  returns the same CSV text; ``document.body`` gets ``data-ready="true"`` once usable.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .._persist import atomic_file
from ..data import Postings
from ._assets import CSS, JS
from .explain import PairScores, score_pairs
from .queue import review_queue

__all__ = ["review_page", "write_review"]

#: the page may load nothing but its own inline style and script and local images
_CSP = ("default-src 'none'; img-src file: data: 'self'; style-src 'unsafe-inline'; "
        "script-src 'unsafe-inline'")


def _thumbs(postings: Postings, out_dir: Path | None) -> list[str | None]:
    if not postings.has_images:
        return [None] * len(postings)
    base = out_dir.resolve() if out_dir is not None else None
    out: list[str | None] = []
    for p in postings.image_paths():
        if p is None:
            out.append(None)
        elif base is None:
            out.append(Path(p).resolve().as_uri())
        else:
            out.append(Path(os.path.relpath(Path(p).resolve(), base)).as_posix())
    return out


def _sets(scores: PairScores) -> list[dict[str, Any]]:
    """Match sets of 2+ postings with their kept pairs, biggest then least certain first."""
    group = scores.groups()
    left, right = scores.pairs(kept=True)
    prob = scores.probability(left, right) if scores.kind == "reranker" else None
    evidence = scores.evidence(left, right)
    by_group: dict[int, list[int]] = {}
    for k, g in enumerate(group[left].tolist()):
        by_group.setdefault(g, []).append(k)
    members = np.argsort(group, kind="stable")
    bounds = np.flatnonzero(np.diff(group[members])) + 1
    out = []
    for m in np.split(members, bounds):
        if len(m) < 2:
            continue
        ks = by_group.get(int(group[m[0]]), [])
        ps = [round(float(prob[k]), 3) if prob is not None else None for k in ks]
        weakest = min((p for p in ps if p is not None), default=None)
        out.append({"m": m.tolist(), "w": weakest,
                    "p": [[int(left[k]), int(right[k]), p, evidence[k]] for k, p in zip(ks, ps)]})
    out.sort(key=lambda s: (-len(s["m"]), s["w"] if s["w"] is not None else 1.0))
    return out


def review_page(scores: PairScores, queue: int = 200, random_state: int | None = 0,
                out_dir: str | Path | None = None, title: str = "shopee_match review") -> str:
    """The review page of scored pairs ``scores`` (:func:`~shopee_match.review.score_pairs`)
    as HTML text, with a queue of ``queue`` pairs; thumbnails are linked relative to
    ``out_dir`` (the folder the page will be saved in).

    >>> from shopee_match import Pipeline, make_catalog
    >>> from shopee_match.review import score_pairs
    >>> s = score_pairs(Pipeline.pretrained(), make_catalog(n_groups=30, images=False, seed=0))
    >>> page = review_page(s, queue=10)
    >>> page.count('data-answer="same"') >= 0 and "exportLabels" in page
    True
    """
    q = review_queue(scores, queue, random_state)
    ids = scores.postings.posting_id.astype(str).tolist()
    titles = scores.postings.titles if scores.postings.has_titles else [""] * len(ids)
    thumbs = _thumbs(scores.postings, Path(out_dir) if out_dir is not None else None)
    ev = scores.evidence(q["left"].to_numpy(), q["right"].to_numpy())
    sets = _sets(scores)
    data: dict[str, Any] = {
        "threshold": scores.threshold, "kind": scores.kind,
        "postings": [[i, t, th] for i, t, th in zip(ids, titles, thumbs)],
        "sets": sets,
        "queue": [[int(a), int(b), round(float(p), 4), e, s, round(float(w), 3)]
                  for a, b, p, e, s, w in zip(q["left"], q["right"], q["probability"], ev,
                                              q["stratum"], q["weight"])],
    }
    blob = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    data["page_id"] = hashlib.sha1(blob.encode("utf-8")).hexdigest()[:12]
    blob = json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")
    n_sets = len(sets)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title><style>{CSS}</style></head>
<body><header><h1>{html.escape(title)}</h1>
<span class="tabs"><button type="button" id="tab-queue">Label queue</button>
<button type="button" id="tab-sets">Match sets</button></span>
<span id="progress" class="muted"></span>
<button type="button" id="export">Export labels.csv</button>
<span class="muted">{len(ids)} postings, {n_sets} match sets, cut {scores.threshold:.2f}</span></header>
<main><section id="queue-view"><h2>Is each pair the same product?</h2>
<p class="muted">Answer as many as you can; answers stay in this browser. Then export labels.csv
and run <code>shopee-match calibrate --pairs labels.csv --catalogue CATALOGUE.csv -o model/</code>.</p>
<div id="queue"></div></section>
<section id="sets-view" style="display:none"><h2>Match sets</h2>
<input id="search" type="search" placeholder="search titles or ids"> <span id="found" class="muted"></span>
<div id="sets"></div><button type="button" id="more">Show more</button></section></main>
<script type="application/json" id="shopee-match-data">{blob}</script>
<script>{JS}</script></body></html>
"""


def write_review(pipe: Any, postings: Postings, path: str | Path, queue: int = 200,
                 random_state: int | None = 0) -> Path:
    """Score ``postings`` with fitted ``pipe`` and write the review page to ``path``
    (atomically). Returns the path.

    >>> import tempfile, os
    >>> from shopee_match import Pipeline, make_catalog
    >>> out = os.path.join(tempfile.mkdtemp(), "review.html")
    >>> cat = make_catalog(n_groups=30, images=False, seed=0)
    >>> write_review(Pipeline.pretrained(), cat, out, queue=10).name
    'review.html'
    """
    path = Path(path)
    scores = score_pairs(pipe, postings)
    page = review_page(scores, queue, random_state, out_dir=path.parent,
                       title=f"shopee_match review: {Path(postings.source).name}")
    with atomic_file(path, "w", encoding="utf-8") as fh:
        fh.write(page)
    return path
