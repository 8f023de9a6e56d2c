"""``BlendMatcher``: neighbourhood blending (query expansion), then a second search.

Each row is replaced by the similarity-weighted sum of its ``n_blend`` nearest rows
(itself included), re-normalised, and the k-NN search runs again on the blended rows.
Postings whose neighbourhoods agree move closer; a lone near-miss moves away. The top
Shopee teams used it on every modality.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from .._registry import register
from .._validation import check_embeddings, check_scalar, l2_normalize
from .graph import graph_from_knn
from .matcher import NeighborMatcher

__all__ = ["BlendMatcher", "blend"]


def blend(emb: Any, cand: sp.csr_matrix, n_blend: int = 5) -> Any:
    """Each row -> the similarity-weighted sum of its ``n_blend`` best candidates, normalised.

    >>> import numpy as np, scipy.sparse as sp
    >>> emb = np.eye(2, dtype=np.float32)
    >>> cand = sp.csr_matrix(np.array([[1.0, 0.5], [0.5, 1.0]], dtype=np.float32))
    >>> blend(emb, cand, 2).astype(float).round(3).tolist()
    [[0.894, 0.447], [0.447, 0.894]]
    """
    coo = cand.tocoo()
    n = cand.shape[0]
    order = np.lexsort((-coo.data, coo.row))
    r, c, s = coo.row[order], coo.col[order], coo.data[order]
    rank = np.arange(len(r)) - np.searchsorted(r, r)
    keep = rank < n_blend
    w = sp.csr_matrix((np.maximum(s[keep], 0).astype(np.float32), (r[keep], c[keep])), shape=(n, n))
    out = w @ emb
    if sp.issparse(out):  # our own product: normalised in place (a blended matrix holds
        # about n_blend rows' nonzeros each: a second copy was a million titles' peak)
        from sklearn.preprocessing import normalize

        return sp.csr_matrix(normalize(sp.csr_matrix(out, dtype=np.float32), norm="l2",
                                       copy=False), dtype=np.float32)
    return l2_normalize(out)


@register()
class BlendMatcher(NeighborMatcher):
    """A :class:`NeighborMatcher` searching neighbourhood-blended rows.

    Parameters are those of :class:`NeighborMatcher`, plus ``n_blend``: how many of each
    row's nearest rows (itself included) are averaged, weighted by similarity.

    >>> import numpy as np
    >>> emb = np.array([[1, 0], [0.9, 0.44], [0, 1]], dtype=np.float32)
    >>> emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    >>> [m.tolist() for m in BlendMatcher(threshold=0.9, k=3, n_blend=2).match(emb)]
    [[0, 1], [0, 1], [2]]
    """

    def __init__(
        self,
        threshold: float = 0.5,
        k: int = 50,
        n_blend: int = 5,
        min_matches: int = 1,
        min_threshold: float | None = None,
        backend: str = "auto",
        working_memory: float | None = None,
        backend_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(threshold=threshold, k=k, min_matches=min_matches,
                         min_threshold=min_threshold, backend=backend,
                         working_memory=working_memory, backend_kwargs=backend_kwargs)
        self.n_blend = n_blend

    def validate(self) -> BlendMatcher:
        """Check the parameters (a ValueError names a bad one); returns ``self``."""
        super().validate()
        check_scalar(self.n_blend, "n_blend", (int, np.integer), min_val=1)
        return self

    def blended(self, emb: Any) -> Any:
        """The blended rows (same kind and shape as ``emb``)."""
        self.validate()
        rows = check_embeddings(emb)
        if rows.shape[0] == 0:
            return rows
        # the plain search (shared with a NeighborMatcher step inside shared_searches())
        idx, sims = NeighborMatcher.neighbors(self, emb)
        return blend(rows, graph_from_knn(sims, idx, n=rows.shape[0]), int(self.n_blend))

    def neighbors(self, emb: Any) -> tuple[np.ndarray, np.ndarray]:
        """Nearest neighbours of the blended rows among the blended rows."""
        return super().neighbors(self.blended(emb))

    def match_graph(self, emb: Any) -> sp.csr_matrix:
        return super().match_graph(self.blended(emb))
