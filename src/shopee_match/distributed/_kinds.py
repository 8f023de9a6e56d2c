"""What a Dask run does per matcher and combiner class: registries, extendable by users.

- :data:`DASK_STEPS`: matcher class -> how its step is searched on Dask: ``"knn"`` (a
  :class:`~shopee_match.NeighborMatcher`: exact block pairs, IVF cells or cuML),
  ``"hash"`` (a :class:`~shopee_match.HashMatcher`: a shuffle on hash chunks) or
  ``"blend"`` (a :class:`~shopee_match.BlendMatcher`: rows fetched from their owners,
  blended, searched again; a reranked pipeline's candidates only).
- :data:`DASK_COMBINERS`: combiner class -> ``check(combiner, method)``: ``True`` for a
  reranked run (candidate graphs, then the pair reranker), ``False`` for the union;
  raises ``NotImplementedError`` saying what cannot run.

Lookups are by exact class (a subclass may search differently), or by the class one
was declared like (``shopee_match.protocols.register_matcher(cls, like=...)``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..neighbors.blend import BlendMatcher
from ..neighbors.hamming import HashMatcher
from ..neighbors.matcher import NeighborMatcher
from ..protocols import ClassRegistry

__all__ = ["DASK_COMBINERS", "DASK_STEPS", "combiner_check", "step_kind"]

KINDS = ("knn", "hash", "blend")

DASK_STEPS: ClassRegistry[str] = ClassRegistry("Dask search")
DASK_STEPS.register(NeighborMatcher, "knn")
DASK_STEPS.register(HashMatcher, "hash")
DASK_STEPS.register(BlendMatcher, "blend")

DASK_COMBINERS: ClassRegistry[Callable[[Any, str], bool]] = ClassRegistry("Dask combine")


def _union(ens: Any, method: str) -> bool:
    if ens.how != "union" or ens.symmetric:
        raise NotImplementedError(
            f"Distributed matching combines steps by union (Ensemble(how='union')) or a "
            f"PairReranker; this pipeline's ensemble is {ens!r}. Use pipeline.predict on "
            "Postings, or set pipeline.ensemble = Ensemble(how='union')."
        )
    return False


def _reranker(ens: Any, method: str) -> bool:
    if not ens.is_fitted_:
        raise NotImplementedError(
            f"Distributed matching reranks with a fitted PairReranker only; this "
            f"pipeline's ensemble is {ens!r}. Use pipeline.predict on Postings.")
    if method == "cuml":
        raise NotImplementedError(
            "method='cuml': a reranked pipeline's candidates are searched with "
            "method='exact' or 'ivf' (approximate) on Dask.")
    return True


def _builtin_combiners() -> None:
    """The library's combiners, registered on first use (the reranker module imports
    scikit-learn: ``import shopee_match.distributed`` stays light). A class the user
    registered first keeps the user's entry."""
    if getattr(_builtin_combiners, "done", False):
        return
    from ..ensemble import Ensemble
    from ..rerank import PairReranker

    DASK_COMBINERS.setdefault(Ensemble, _union)
    DASK_COMBINERS.setdefault(PairReranker, _reranker)
    _builtin_combiners.done = True  # type: ignore[attr-defined]


def combiner_check(ens: Any, method: str) -> bool:
    """Whether a run of this combiner is reranked, or a clear error."""
    _builtin_combiners()
    check = DASK_COMBINERS.lookup(ens)
    if check is None:
        raise NotImplementedError(
            f"Distributed matching has no form for the combiner {ens!r} (it knows "
            f"{', '.join(DASK_COMBINERS.known())}); use pipeline.predict on Postings, or "
            "register one in shopee_match.distributed.DASK_COMBINERS."
        )
    return check(ens, method)


def step_kind(name: str, matcher: Any, reranked: bool) -> str:
    """``"knn"``, ``"hash"`` or ``"blend"`` for a step's matcher, or a clear error."""
    kind = DASK_STEPS.lookup(matcher)
    allowed = KINDS if reranked else KINDS[:2]
    if kind is None or kind not in allowed:
        known = DASK_STEPS.known(lambda k: k in allowed)
        raise NotImplementedError(
            f"Step {name!r}: {type(matcher).__name__} has no distributed search"
            f"{' in a union' if kind == 'blend' else ''}; use {', '.join(known)}, or "
            "declare a class that behaves like one of them with "
            "shopee_match.protocols.register_matcher(cls, like=...)."
        )
    return kind
