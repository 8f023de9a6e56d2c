"""Features of candidate pairs for a second-stage pair classifier.

A candidate pair ``(i, j)`` comes from any modality's candidate graph (a KNN graph, or
phash pairs within a Hamming radius). Its features say how similar the two postings are
in each modality *and how that compares with their neighbourhoods* (rank of ``j`` among
``i``'s neighbours and back, the best and the k-th neighbour's similarity, the gap to the
best, mutual best match), plus title agreement that no cosine sees well: shared and
conflicting model codes, sizes and numbers, rarity-weighted word agreement
(:mod:`~shopee_match.rerank.title_features`).
Nothing here is learned, so the same function serves fitting and prediction.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp

from ..neighbors._numpy import effective_n_jobs
from .title_features import title_features

__all__ = ["candidate_pairs", "graph_features", "pair_features", "title_features"]

#: neighbours whose similarity describes a posting's neighbourhood density
DENSITY_RANKS = (2, 5, 10)


def candidate_pairs(cands: Mapping[str, sp.spmatrix]) -> tuple[np.ndarray, np.ndarray]:
    """Off-diagonal pairs stored in any candidate graph, in both directions, sorted.

    >>> g = sp.csr_matrix(np.array([[1, .9, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32))
    >>> [a.tolist() for a in candidate_pairs({"t": g})]
    [[0, 1], [1, 0]]
    """
    n = _shape(cands)
    keys = []
    for g in cands.values():
        coo = sp.coo_matrix(g)
        off = coo.row != coo.col
        r, c = coo.row[off].astype(np.int64), coo.col[off].astype(np.int64)
        keys.append(r * n + c)
        keys.append(c * n + r)
    if not keys:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    k = np.unique(np.concatenate(keys))
    return k // n, k % n


def _shape(cands: Mapping[str, sp.spmatrix]) -> int:
    if not cands:
        raise ValueError("`cands` is empty: pass at least one modality's candidate graph.")
    shapes = {name: g.shape for name, g in cands.items()}
    n = next(iter(shapes.values()))[0]
    for name, shape in shapes.items():
        if len(shape) != 2 or shape != (n, n):
            raise ValueError(
                f"candidate graph {name!r} has shape {shape}; every graph must be square and "
                f"the same size (n x n, n = number of postings), got {shapes}."
            )
    return int(n)


class _Stored:
    """Where pairs sit among a canonical CSR graph's stored entries, found once and
    read from any graph of the same sparsity (similarities, ranks)."""

    def __init__(self, g: sp.csr_matrix) -> None:
        self.n = g.shape[1]
        self.keys = np.repeat(np.arange(g.shape[0], dtype=np.int64) * self.n,
                              np.diff(g.indptr)) + g.indices

    def at(self, rows: np.ndarray, cols: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        """A reader of the pairs' values (float64, NaN where not stored)."""
        keys = self.keys
        q = np.asarray(rows).astype(np.int64) * self.n + cols
        pos = np.clip(np.searchsorted(keys, q), 0, max(len(keys) - 1, 0))
        hit = keys[pos] == q if len(keys) else np.zeros(len(q), dtype=bool)
        pos = pos[hit]

        def read(data: np.ndarray) -> np.ndarray:
            out = np.full(len(q), np.nan)
            out[hit] = data[pos]
            return out

        return read


def graph_features(
    g: sp.spmatrix, rows: np.ndarray, cols: np.ndarray, prefix: str = ""
) -> dict[str, np.ndarray]:
    """One modality's features of the pairs ``(rows[p], cols[p])``.

    ``sim`` is the pair's similarity (either direction; NaN where the modality did not
    propose the pair), ``rank_ij`` / ``rank_ji`` its 1-based rank among each side's other
    candidates, ``top1_*`` / ``s{k}_*`` each side's best and k-th similarity, ``gap_*`` the
    best minus ``sim``, ``deg_*`` the number of candidates.
    """
    g = sp.csr_matrix(g, dtype=np.float32)
    n = g.shape[0]
    coo = g.tocoo()
    off = coo.row != coo.col
    r, c, s = coo.row[off], coo.col[off], coo.data[off].astype(np.float64)
    order = np.lexsort((c, -s, r))
    r, c, s = r[order], c[order], s[order]
    deg = np.bincount(r, minlength=n)
    starts = np.concatenate([[0], np.cumsum(deg)[:-1]])
    rank = np.arange(len(r)) - starts[r] + 1
    rank_g = sp.csr_matrix((rank.astype(np.float32), (r, c)), shape=(n, n))
    off_g = sp.csr_matrix((s, (r, c)), shape=(n, n))
    rank_g.sum_duplicates()  # canonical (a no-op where construction made them so)
    off_g.sum_duplicates()

    def kth(k: int) -> np.ndarray:
        out = np.full(n, np.nan)
        has = deg >= k
        out[has] = s[starts[has] + k - 1]
        return out

    # both graphs are canonical with the same stored pairs: find the pairs once
    stored = _Stored(off_g)
    ij, ji = stored.at(rows, cols), stored.at(cols, rows)
    sim_ij, sim_ji = ij(off_g.data), ji(off_g.data)
    sim = np.where(np.isnan(sim_ij), sim_ji, sim_ij)
    f: dict[str, np.ndarray] = {
        "sim": sim,
        "rank_ij": ij(rank_g.data.astype(np.float64)),
        "rank_ji": ji(rank_g.data.astype(np.float64)),
    }
    top1 = kth(1)
    f["top1_i"], f["top1_j"] = top1[rows], top1[cols]
    f["gap_i"], f["gap_j"] = f["top1_i"] - sim, f["top1_j"] - sim
    for k in DENSITY_RANKS:
        sk = kth(k)
        f[f"s{k}_i"], f[f"s{k}_j"] = sk[rows], sk[cols]
    f["deg_i"], f["deg_j"] = deg[rows].astype(np.float64), deg[cols].astype(np.float64)
    f["shared"], f["sim2"] = _shared_neighbours(off_g, rows, cols)
    f.update(_relative(f))
    return {prefix + k: v for k, v in f.items()}


def _relative(f: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The pair against each side's neighbourhood, free of the modality's scale: mutual
    best match, share of the best similarity, and place between the 10th and the best."""
    sim = f["sim"]
    out = {"mutual_best": ((f["rank_ij"] == 1) & (f["rank_ji"] == 1)).astype(np.float64)}
    with np.errstate(invalid="ignore", divide="ignore"):
        for side in ("i", "j"):
            top, low = f[f"top1_{side}"], f[f"s{DENSITY_RANKS[-1]}_{side}"]
            out[f"ratio_{side}"] = sim / np.where(top > 0, top, np.nan)
            spread = top - low
            out[f"place_{side}"] = np.where(spread > 1e-6, (sim - low) / spread, np.nan)
    return out


def _shared_neighbours(
    g: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray, chunk: int = 65536
) -> tuple[np.ndarray, np.ndarray]:
    """Share of common candidates (of the smaller list) and the 2-hop similarity
    ``sum_k s_ik s_jk``, in pair chunks so memory stays O(chunk * k).

    One row gather and element-wise product per chunk gives both: the product's stored
    entries are the common candidates (when no similarity is exactly 0), and its row
    sums (NumPy's ``add.reduceat``, so the rounding never changes) the 2-hop similarity.
    """
    g = sp.csr_matrix(g)
    deg = np.diff(g.indptr).astype(np.float64)
    b = None
    if g.nnz and not np.all(np.abs(g.data) > 1e-150):  # a stored 0 (or a product
        # rounding to 0) would drop a common candidate from the product: count apart
        b = g.copy()
        b.data[:] = 1.0
    shared = np.empty(len(rows))
    sim2 = np.empty(len(rows))
    for s in range(0, len(rows), chunk):
        r, c = rows[s:s + chunk], cols[s:s + chunk]
        prod = sp.csr_matrix(g[r].multiply(g[c]))
        sim2[s:s + chunk] = np.asarray(prod.sum(axis=1)).ravel()
        if b is None:
            prod.sum_duplicates()
            shared[s:s + chunk] = np.diff(prod.indptr)
        else:
            shared[s:s + chunk] = np.asarray(b[r].multiply(b[c]).sum(axis=1)).ravel()
    with np.errstate(invalid="ignore", divide="ignore"):
        shared = shared / np.minimum(deg[rows], deg[cols])
    return shared, sim2


def pair_features(
    cands: Mapping[str, sp.spmatrix],
    rows: np.ndarray,
    cols: np.ndarray,
    titles: Sequence[str] | None = None,
    n_jobs: int | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Feature matrix (float64, NaN = missing) of the pairs, and the feature names.

    Modalities are taken in sorted name order so the columns never depend on dict order.
    Each modality's features and the title features are computed in their own thread
    (``n_jobs`` threads; ``None``: every core): the values do not depend on it.

    >>> g = sp.csr_matrix(np.array([[1, .9], [.9, 1]], dtype=np.float32))
    >>> r, c = candidate_pairs({"tfidf": g})
    >>> X, names = pair_features({"tfidf": g}, r, c, ["Mug 300ml", "mug 300 ml"])
    >>> X.shape[0], names[0]
    (2, 'tfidf__sim')
    """
    n = _shape(cands)
    if titles is not None and len(titles) != n:
        raise ValueError(
            f"`titles` has {len(titles)} entries but the candidate graphs have {n} rows; "
            "pass one title per posting, in the graphs' row order."
        )

    def modality(name: str) -> dict[str, np.ndarray]:
        f = graph_features(cands[name], rows, cols, prefix=f"{name}__")
        # whether the modality exists in this set at all (an empty graph: e.g. no images)
        coo = sp.coo_matrix(cands[name])
        f[f"{name}__present"] = np.full(len(rows), float(bool((coo.row != coo.col).any())))
        return f

    tasks: list[Callable[[], dict[str, np.ndarray]]] = [
        functools.partial(modality, name) for name in sorted(cands)]
    if titles is not None:
        tasks.append(functools.partial(title_features, titles, rows, cols))
    workers = min(len(tasks), effective_n_jobs(n_jobs))
    if workers > 1:  # NumPy and SciPy's sparse kernels release the GIL
        with ThreadPoolExecutor(workers) as pool:
            parts = list(pool.map(lambda task: task(), tasks))
    else:
        parts = [task() for task in tasks]
    feats: dict[str, np.ndarray] = {}
    for part in parts:
        feats.update(part)
    names = list(feats)
    return _columns([feats[k] for k in names], len(rows)), names


def _columns(cols: Sequence[np.ndarray], n: int, block: int = 16384) -> np.ndarray:
    """``np.column_stack(cols)`` as float64, written a block of rows at a time (the
    block's rows stay in cache while every column is written into them)."""
    x = np.empty((n, len(cols)), dtype=np.float64)
    for s in range(0, n, block):
        part = x[s:s + block]
        for j, c in enumerate(cols):
            part[:, j] = c[s:s + block]
    return x
