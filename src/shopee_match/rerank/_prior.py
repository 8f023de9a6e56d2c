"""A catalogue's own share of true pairs, estimated without labels.

A pair classifier learns P(match | features) under its training catalogues' share of
true pairs among the candidates (the prior). A catalogue with mostly one-offer products
has far fewer true pairs among the same number of candidates, so the same features mean
a lower probability there. Saerens, Latinne and Decaestecker (2002) re-estimate the
prior on unlabelled data by EM and correct each probability accordingly, as splink
estimates its match weights' prior (lambda) by EM on unlabelled records.
"""

from __future__ import annotations

import numpy as np

__all__ = ["adapt_to_prior"]


def adapt_to_prior(p: np.ndarray, train_prior: float, max_iter: int = 200,
                   tol: float = 1e-7) -> tuple[np.ndarray, float]:
    """Probabilities ``p`` (learnt under ``train_prior``) corrected to the prior that EM
    finds in them; returns ``(corrected, prior)``.

    >>> p = np.array([0.9, 0.8, 0.1, 0.1, 0.1, 0.1])
    >>> q, prior = adapt_to_prior(p, train_prior=0.5)
    >>> bool(prior < 0.5) and bool((q <= p).all())
    True
    """
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-9, 1 - 1e-9)
    if len(p) == 0 or not 0.0 < train_prior < 1.0:
        return p, float(train_prior)
    prior = float(train_prior)
    q = p
    for _ in range(max_iter):
        w1, w0 = prior / train_prior, (1.0 - prior) / (1.0 - train_prior)
        q = w1 * p / (w1 * p + w0 * (1.0 - p))
        new = float(q.mean())
        if abs(new - prior) < tol:
            prior = new
            break
        prior = min(max(new, 1e-6), 1 - 1e-6)
    return q, prior
