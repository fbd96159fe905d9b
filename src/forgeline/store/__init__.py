"""Relational state beside the log (subscriptions, deliveries), chosen by URL scheme."""

from __future__ import annotations

from .base import (
    Claim,
    ClaimRequest,
    DeadLetterFilter,
    Delivery,
    Outcome,
    Routed,
    Store,
    Subscription,
)

__all__ = [
    "Claim",
    "ClaimRequest",
    "DeadLetterFilter",
    "Delivery",
    "Outcome",
    "Routed",
    "Store",
    "Subscription",
    "open_store",
]


def open_store(url: str) -> Store:
    """The store for ``url``, not yet opened: ``sqlite:///PATH`` (or ``sqlite:///:memory:``),
    or ``postgresql://user@host:port/db?schema=NAME`` (needs ``forgeline[postgres]``)."""
    from ..exceptions import ConfigError

    if url.startswith("sqlite:"):
        from .sqlite import SqliteStore

        return SqliteStore(url)
    if url.startswith(("postgresql:", "postgres:")):
        try:
            from .postgres import PostgresStore
        except ImportError as exc:
            raise ConfigError(
                f"the PostgreSQL store needs extra packages ({exc.name} is missing):"
                " pip install 'forgeline[postgres]'"
            ) from exc
        return PostgresStore(url)
    raise ConfigError(
        f"no store backend for {url!r}; use sqlite:///PATH or postgresql://HOST/DB?schema=NAME"
    )
