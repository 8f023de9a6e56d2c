"""Self-training on the catalogue matched: its own code agreements teach it a cut.

A zero-label model carries its training shops' sense of how alike two titles must be
to name one product. Shops differ: where near-identical titles usually name different
products (editions, capacities, SKUs of one series) the model must be strict; where one
product's offers are worded freely (marketplace sellers) it drops true pairs. The
catalogue says which kind it is, without labels, through its pairs whose titles both
carry model codes or sizes: those that agree are (mostly) one product, those that
conflict are not. How the share of agreement grows with the similarity of the *rest* of
the titles (codes, sizes and numbers taken out) is this catalogue's own estimate of how
often a pair that alike is one product. Candidate pairs the model dropped, with nothing
conflicting, whose similarity reaches the point where agreement outweighs conflict are
added back.

The curve is an isotonic regression over the evidence pairs (increasing in similarity);
the point is where it reaches one half (more likely one product than not), never below
:data:`FLOOR`, and only when at least :data:`MIN_SUPPORT` evidence pairs lie above it.
Nothing here is tied to a word list, a language or a group size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..neighbors.graph import row_blocks
from .title_features import _PREP, _by_token, _facts, _incidence, _kinds

__all__ = ["PairScan", "SelfTraining", "either_way", "evidence_point", "scan_pairs",
           "self_train"]

#: similarity (cosine of idf-weighted words, codes and sizes out) below which no pair is
#: added whatever the curve says: more than half the rest of the titles must agree
#: (the seed recipe's own TF-IDF cut); a safeguard set in advance, not tuned
FLOOR = 0.5
#: evidence pairs the curve needs at or above its point before anything is added
MIN_SUPPORT = 100
#: candidate pairs read at a time (a block of rows)
CHUNK = 1 << 20

_NONE, _AGREE, _CONFLICT = 0, 1, 2


class _Titles:
    """Each title's words (codes, sizes, numbers out) as unit idf-weighted rows, and its
    codes, sizes, numbers and units as incidence matrices. ``catalogue_df``: ``(titles
    containing each token, number of titles)`` of the whole catalogue when ``titles`` are
    part of it (a Dask partition's, from the counting pass; a token it lacks is in one
    title): the idf is then the catalogue's. Words are columns in token order, so a row's
    similarity sums run in one order however many titles are read (the same bits on
    one machine and on a partition)."""

    def __init__(self, titles: Sequence[str],
                 catalogue_df: tuple[Mapping[str, int], int] | None = None) -> None:
        n = len(titles)
        tok, doc = _PREP.token_table(titles)
        plain = _by_token(tok, lambda t: _facts(t)[0]) == ""
        term, vocab = pd.factorize(tok[plain], sort=True)
        words = _incidence(doc[plain], term, n, len(vocab))
        df = np.asarray(words.sum(axis=0)).ravel()  # float32, as are the counts given
        n_cat = n
        if catalogue_df is not None:
            counts, n_cat = catalogue_df[0], int(catalogue_df[1])
            df = np.zeros_like(df)
            df[:len(vocab)] = [counts.get(t, 1) for t in vocab]
        idf = (np.log((n_cat + 1) / (df + 1)) + 1).astype(np.float32)
        words = sp.csr_matrix(words @ sp.diags(idf))
        norm = np.sqrt(np.asarray(words.multiply(words).sum(axis=1)).ravel())
        norm[norm == 0] = 1.0
        self.words = sp.csr_matrix(sp.diags((1 / norm).astype(np.float32)) @ words)
        self.kinds = _kinds(tok, doc, n)
        self.sizes = {k: np.diff(m.indptr) for k, m in self.kinds.items()}

    def _shared(self, kind: str, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        m = self.kinds[kind]
        return np.asarray(m[rows].multiply(m[cols]).sum(axis=1)).ravel()

    def pairs(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Similarity of the rest of the titles, and each pair's evidence (none, agree,
        conflict)."""
        sim = np.asarray(self.words[rows].multiply(self.words[cols]).sum(axis=1)).ravel()
        conflict = np.zeros(len(rows), dtype=bool)
        shared = {}
        for kind in ("code", "qty", "num", "unit"):
            shared[kind] = self._shared(kind, rows, cols)
            if kind != "unit":
                both = (self.sizes[kind][rows] > 0) & (self.sizes[kind][cols] > 0)
                conflict |= both & (shared[kind] == 0)
        conflict |= shared["unit"] > shared["qty"]  # 64gb against 128gb
        code_i, code_j = self.sizes["code"][rows] > 0, self.sizes["code"][cols] > 0
        agree = ((shared["code"] > 0) | (shared["qty"] > 0)) & ~conflict & (code_i == code_j)
        state = np.where(conflict, _CONFLICT, np.where(agree, _AGREE, _NONE)).astype(np.uint8)
        return sim.astype(np.float32), state


