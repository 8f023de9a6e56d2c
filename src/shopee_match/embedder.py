"""The ``Embedder`` contract, and a base class that adds saving and parameter handling.

A user extends the library by writing any class with ``name``, ``fit`` and ``embed``;
:class:`BaseEmbedder` is optional and only adds scikit-learn parameter handling and the
hooks :meth:`Pipeline.save` uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp

from ._params import BaseEstimator

if TYPE_CHECKING:
    from .data import Postings

__all__ = ["BaseEmbedder", "Embedder"]


@runtime_checkable
class Embedder(Protocol):
    """What a pipeline step needs from an embedder.

    ``embed`` returns one L2-normalised row per posting: a dense float32 array or a
    SciPy CSR matrix.

    >>> import numpy as np
    >>> class Lengths:
    ...     name = "lengths"
    ...     def fit(self, postings):
    ...         return self
    ...     def embed(self, postings):
    ...         x = np.array([[len(t), 1.0] for t in postings.titles], dtype=np.float32)
    ...         return x / np.linalg.norm(x, axis=1, keepdims=True)
    >>> isinstance(Lengths(), Embedder)
    True
    """

    name: str

    def fit(self, postings: Postings) -> Any: ...

    def embed(self, postings: Postings) -> np.ndarray | sp.csr_matrix: ...


class BaseEmbedder(BaseEstimator):
    """Base class for the library's embedders (scikit-learn conventions).

    The constructor only stores its arguments; fitted state ends in ``_``. Subclasses with
    fitted state override :meth:`save_state` / :meth:`load_state` (no pickle).
    """

    name: str = "embedder"
    #: Whether :meth:`embed` returns a SciPy CSR matrix rather than a dense array.
    sparse_output: bool = False

    def fit(self, postings: Postings) -> BaseEmbedder:
        return self

    def embed(self, postings: Postings) -> np.ndarray | sp.csr_matrix:  # pragma: no cover
        raise NotImplementedError

    def fit_embed(self, postings: Postings) -> np.ndarray | sp.csr_matrix:
        """``fit`` then ``embed`` on the same postings."""
        return self.fit(postings).embed(postings)

    def save_state(self, path: Path) -> None:
        """Write fitted state into the directory ``path`` (created by the caller)."""

    def load_state(self, path: Path) -> None:
        """Restore fitted state written by :meth:`save_state`."""
