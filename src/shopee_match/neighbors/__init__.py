"""Neighbour search: a tiny backend interface and the matchers built on it."""

from ._base import Backend, available_backends, get_backend, register_backend
from ._numpy import effective_n_jobs
from .blend import BlendMatcher, blend
from .graph import graph_from_knn, graph_to_sets, select
from .hamming import HashMatcher
from .matcher import NeighborMatcher

__all__ = [
    "Backend",
    "BlendMatcher",
    "HashMatcher",
    "NeighborMatcher",
    "available_backends",
    "blend",
    "effective_n_jobs",
    "get_backend",
    "graph_from_knn",
    "graph_to_sets",
    "register_backend",
    "select",
]