@dataclass
class SelfTraining:
    """What the catalogue taught: the similarity at which its code agreements outweigh
    its conflicts (``None`` when it shows too little evidence), the evidence pairs read,
    and the pairs added (a symmetric boolean graph)."""

    point: float | None
    evidence: int
    added: sp.csr_matrix


def evidence_point(counts: np.ndarray, hits: np.ndarray) -> float | None:
    """Lowest similarity bin where the isotonic share of agreement (``hits / counts``
    per bin of 1/1000) reaches one half, with :data:`MIN_SUPPORT` evidence pairs at or
    above it and at least :data:`FLOOR`; ``None`` if there is none. Counts of disjoint
    sets of pairs (a Dask partition's each) are summed first.

    >>> counts, hits = np.zeros(1001), np.zeros(1001)
    >>> counts[[300, 800]] = 150
    >>> hits[800] = 150  # pairs this alike agree, those at 0.3 conflict
    >>> evidence_point(counts, hits)
    0.8
    """
    from sklearn.isotonic import IsotonicRegression

    if counts.sum() < MIN_SUPPORT:
        return None
    filled = counts > 0
    x = np.flatnonzero(filled) / 1000.0
    curve = IsotonicRegression(increasing=True, y_min=0.0, y_max=1.0).fit(
        x, hits[filled] / counts[filled], sample_weight=counts[filled]).predict(x)
    above = np.cumsum(counts[filled][::-1])[::-1]  # evidence at or above each bin
    ok = (curve >= 0.5) & (above >= MIN_SUPPORT) & (x >= FLOOR)
    return float(x[np.argmax(ok)]) if ok.any() else None


def _evidence(counts: np.ndarray, hits: np.ndarray, sim: np.ndarray, agree: np.ndarray,
              ) -> None:
    """Add pairs' similarities (as bins of 1/1000) and agreement to the running counts."""
    b = np.clip((sim * 1000).astype(np.int64), 0, 1000)
    counts += np.bincount(b, minlength=1001)
    hits += np.bincount(b, weights=agree.astype(np.float64), minlength=1001)


@dataclass
class PairScan:
    """What one pass over candidate pairs keeps: the evidence counts (pairs and agreeing
    pairs per similarity bin of 1/1000, 1,001 bins) and the pairs that could be added
    (nothing in conflict, kept neither way, similarity >= :data:`FLOOR`), in the
    titles' index space. Counts of disjoint sets of pairs add up.

    >>> found = PairScan(np.zeros(1001), np.zeros(1001), np.array([0, 1]), np.array([2, 3]),
    ...                  np.array([0.6, 0.9]))
    >>> [a.tolist() for a in found.added(0.8)]
    [[1], [3]]
    """

    counts: np.ndarray
    hits: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    sim: np.ndarray

    def added(self, point: float) -> tuple[np.ndarray, np.ndarray]:
        """The pairs ``(rows, cols)`` to add at ``point`` (one direction each)."""
        on = self.sim >= point
        return self.rows[on], self.cols[on]


