"""Odoo's RPC services ``common``, ``object`` and ``db``, and how an exception reaches the wire.

XML-RPC (``/xmlrpc/2/<service>``) and JSON-RPC (``/jsonrpc``) both end in ``dispatch_rpc``,
exactly as in Odoo's ``odoo.http.dispatch_rpc``: positional parameters, credentials checked on
every ``object`` call, wrong argument counts surfacing as the ``TypeError`` Odoo would raise.
``describe_error`` gives each protocol what it needs to report a failure: the Odoo exception
name, the message, the XML-RPC fault code, the JSON-2 status and a traceback text.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import (
    AccessDenied,
    AccessError,
    LockError,
    MissingError,
    OdooError,
    RedirectWarning,
    UserError,
)
from .state import ServerState

__all__ = [
    "DatabaseNotFound",
    "HttpError",
    "SessionExpired",
    "WireError",
    "describe_error",
    "dispatch_rpc",
    "require_database",
]

# Odoo's XML-RPC fault codes (odoo/addons/base/controllers/rpc.py).
FAULT_APPLICATION_ERROR = 1
FAULT_WARNING = 2
FAULT_ACCESS_DENIED = 3
FAULT_ACCESS_ERROR = 4


class HttpError(Exception):
    """A werkzeug HTTP exception raised by a route (JSON-2's 400/401/404/405/422)."""

    def __init__(self, status: int, name: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.name = f"werkzeug.exceptions.{name}"
        self.message = message


class SessionExpired(Exception):
    """No valid ``session_id`` cookie on an ``auth="user"`` route (JSON-RPC code 100)."""

    def __init__(self) -> None:
        super().__init__("Session expired")


class DatabaseNotFound(Exception):
    """What PostgreSQL answers Odoo for a database that does not exist."""

    wire_name = "psycopg2.OperationalError"

    def __init__(self, db: object) -> None:
        super().__init__(
            'connection to server on socket "/var/run/postgresql/.s.PGSQL.5432" failed: '
            f'FATAL:  database "{db}" does not exist\n'
        )


@dataclass(frozen=True)
class WireError:
    name: str
    message: str
    arguments: list[Any]
    debug: str
    fault_code: int
    json2_status: int


def _traceback_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


def _arguments(exc: BaseException) -> list[Any]:
    # Exception args travel as JSON: keep what JSON can carry, stringify the rest.
    return [a if isinstance(a, str | int | float | bool) or a is None else str(a) for a in exc.args]


def describe_error(exc: BaseException) -> WireError:
    """Classify ``exc`` the way Odoo's protocol layers do."""
    debug = _traceback_text(exc)
    if isinstance(exc, OdooError):
        if isinstance(exc, RedirectWarning | UserError):
            code = FAULT_WARNING
            status = 404 if isinstance(exc, MissingError) else 422
        elif isinstance(exc, AccessError):
            code, status = FAULT_ACCESS_ERROR, 403
        elif isinstance(exc, AccessDenied):
            code, status = FAULT_ACCESS_DENIED, 403
        elif isinstance(exc, LockError):
            code, status = FAULT_APPLICATION_ERROR, 409
        else:
            code, status = FAULT_WARNING, 422
        return WireError(exc.odoo_name, exc.message, _arguments(exc), debug, code, status)
    if isinstance(exc, HttpError):
        return WireError(exc.name, exc.message, [exc.message], debug, 1, exc.status)
    if isinstance(exc, SessionExpired):
        return WireError(
            "odoo.http.SessionExpiredException", str(exc), _arguments(exc), debug, 1, 403
        )
    cls = type(exc)
    name = getattr(exc, "wire_name", None) or f"{cls.__module__}.{cls.__qualname__}"
    return WireError(name, str(exc), _arguments(exc), debug, FAULT_APPLICATION_ERROR, 500)


def require_database(state: ServerState, db: object) -> str:
    if not isinstance(db, str) or db not in state.simulator.list_databases():
        raise DatabaseNotFound(db)
    return db


# --- common -----------------------------------------------------------------------------


def _login(state: ServerState, db: str, login: str, password: str) -> int | bool:
    require_database(state, db)
    return state.simulator.authenticate(db, login, password) or False


def _authenticate(
    state: ServerState, db: str, login: str, password: str, user_agent_env: Any
) -> int | bool:
    return _login(state, db, login, password)


def _version(state: ServerState) -> dict[str, Any]:
    return state.simulator.version_info()


def _about(state: ServerState, extended: bool = False) -> Any:
    info = "See http://openerp.com"
    if extended:
        return [info, state.simulator.version_info()["server_version"]]
    return info


_COMMON: dict[str, Callable[..., Any]] = {
    "login": _login,
    "authenticate": _authenticate,
    "version": _version,
    "about": _about,
}

# --- db ---------------------------------------------------------------------------------


def _db_list(state: ServerState, document: bool = False) -> list[str]:
    return state.simulator.list_databases()


def _db_server_version(state: ServerState) -> str:
    return str(state.simulator.version_info()["server_version"])


def _db_exist(state: ServerState, db_name: str) -> bool:
    return db_name in state.simulator.list_databases()


def _db_list_lang(state: ServerState) -> list[list[str]]:
    return [["en_US", "English (US)"]]


def _db_needs_master_password(state: ServerState, *args: Any) -> Any:
    # The simulator has no master password: every management call is refused as Odoo
    # refuses a wrong one.
    raise AccessDenied()


_DB: dict[str, Callable[..., Any]] = {
    "list": _db_list,
    "server_version": _db_server_version,
    "db_exist": _db_exist,
    "list_lang": _db_list_lang,
    **dict.fromkeys(
        (
            "create_database",
            "duplicate_database",
            "drop",
            "dump",
            "restore",
            "rename",
            "change_admin_password",
            "migrate_databases",
        ),
        _db_needs_master_password,
    ),
}

# --- object -----------------------------------------------------------------------------


def _execute_kw(
    state: ServerState,
    db: str,
    uid: int,
    model: str,
    method: str,
    args: Any,
    kw: Any = None,
) -> Any:
    if not isinstance(args, list | tuple):
        raise TypeError(
            f"execute() argument after * must be an iterable, not {type(args).__name__}"
        )
    if kw is not None and not isinstance(kw, dict):
        raise TypeError(f"execute() argument after ** must be a mapping, not {type(kw).__name__}")
    return state.simulator.execute_kw(db, uid, model, method, list(args), dict(kw or {}))


def _execute(state: ServerState, db: str, uid: int, model: str, method: str, *args: Any) -> Any:
    return state.simulator.execute_kw(db, uid, model, method, list(args), {})


def _object(state: ServerState, method: str, params: list[Any]) -> Any:
    # Odoo: ``db, uid, passwd = params[0], int(params[1]), params[2]`` then security.check.
    db, uid, password = params[0], int(params[1]), params[2]
    require_database(state, db)
    state.simulator.check_credentials(db, uid, password)
    if method == "execute":
        return _execute(state, db, uid, *params[3:])
    if method == "execute_kw":
        return _execute_kw(state, db, uid, *params[3:])
    raise NameError(f"Method not available {method}")


def dispatch_rpc(state: ServerState, service: str, method: Any, params: list[Any]) -> Any:
    """Run one RPC call of ``service`` as Odoo's ``dispatch_rpc`` does."""
    if service == "object":
        return _object(state, method, params)
    table = {"common": _COMMON, "db": _DB}[service]  # KeyError, as in Odoo, for others
    fn = table.get(method) if isinstance(method, str) else None
    if fn is None:
        raise KeyError(f"exp_{method}")
    return fn(state, *params)
