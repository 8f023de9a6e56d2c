"""What ``Pipeline.default()`` and ``Pipeline.pretrained()`` are made of, and the
nested ``step__role__param`` parameters of a pipeline of steps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._params import BaseEstimator
from .ensemble import Ensemble

__all__ = ["StepParams", "default_parts", "pretrained_path"]

Step = tuple[str, Any, Any]


def default_parts(*, images: bool, text: bool, phash: bool, rerank: bool,
                  image_weights: str | None, image_epochs: int, verbose: bool
                  ) -> tuple[list[Step], Any]:
    """The default recipe's steps and ensemble (see :meth:`Pipeline.default`)."""
    from .image.phash import PhashEmbedder
    from .neighbors.blend import BlendMatcher
    from .neighbors.hamming import HashMatcher
    from .neighbors.matcher import NeighborMatcher
    from .text.tfidf import TfidfEmbedder

    if not (text or phash or images):
        raise ValueError("Pipeline.default needs at least one of text, phash or images.")
    k = 30 if rerank else 50
    steps: list[Step] = []
    if text:
        tfidf = TfidfEmbedder(fit_on="predict")
        steps.append(("tfidf", tfidf, NeighborMatcher(threshold=0.5, k=k)))
        if rerank:
            steps.append(("tfidf_qe", tfidf, BlendMatcher(threshold=0.6, k=k, n_blend=5)))
    if phash:
        steps.append(("phash", PhashEmbedder(), HashMatcher(max_distance=0)))
    if images:
        from .image.efficientnet import ImageEmbedder, default_image_backbone

        backbone, weights = default_image_backbone(image_weights)
        image = ImageEmbedder(backbone, image_size=224, weights=weights,
                              epochs=image_epochs, verbose=verbose)
        steps.append(("image", image, NeighborMatcher(threshold=0.8, k=50)))
    if rerank:
        from .rerank import PairReranker

        # every core: a stage's tree models train side by side, one thread each (the
        # same trees as one after the other); prediction uses LightGBM's threads. No
        # prefilter by default: with the general catalogues (``general=True``) it undid
        # their gain on an unlike shop (tests/test_general.py); opt in for speed with
        # ``pipe.ensemble.set_params(prefilter_recall=0.995)``
        ensemble: Any = PairReranker(n_jobs=None)
    else:
        ensemble = Ensemble(how="union")
    return steps, ensemble


def pretrained_path(name: str) -> Path:
    """The folder of the pretrained model ``name`` shipped inside the package."""
    from importlib.resources import files

    root = Path(str(files("shopee_match"))) / "pretrained"
    path = root / name
    if not (path / "config.json").is_file():
        have = sorted(p.name for p in root.glob("*") if (p / "config.json").is_file())
        raise ValueError(f"No pretrained model {name!r} in this installation; available: "
                         f"{have or 'none'}.")
    return path


class StepParams(BaseEstimator):
    """``get_params`` / ``set_params`` reaching into ``steps`` and ``ensemble``, as
    scikit-learn's Pipeline does (``tfidf__matcher__threshold``)."""

    steps: list[Step]

    def _ensemble(self) -> Any:
        raise NotImplementedError

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        params = super().get_params(deep=False)
        if not deep:
            return params
        for name, emb, matcher in self.steps:
            for role, est in (("embedder", emb), ("matcher", matcher)):
                params[f"{name}__{role}"] = est
                if hasattr(est, "get_params"):
                    for k, v in est.get_params(deep=True).items():
                        params[f"{name}__{role}__{k}"] = v
        ens = self._ensemble()
        if hasattr(ens, "get_params"):
            for k, v in ens.get_params(deep=True).items():
                params[f"ensemble__{k}"] = v
        return params

    def set_params(self, **params: Any) -> Any:
        """Set parameters, including nested ones such as ``tfidf__matcher__threshold``."""
        own = {k: v for k, v in params.items() if "__" not in k}
        if own:
            super().set_params(**own)
        by_name = {name: [name, emb, m] for name, emb, m in self.steps}
        for key, value in params.items():
            if "__" not in key:
                continue
            head, rest = key.split("__", 1)
            if head == "ensemble":
                self._ensemble().set_params(**{rest: value})
                continue
            role, _, sub = rest.partition("__")
            if head not in by_name or role not in ("embedder", "matcher"):
                raise ValueError(
                    f"Invalid parameter {key!r} for Pipeline. Check the list of available "
                    "parameters with `pipeline.get_params().keys()`."
                )
            slot = 1 if role == "embedder" else 2
            if sub:
                by_name[head][slot].set_params(**{sub: value})
            else:
                by_name[head][slot] = value
        self.steps = [tuple(v) for v in by_name.values()]
        return self
