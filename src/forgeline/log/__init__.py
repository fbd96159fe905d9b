"""The event log: durable, ordered, idempotent on ``(source, id)``, chosen by URL scheme.

``memory://`` keeps events in the process; ``sqlite:///path`` is the embedded default.
PostgreSQL and NATS JetStream backends plug in under their own schemes, drivers imported
only when their URL is used.
"""

from __future__ import annotations

from .base import Appended, EventLog, RecentRecords, Record

__all__ = ["Appended", "EventLog", "RecentRecords", "Record", "open_log"]


def open_log(url: str) -> EventLog:
    """The backend for ``url``, not yet opened: use ``async with open_log(url) as log``."""
    scheme = url.split(":", 1)[0]
    if scheme == "memory":
        from .memory import MemoryLog

        return MemoryLog(url)
    if scheme == "sqlite":
        from .sqlite import SqliteLog

        return SqliteLog(url)
    from ..exceptions import ConfigError

    if scheme in ("postgresql", "postgres"):
        try:
            from .postgres import PostgresLog
        except ModuleNotFoundError as exc:
            raise ConfigError("a postgresql:// log needs: pip install forgeline[postgres]") from exc
        return PostgresLog(url)
    if scheme == "nats":
        try:
            from .nats import NatsLog
        except ModuleNotFoundError as exc:
            raise ConfigError("a nats:// log needs: pip install forgeline[nats]") from exc
        return NatsLog(url)
    raise ConfigError(
        # The scheme only: a URL may carry a password.
        f"no event log backend for {scheme + '://'!r}; use memory://, sqlite:///PATH, "
        "postgresql://… or nats://…"
    )
