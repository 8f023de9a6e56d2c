"""Name -> class registry for everything a saved pipeline may rebuild.

Loading a pipeline only instantiates classes found here, so a tampered
``config.json`` cannot make the loader import or run arbitrary code.
"""

from __future__ import annotations

import contextlib
from typing import Any, TypeVar

__all__ = ["get_registered", "register", "registered_name"]

_REGISTRY: dict[str, type] = {}
T = TypeVar("T", bound=type)


def register(package: str = "shopee_match", name: str | None = None,
             like: type | None = None) -> Any:
    """Class decorator: make an estimator loadable by :meth:`Pipeline.load`.

    Register your own embedder the same way to save pipelines that use it. ``like``: a
    matcher class of the library that yours behaves like in every runtime
    (:func:`~shopee_match.protocols.register_matcher`).

    >>> from shopee_match import register
    >>> @register(package="my_company")
    ... class MyEmbedder:
    ...     pass
    >>> registered_name(MyEmbedder)
    'my_company>MyEmbedder'
    """

    def deco(cls: T) -> T:
        key = f"{package}>{name or cls.__name__}"
        if key in _REGISTRY and _REGISTRY[key] is not cls:
            qual = f"{cls.__module__}.{cls.__qualname__}"
            other = _REGISTRY[key]
            if f"{other.__module__}.{other.__qualname__}" != qual:
                raise ValueError(f"{key!r} is already registered to {other!r}.")
        _REGISTRY[key] = cls
        cls._registered_name = key  # type: ignore[attr-defined]
        if like is not None:
            from .protocols import register_matcher

            register_matcher(cls, like)
        return cls

    return deco


def registered_name(cls_or_obj: Any) -> str:
    cls = cls_or_obj if isinstance(cls_or_obj, type) else type(cls_or_obj)
    key = cls.__dict__.get("_registered_name")
    if key is None or _REGISTRY.get(key) is not cls:
        raise TypeError(
            f"{cls.__name__} is not registered, so a pipeline using it cannot be saved. "
            "Decorate the class with @shopee_match.register(package='your_package')."
        )
    return str(key)


#: Where the library's own classes live, so loading imports only the modules it needs
#: (a TF-IDF pipeline must not pay for importing TensorFlow).
_BUILTIN = {
    "shopee_match>TitlePreprocessor": "shopee_match.text.preprocess",
    "shopee_match>TfidfEmbedder": "shopee_match.text.tfidf",
    "shopee_match>BertEmbedder": "shopee_match.text.bert",
    "shopee_match>PhashEmbedder": "shopee_match.image.phash",
    "shopee_match>ImageEmbedder": "shopee_match.image.efficientnet",
    "shopee_match>NeighborMatcher": "shopee_match.neighbors.matcher",
    "shopee_match>HashMatcher": "shopee_match.neighbors.hamming",
    "shopee_match>BlendMatcher": "shopee_match.neighbors.blend",
    "shopee_match>Ensemble": "shopee_match.ensemble",
    "shopee_match>PairReranker": "shopee_match.rerank.reranker",
}


def get_registered(key: str) -> type:
    if key not in _REGISTRY and key in _BUILTIN:
        import importlib

        importlib.import_module(_BUILTIN[key])
    if key not in _REGISTRY:
        _import_builtin()
    try:
        return _REGISTRY[key]
    except KeyError:
        raise ValueError(
            f"Unknown class {key!r} in saved pipeline. If it is your own class, import the "
            "module that registers it before loading; known: "
            f"{sorted(_REGISTRY)}."
        ) from None


def _import_builtin() -> None:
    """Import the library's own estimator modules so they register themselves."""
    import importlib

    for mod in dict.fromkeys(_BUILTIN.values()):
        # optional modules (deep models) may be missing their dependencies
        with contextlib.suppress(ImportError):
            importlib.import_module(mod)
