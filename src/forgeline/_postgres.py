"""What the PostgreSQL log and store share: their URL, and how asyncpg's errors enter
Forgeline's tree.

``postgresql://user@host:port/db?schema=NAME`` names a database and the schema Forgeline
lives in; other query parameters (``sslmode``…) are asyncpg's, except those a caller names
as its own (the store's ``pool_size``). A URL may carry a password, so every message shows it
``redacted``.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]

from .exceptions import BackendError, BackendUnavailable, ConfigError

_COMMAND_TIMEOUT = 30.0

__all__ = [
    "DRIVER_ERRORS",
    "PostgresUrl",
    "connection_lost",
    "create_pool",
    "redacted",
    "translate",
]

_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,47}")

# What asyncpg raises: server errors, misuse of a dead connection, and (after the server
# dropped a connection between two queries) an InternalClientError about protocol state.
DRIVER_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)


class PostgresUrl:
    """A parsed URL: ``dsn`` for asyncpg, ``schema``, and the ``options`` a caller asked for."""

    def __init__(self, url: str, *, own: tuple[str, ...] = ()) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres") or not parts.hostname:
            raise ConfigError(
                f"not a PostgreSQL URL: {redacted(url)!r}; "
                "use postgresql://user@host:port/db?schema=NAME"
            )
        query = parse_qsl(parts.query, keep_blank_values=True)
        mine = ("schema", *own)
        self.options = {key: value for key, value in query if key in mine}
        self.schema = self.options.pop("schema", "forgeline")
        if not _IDENTIFIER.fullmatch(self.schema):
            raise ConfigError(
                f"schema {self.schema!r} in {redacted(url)!r}: use 1-48 lower-case letters, "
                "digits or '_'"
            )
        rest = urlencode([(key, value) for key, value in query if key not in mine])
        self.dsn = urlunsplit(parts._replace(query=rest))
        self._url = url

    def pool_size(self, default: int) -> int:
        """``?pool_size=N`` (when the caller owns that option), else ``default``."""
        try:
            size = int(self.options.get("pool_size", default))
        except ValueError:
            size = 0
        if size < 1:
            raise ConfigError(f"pool_size in {redacted(self._url)!r} must be a positive integer")
        return size


def redacted(dsn: str) -> str:
    """``dsn`` fit for an error message: the password, if any, replaced."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def connection_lost(exc: BaseException) -> bool:
    """The session is gone, not the request: 08xxx (connection exception), 57P01-03 (admin
    or crash shutdown, cannot connect now), the driver's "connection is closed", and the
    InternalClientError asyncpg raises when a pooled connection was killed while idle."""
    return isinstance(
        exc,
        asyncpg.PostgresConnectionError
        | asyncpg.OperatorInterventionError
        | asyncpg.InterfaceError
        | asyncpg.InternalClientError
        | ConnectionError,
    )


def translate(exc: BaseException, doing: str) -> BackendError:
    """The Forgeline error for a driver error met while ``doing`` something."""
    if connection_lost(exc) or isinstance(exc, OSError | TimeoutError):
        return BackendUnavailable(f"PostgreSQL unreachable while {doing}: {exc}")
    return BackendError(f"PostgreSQL failed while {doing}: {exc}")


async def _keep_session(conn: Any) -> None:
    """Released connections skip asyncpg's ``RESET ALL; UNLISTEN *; …``: a round trip per
    statement, for session state these pools never set (an open transaction is still rolled
    back by the pool)."""


async def create_pool(dsn: str, size: int) -> Any:
    """A pool for the store's tables, errors translated: a missing database or an unknown
    role is a ConfigError (retrying will not fix it), anything else unavailable."""
    try:
        return await asyncpg.create_pool(
            dsn,
            min_size=1,
            max_size=size,
            command_timeout=_COMMAND_TIMEOUT,
            timeout=10,
            reset=_keep_session,
        )
    except (
        asyncpg.InvalidCatalogNameError,
        asyncpg.InvalidAuthorizationSpecificationError,
    ) as exc:
        raise ConfigError(f"PostgreSQL refused {redacted(dsn)}: {exc}") from exc
    except DRIVER_ERRORS as exc:
        raise BackendUnavailable(f"cannot connect to PostgreSQL at {redacted(dsn)}: {exc}") from exc
