"""Relational state beside the log (subscriptions, deliveries), chosen by URL scheme."""

from __future__ import annotations

from .base import Claim, DeadLetterFilter, Delivery, Outcome, Routed, Store, Subscription

__all__ = [
    "Claim",
    "DeadLetterFilter",
    "Delivery",
    "Outcome",
    "Routed",
    "Store",
    "Subscription",
    "open_store",
]


def open_store(url: str) -> Store:
    """The store for ``url`` (``sqlite:///PATH`` or ``sqlite:///:memory:``), not yet opened."""
    if url.startswith("sqlite:"):
        from .sqlite import SqliteStore

        return SqliteStore(url)
    from ..exceptions import ConfigError

    raise ConfigError(f"no store backend for {url!r}; use sqlite:///PATH")
