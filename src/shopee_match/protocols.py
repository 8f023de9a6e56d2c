"""The ``Matcher`` and ``Combiner`` contracts, and the registries runtimes look behaviour up in.

A pipeline step is ``(name, embedder, matcher)``; its steps' graphs are joined by a
combiner. Like :class:`~shopee_match.Embedder`, both are protocols: any class with these
members is one, nothing has to be inherited. Batch matching (``Pipeline.fit`` /
``predict`` / ``evaluate``) needs nothing more.

What a *runtime* does per matcher or combiner class (how ``MatchIndex`` indexes a step,
how Dask searches it, which thresholds tuning tries) is looked up by class in a
:class:`ClassRegistry` the runtime owns, never by switching on types. A class declared
``like`` a built-in one (:func:`register_matcher`, or ``@register(..., like=...)``) gets
that one's behaviour in every runtime: it promises the members those runtimes read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

import scipy.sparse as sp

__all__ = ["ClassRegistry", "Combiner", "Matcher", "like_of", "register_matcher"]

V = TypeVar("V")


@runtime_checkable
class Matcher(Protocol):
    """What a pipeline step needs from a matcher: candidate pairs from embeddings, and
    the pairs a similarity threshold keeps.

    - ``candidates(emb)``: a sparse ``(n, n)`` graph of candidate pairs valued by
      similarity (at the loosest setting tuning may pick);
    - ``select(cand, threshold=None)``: the pairs kept at ``threshold`` (default: the one
      in use), diagonal included;
    - ``match_graph(emb)``: ``select(candidates(emb))``, searched as cheaply as it likes;
    - ``similarity_threshold()``: the threshold in use (the tuned one once fitted);
    - ``fit_threshold(value)``: keep ``value`` as the fitted, tuned threshold
      (``threshold_``), leaving constructor parameters as given; ``None`` forgets it.

    Optional: ``keeps(sims, threshold)`` (which candidate similarities ``select`` keeps,
    ``None`` where that depends on the rest of the row) lets tuning score a whole grid at
    once.

    >>> import numpy as np, scipy.sparse as sp
    >>> from shopee_match.neighbors.graph import add_self
    >>> class DotMatcher:
    ...     def __init__(self, threshold=0.9):
    ...         self.threshold = threshold
    ...     def candidates(self, emb):
    ...         return sp.csr_matrix(np.asarray(emb @ emb.T, dtype=np.float32))
    ...     def similarity_threshold(self):
    ...         return getattr(self, "threshold_", self.threshold)
    ...     def fit_threshold(self, value):
    ...         self.__dict__.pop("threshold_", None) if value is None else setattr(
    ...             self, "threshold_", float(value))
    ...         return self
    ...     def select(self, cand, threshold=None):
    ...         t = self.similarity_threshold() if threshold is None else threshold
    ...         g = sp.csr_matrix(cand.multiply(cand >= t))
    ...         return add_self(g)
    ...     def match_graph(self, emb):
    ...         return self.select(self.candidates(emb))
    >>> isinstance(DotMatcher(), Matcher)
    True
    >>> DotMatcher().match_graph(np.eye(2, dtype=np.float32)).nnz
    2
    """

    def candidates(self, emb: Any) -> sp.csr_matrix: ...

    def select(self, cand: sp.csr_matrix, threshold: float | None = None) -> sp.csr_matrix: ...

    def match_graph(self, emb: Any) -> sp.csr_matrix: ...

    def similarity_threshold(self) -> float: ...

    def fit_threshold(self, value: float | None) -> Any: ...


@runtime_checkable
class Combiner(Protocol):
    """What joins the steps' graphs into the final match graph.

    - ``uses_candidates``: ``False``: ``combine`` gets each step's thresholded match
      graph (``Ensemble``, the union); ``True``: each step's candidate graph, and
      ``combine(graphs, titles=...)`` decides (``PairReranker``). Such a combiner learns:
      ``fit_folds(folds)`` gets the tuning folds (:class:`~shopee_match.tuning.Fold`:
      candidates, groups, titles) and ``is_fitted_`` says whether it could learn;
    - ``combine(graphs)``: one ``(n, n)`` match graph, diagonal included, from a mapping
      of step name to graph.

    >>> import numpy as np, scipy.sparse as sp
    >>> class Intersection:
    ...     uses_candidates = False
    ...     def combine(self, graphs):
    ...         out = None
    ...         for g in graphs.values():
    ...             b = sp.csr_matrix(g, dtype=bool)
    ...             out = b if out is None else out.multiply(b)
    ...         return sp.csr_matrix(out + sp.identity(out.shape[0], format="csr"),
    ...                              dtype=np.float32)
    >>> isinstance(Intersection(), Combiner)
    True
    """

    uses_candidates: bool

    def combine(self, graphs: Mapping[str, sp.csr_matrix], *args: Any,
                **kwargs: Any) -> sp.csr_matrix: ...


#: user class -> the built-in class it behaves like in every runtime
_LIKE: dict[type, type] = {}


def register_matcher(cls: type, like: type) -> type:
    """Declare that ``cls`` behaves like the library's ``like`` class in every runtime
    (``MatchIndex``, Dask, tuning): it has the members they read of ``like`` (e.g. a
    :class:`~shopee_match.NeighborMatcher`'s ``k``, ``backend``, ``search``,
    ``search_floor``) with the same meaning. Returns ``cls``. ``@register(package=...,
    like=...)`` does the same and makes the class loadable.

    Runtimes look behaviour up by exact class, so a subclass is refused until it is
    declared: a subclass may search or select differently from its parent.

    >>> from shopee_match import NeighborMatcher
    >>> class MyMatcher(NeighborMatcher):
    ...     pass
    >>> register_matcher(MyMatcher, like=NeighborMatcher) is MyMatcher
    True
    >>> like_of(MyMatcher) is NeighborMatcher
    True
    """
    if not isinstance(cls, type) or not isinstance(like, type):
        raise TypeError(f"register_matcher takes two classes, got {cls!r} and {like!r}.")
    if cls is like:
        raise ValueError(f"{cls.__name__} cannot be declared like itself.")
    seen = {cls}
    step: type | None = like
    while step is not None:  # no cycle of declarations
        if step in seen:
            raise ValueError(f"{cls.__name__} like {like.__name__} would make a cycle.")
        seen.add(step)
        step = _LIKE.get(step)
    _LIKE[cls] = like
    return cls


def like_of(cls: type) -> type | None:
    """The class ``cls`` was declared to behave like (``None`` if none)."""
    return _LIKE.get(cls)


class ClassRegistry(Generic[V]):
    """One runtime's behaviour per matcher or combiner class, extendable by users.

    :meth:`lookup` finds an object's exact class, else the class it was declared like
    (:func:`register_matcher`), and so on; ``None`` where nothing is registered. With
    ``inherit=True`` a subclass also gets its nearest registered base class's entry
    (for behaviour a subclass cannot change, e.g. the scale of its similarities).

    >>> from shopee_match import HashMatcher, NeighborMatcher
    >>> grids = ClassRegistry("grid")
    >>> _ = grids.register(HashMatcher, "radii")
    >>> grids.lookup(HashMatcher()), grids.lookup(NeighborMatcher())
    ('radii', None)
    """

    def __init__(self, what: str, inherit: bool = False) -> None:
        self.what = what
        self.inherit = inherit
        self._by_class: dict[type, V] = {}

    def register(self, cls: type, value: V) -> V:
        """Register ``value`` for ``cls``; returns ``value`` (usable as a decorator's body)."""
        if not isinstance(cls, type):
            raise TypeError(f"{self.what}: register takes a class, got {cls!r}.")
        self._by_class[cls] = value
        return value

    def setdefault(self, cls: type, value: V) -> V:
        """Register ``value`` for ``cls`` unless something is registered for it already."""
        if cls not in self._by_class:
            self.register(cls, value)
        return self._by_class[cls]

    def registered(self, cls: type) -> Callable[[V], V]:
        """Decorator form of :meth:`register`."""

        def deco(value: V) -> V:
            return self.register(cls, value)

        return deco

    def lookup(self, obj: Any) -> V | None:
        """The entry for ``obj``'s class (or a class: see above), or ``None``."""
        first: type = obj if isinstance(obj, type) else type(obj)
        cls: type | None = first
        while cls is not None:
            if cls in self._by_class:
                return self._by_class[cls]
            cls = _LIKE.get(cls)
        if self.inherit:
            for base in first.__mro__[1:]:
                if base in self._by_class:
                    return self._by_class[base]
        return None

    def known(self, where: Callable[[V], bool] | None = None) -> list[str]:
        """Names of the classes registered (whose entry passes ``where``), for messages."""
        return sorted(c.__name__ for c, v in self._by_class.items() if where is None or where(v))

