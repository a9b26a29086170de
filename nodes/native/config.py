"""Configs of the native modules: a diffusers/transformers config read as it is stored, checked against
what the module implements."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from . import UnsupportedConfig

__all__ = ["ModuleConfig", "Weights", "require"]


class ModuleConfig(dict):
    """A read-only config readable as ``config.key`` and ``config["key"]``, as diffusers' ``FrozenDict``.

    Keys starting with ``_`` (``_class_name``, ``_diffusers_version``) are kept as they are.
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"config has no {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a module's config is read-only")

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("a module's config is read-only")

    def __reduce__(self) -> tuple[Any, ...]:  # copies and pickles rebuild it whole instead of item by item
        return (type(self), (dict(self),))

    __setitem__ = __delitem__ = update = pop = popitem = clear = setdefault = _refuse  # type: ignore[assignment]

    @classmethod
    def of(cls, stored: Mapping[str, Any], defaults: Mapping[str, Any]) -> ModuleConfig:
        """``defaults`` with ``stored`` over them (a stored key the defaults lack is kept too)."""
        return cls({**defaults, **stored})


def require(config: Mapping[str, Any], what: str, rules: Mapping[str, Iterable[Any] | Callable[[Any], bool]]) -> None:
    """Raise ``UnsupportedConfig`` for the first key whose value ``rules`` does not allow.

    A rule is the allowed values, or a predicate. ``what`` names the module in the message.
    """
    for key, rule in rules.items():
        value = config.get(key)
        allowed = rule(value) if callable(rule) else value in list(rule)
        if not allowed:
            choices = "" if callable(rule) else f" (gouache's native {what} implements {', '.join(map(repr, rule))})"
            raise UnsupportedConfig(f"{what} config {key}={value!r} is not implemented by gouache's native modules"
                                    f"{choices}; load this model with diffusers (\"modules\": \"diffusers\")")


class Weights:
    """``dtype`` and ``device`` of a module's weights (its first parameter's), as diffusers' and transformers'
    models report them; mixed into the native modules ahead of ``nn.Module``."""

    @property
    def dtype(self) -> Any:
        return next(self.parameters()).dtype  # type: ignore[attr-defined]

    @property
    def device(self) -> Any:
        return next(self.parameters()).device  # type: ignore[attr-defined]
