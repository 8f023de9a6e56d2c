"""A light stand-in for ``sklearn.base.BaseEstimator``: parameters, nesting, repr.

Importing scikit-learn costs most of a second, and ``import shopee_match`` must stay
fast, so estimators inherit this instead. It follows the same protocol, so
``sklearn.base.clone`` and ``get_params`` / ``set_params`` work as with scikit-learn.
"""

from __future__ import annotations

import inspect
from typing import Any

__all__ = ["BaseEstimator"]


class BaseEstimator:
    """Constructor arguments are parameters; ``get_params`` / ``set_params`` read them.

    >>> class Thing(BaseEstimator):
    ...     def __init__(self, a=1, b="x"):
    ...         self.a = a
    ...         self.b = b
    >>> Thing(a=2).set_params(b="y")
    Thing(a=2, b='y')
    """

    @classmethod
    def _get_param_names(cls) -> list[str]:
        init = cls.__init__
        if init is object.__init__:
            return []
        sig = inspect.signature(init)
        for p in sig.parameters.values():
            if p.kind == p.VAR_POSITIONAL:
                raise RuntimeError(
                    f"{cls.__name__} must not take *args: estimator parameters are keywords."
                )
        return sorted(
            p.name for p in sig.parameters.values() if p.name != "self" and p.kind != p.VAR_KEYWORD
        )

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self._get_param_names():
            value = getattr(self, name)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                for k, v in value.get_params(deep=True).items():
                    out[f"{name}__{k}"] = v
            out[name] = value
        return out

    def set_params(self, **params: Any) -> Any:
        valid = self._get_param_names()
        nested: dict[str, dict[str, Any]] = {}
        for key, value in params.items():
            name, _, sub = key.partition("__")
            if name not in valid:
                raise ValueError(
                    f"Invalid parameter {name!r} for estimator {type(self).__name__}. Check the "
                    "list of available parameters with `estimator.get_params().keys()`."
                )
            if sub:
                nested.setdefault(name, {})[sub] = value
            else:
                setattr(self, name, value)
        for name, sub_params in nested.items():
            getattr(self, name).set_params(**sub_params)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params(deep=False).items())
        return f"{type(self).__name__}({args})"