def _scan(ctx: _Titles, up: sp.csr_matrix, either: sp.csr_matrix) -> PairScan:
    """Read the candidate pairs of ``up`` (each pair once, stored entries, square in the
    index space of ``ctx``'s titles) a block of rows at a time (:data:`CHUNK` pairs):
    their evidence, and those that could be added. ``either``: the kept pairs, stored
    where a pair is kept one way round or the other (a min-matches partner is kept one
    way)."""
    counts, hits = np.zeros(1001), np.zeros(1001)
    maybe: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for lo, hi in row_blocks(up.indptr, max_pairs=CHUNK):
        rows = np.repeat(np.arange(lo, hi, dtype=np.int64), np.diff(up.indptr[lo:hi + 1]))
        cols = up.indices[up.indptr[lo]:up.indptr[hi]].astype(np.int64)
        sim, state = ctx.pairs(rows, cols)
        evident = state != _NONE
        _evidence(counts, hits, sim[evident], state[evident] == _AGREE)
        add = (sim >= FLOOR) & (state != _CONFLICT)
        if add.any():  # (SciPy answers an empty gather with a sparse matrix)
            add[add] = np.asarray(either[rows[add], cols[add]]).ravel() == 0
        maybe.append((rows[add], cols[add], sim[add]))
    if not maybe:
        maybe.append((np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)))
    return PairScan(counts, hits, *(np.concatenate([m[k] for m in maybe]) for k in range(3)))


def scan_pairs(titles: Sequence[str], up: sp.csr_matrix, either: sp.csr_matrix,
               catalogue_df: tuple[Mapping[str, int], int] | None = None) -> PairScan:
    """The evidence counts of the candidate pairs stored in ``up`` (square over
    ``titles``, each pair once) and those of its pairs that could be added (``either``:
    see :func:`either_way`); ``catalogue_df`` when ``titles`` are part of a catalogue
    (its idf is then the catalogue's). A block of rows at a time.

    >>> titles = ["blue shirt xq1", "shirt blue xq1", "red mug"]
    >>> up = sp.csr_matrix(([1], ([0], [1])), shape=(3, 3))
    >>> found = scan_pairs(titles, up, sp.csr_matrix((3, 3)))
    >>> int(found.counts.sum()), int(found.hits.sum()), found.rows.tolist()
    (1, 1, [0])
    """
    return _scan(_Titles(titles, catalogue_df), up, either)


def either_way(kept: sp.spmatrix) -> sp.csr_matrix:
    """A boolean graph of the pairs ``kept`` holds one way round or the other.

    >>> either_way(sp.csr_matrix(([1.0], ([0], [1])), shape=(2, 2))).toarray().tolist()
    [[False, True], [True, False]]
    """
    k = sp.csr_matrix(kept) != 0
    return sp.csr_matrix(k + k.T)


def self_train(titles: Sequence[str], proba: sp.spmatrix, kept: sp.spmatrix) -> SelfTraining:
    """Pairs of ``proba``'s candidates (symmetric, n x n) not in ``kept`` that the
    catalogue's own code agreements vouch for (see the module's docstring). Read a block
    of rows at a time: what stays between blocks is the evidence counts (1,001 bins) and
    the pairs that could be added (nothing in conflict, similarity >= :data:`FLOOR`).
    The same three parts (:func:`scan_pairs` of each part's pairs, :func:`evidence_point`
    of the summed counts, :meth:`PairScan.added`) run per partition on Dask.

    >>> import numpy as np, scipy.sparse as sp
    >>> titles = ["blue cotton shirt slim fit", "slim fit cotton shirt blue", "red mug"]
    >>> pair = sp.csr_matrix(([0.3, 0.3], ([0, 1], [1, 0])), shape=(3, 3))
    >>> self_train(titles, pair, sp.eye(3, format="csr")).point is None  # no evidence
    True
    """
    n = proba.shape[0]
    up = sp.triu(sp.csr_matrix(proba), 1).tocsr()
    up.eliminate_zeros()
    found = _scan(_Titles(titles), up, either_way(kept))
    point = evidence_point(found.counts, found.hits)
    evidence = int(found.counts.sum())
    if point is None:
        return SelfTraining(None, evidence, sp.csr_matrix((n, n), dtype=bool))
    r, c = found.added(point)
    added = sp.csr_matrix((np.ones(2 * len(r), dtype=bool), (np.r_[r, c], np.r_[c, r])),
                          shape=(n, n))
    return SelfTraining(point, evidence, added)
