"""Method decorators for simulated models (Odoo's ``odoo.api`` in miniature)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["is_model_method", "model_method", "versioned"]

F = TypeVar("F", bound=Callable[..., Any])


def model_method(func: F) -> F:
    """Mark a method as model-level (Odoo's ``@api.model``): RPC passes no ids to it."""
    func._model_method = True  # type: ignore[attr-defined]
    return func


def versioned(since: int | None = None, until: int | None = None) -> Callable[[F], F]:
    """Make a public method exist only for the Odoo majors ``since``..``until`` (inclusive)."""

    def mark(func: F) -> F:
        func._since = since  # type: ignore[attr-defined]
        func._until = until  # type: ignore[attr-defined]
        return func

    return mark


def is_model_method(cls: type, name: str) -> bool:
    """Whether ``name`` is model-level on ``cls``: an override inherits its parent's kind."""
    return any(getattr(vars(klass).get(name), "_model_method", False) for klass in cls.__mro__)


def available(func: Any, version: int) -> bool:
    since = getattr(func, "_since", None)
    until = getattr(func, "_until", None)
    return (since is None or version >= since) and (until is None or version <= until)
