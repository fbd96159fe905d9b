"""Odoo's three wire formats: how a call is spelled, and how an answer (or failure) is read.

The client (``client.py``) owns the HTTP session, the concurrency cap and the retries; this
module is pure: it builds request bodies and turns response bodies into values or into the
classified errors of ``errors.py``. Everything here follows ODOO.md, so it holds for real
Odoo 16-19, not just for the simulator:

* XML-RPC (``/xmlrpc/2/common|object``): fault codes 3 AccessDenied, 4 AccessError, 2 UserError
  and kin, 1 anything else (a traceback whose last line names the exception). ``None`` cannot
  be sent (allow_none is off), so it travels as ``False``, which Odoo reads the same way.
* JSON-RPC (``/jsonrpc``, ``/web/...``): always HTTP 200; failures in ``error.data.name``;
  code 100 is an expired session.
* JSON-2 (``/json/2/<model>/<method>``, Odoo 19): named arguments, the HTTP status classifies
  (401 auth, 403 access, 409 lock, 429 busy); for 404/422/500 the body's exception name decides
  (MissingError and UserError are business errors, an unknown method or bad arguments are not).
"""

from __future__ import annotations

import re
import time

# Peers are configured Odoo servers, and expat >= 2.4.1 caps entity expansion.
import xmlrpc.client
from collections.abc import AsyncIterable, Mapping
from datetime import date, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from xml.parsers.expat import ExpatError

import orjson

from .errors import (
    OdooAccessError,
    OdooAuthError,
    OdooBusinessError,
    OdooConflict,
    OdooError,
    OdooProtocolError,
    OdooRateLimited,
    OdooServerError,
    OdooSessionExpired,
    OdooUnavailable,
)

__all__ = [
    "EXCERPT_LIMIT",
    "MAX_RESPONSE_BYTES",
    "classify_named",
    "is_conflict",
    "json2_body",
    "jsonrpc_body",
    "parse_json2",
    "parse_jsonrpc",
    "parse_xmlrpc",
    "read_capped",
    "to_wire",
    "xmlrpc_body",
]

#: Characters of a bad answer kept with the error: enough to recognise it, never a dump.
EXCERPT_LIMIT = 1024
#: The largest answer read from Odoo. A page of 2,000 records is a few MiB and a record with
#: its images some more: 64 MiB leaves room for both, while a server that streams without end
#: (or declares 10 GiB) costs at most this much memory per call in flight.
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"
DATE_FORMAT = "%Y-%m-%d"

_AUTH = frozenset({"odoo.exceptions.AccessDenied"})
_ACCESS = frozenset({"odoo.exceptions.AccessError"})
_BUSINESS = frozenset(
    {
        "odoo.exceptions.UserError",
        "odoo.exceptions.ValidationError",
        "odoo.exceptions.MissingError",
        "odoo.exceptions.RedirectWarning",
        "odoo.exceptions.Warning",  # <= 13, still raised by old custom modules
        "odoo.exceptions.except_orm",
    }
)
# PostgreSQL concurrency failures. Odoo already retried them a few times itself and rolled
# the transaction back each time, so the call had no effect: always safe to try again.
_CONFLICT_MARKERS = (
    "LockError",
    "SerializationFailure",
    "TransactionRollbackError",
    "LockNotAvailable",
    "DeadlockDetected",
    "could not serialize access",
    "could not obtain lock",
    "concurrent update",
)
# The last line of a Python traceback: ``package.module.Name: message``.
_TRACEBACK_LAST = re.compile(r"^([A-Za-z_][\w.]*): ?(.*)$")


def excerpt(body: bytes) -> str:
    return body[:EXCERPT_LIMIT].decode("utf-8", "replace")


async def read_capped(
    chunks: AsyncIterable[bytes],
    declared: int | None,
    *,
    status: int,
    what: str,
    limit: int = MAX_RESPONSE_BYTES,
) -> bytes:
    """The body from ``chunks`` (a response's stream), or ``OdooProtocolError`` as soon as it
    is known to be over ``limit`` bytes: by its declared Content-Length before anything is
    read, else while reading, so memory stays bounded whatever the server sends."""
    if declared is not None and declared > limit:
        raise OdooProtocolError(
            f"{what}: the answer declares {declared} bytes, over the {limit}-byte limit",
            http_status=status,
        )
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise OdooProtocolError(
                f"{what}: the answer is over the {limit}-byte limit",
                http_status=status,
                response_excerpt=excerpt(parts[0] if parts else chunk),
            )
        parts.append(chunk)
    return b"".join(parts)


def _media_type(headers: Mapping[str, str]) -> str | None:
    for name, value in headers.items():
        if name.lower() == "content-type":
            return value.split(";", 1)[0].strip().lower()
    return None


def _check_media(
    headers: Mapping[str, str], body: bytes, *, expected: str, what: str, status: int
) -> None:
    """A success must say it is ``expected`` (``json`` or ``xml``) when it names a media type:
    an HTML login page or a proxy's text is not Odoo's answer, even if it happens to parse."""
    media = _media_type(headers)
    if media is None or media == "application/octet-stream":
        return  # no claim made (octet-stream is what servers say when nobody set a type)
    if expected == "json":
        fits = media == "application/json" or media.endswith("+json")
    else:
        fits = media in ("text/xml", "application/xml") or media.endswith("+xml")
    if not fits:
        raise OdooProtocolError(
            f"{what}: the answer is {media[:80]}, not {expected.upper()}",
            http_status=status,
            response_excerpt=excerpt(body),
        )


def to_wire(value: Any, *, none: Any = None) -> Any:
    """A value as Odoo reads it: datetimes as ``YYYY-MM-DD HH:MM:SS`` (UTC), dates as
    ``YYYY-MM-DD``, tuples as lists, and ``None`` as ``none`` (``False`` for XML-RPC)."""
    if value is None:
        return none
    if isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, datetime):
        return value.strftime(DATETIME_FORMAT)
    if isinstance(value, date):
        return value.strftime(DATE_FORMAT)
    if isinstance(value, dict):
        return {str(k): to_wire(v, none=none) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_wire(v, none=none) for v in value]
    return value


def classify_named(
    name: str | None,
    message: str,
    *,
    what: str,
    http_status: int | None = None,
    body: bytes | None = None,
    debug: str | None = None,
) -> OdooError:
    """The error for an exception Odoo named (JSON-RPC ``data.name``, JSON-2 body ``name``,
    the last line of an XML-RPC traceback)."""
    short = (name or "Error").rsplit(".", 1)[-1]
    detail = f"{what}: {short}: {message}" if message else f"{what}: {short}"
    kwargs: dict[str, Any] = {
        "http_status": http_status,
        "response_excerpt": excerpt(body) if body is not None else None,
        "odoo_name": name,
        "odoo_message": message,
    }
    if name in _AUTH:
        return OdooAuthError(detail, **kwargs)
    if name in _ACCESS:
        return OdooAccessError(detail, **kwargs)
    if name in _BUSINESS:
        return OdooBusinessError(detail, **kwargs)
    haystack = f"{name or ''}\n{message}\n{debug or ''}"
    if is_conflict(haystack):
        return OdooConflict(detail, **kwargs)
    return OdooServerError(detail, **kwargs)


def is_conflict(text: str) -> bool:
    """Whether an Odoo message names a concurrency failure (rolled back, safe to retry)."""
    return any(marker in text for marker in _CONFLICT_MARKERS)


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def status_error(status: int, headers: Mapping[str, str], body: bytes, *, what: str) -> OdooError:
    """An HTTP failure that carries no Odoo error body (a proxy, a crash, a missing route)."""
    detail = f"{what}: HTTP {status}"
    text = excerpt(body)
    if status == 429:
        return OdooRateLimited(
            detail, http_status=status, response_excerpt=text,
            retry_after=retry_after(headers.get("Retry-After")),
        )  # fmt: skip
    if status == 503:
        # Refused before any worker ran the call (maintenance, no worker free).
        return OdooUnavailable(
            detail, http_status=status, response_excerpt=text,
            retry_after=retry_after(headers.get("Retry-After")), rolled_back=True,
        )  # fmt: skip
    if status >= 500 or status == 408:
        # 502/504 from a proxy: the worker may have finished (and committed) the call.
        return OdooUnavailable(detail, http_status=status, response_excerpt=text)
    if 300 <= status < 400:
        # Never followed: the call (and its credentials) would go wherever Location says.
        # Permanent: an http -> https or a moved server is a configuration to correct.
        return OdooServerError(
            f"{detail}: a redirect, which is not followed (is the configured url Odoo's own?)",
            http_status=status, response_excerpt=text,
        )  # fmt: skip
    if status == 401:
        return OdooAuthError(detail, http_status=status, response_excerpt=text)
    if status == 403:
        return OdooAccessError(detail, http_status=status, response_excerpt=text)
    if status == 404:
        return OdooServerError(
            f"{detail}: no such endpoint (is this Odoo, and is the protocol enabled?)",
            http_status=status, response_excerpt=text,
        )  # fmt: skip
    return OdooServerError(detail, http_status=status, response_excerpt=text)


def _loads_json(body: bytes, *, what: str, status: int) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise OdooProtocolError(
            f"{what}: the answer is not JSON", http_status=status, response_excerpt=excerpt(body)
        ) from exc


# --- JSON-RPC -------------------------------------------------------------------------------


def jsonrpc_body(params: Mapping[str, Any], request_id: int) -> bytes:
    """``{"jsonrpc": "2.0", "method": "call", "params": ..., "id": N}``."""
    return orjson.dumps(
        {"jsonrpc": "2.0", "method": "call", "params": to_wire(params), "id": request_id}
    )


def parse_jsonrpc(status: int, headers: Mapping[str, str], body: bytes, *, what: str) -> Any:
    if status != 200:
        raise status_error(status, headers, body, what=what)
    _check_media(headers, body, expected="json", what=what, status=status)
    answer = _loads_json(body, what=what, status=status)
    if not isinstance(answer, dict):
        raise OdooProtocolError(
            f"{what}: the answer is not a JSON-RPC object", response_excerpt=excerpt(body)
        )
    error = answer.get("error")
    if error is None:
        return answer.get("result")  # absent when the method returned None
    if not isinstance(error, dict):
        raise OdooProtocolError(f"{what}: malformed JSON-RPC error", response_excerpt=excerpt(body))
    raw_data = error.get("data")
    data: dict[str, Any] = raw_data if isinstance(raw_data, dict) else {}
    message = str(data.get("message") or error.get("message") or "")
    if error.get("code") == 100:
        raise OdooSessionExpired(
            f"{what}: Odoo session expired", response_excerpt=excerpt(body),
            odoo_name=data.get("name"), odoo_message=message,
        )  # fmt: skip
    name = data.get("name")
    raise classify_named(
        str(name) if name else None, message, what=what, body=body, debug=data.get("debug")
    )


# --- JSON-2 ---------------------------------------------------------------------------------


def json2_body(params: Mapping[str, Any]) -> bytes:
    return orjson.dumps(to_wire(params))


def parse_json2(status: int, headers: Mapping[str, str], body: bytes, *, what: str) -> Any:
    if status == 200:
        _check_media(headers, body, expected="json", what=what, status=status)
        return _loads_json(body, what=what, status=status)
    try:
        error = orjson.loads(body)
    except orjson.JSONDecodeError:
        error = None
    if not isinstance(error, dict) or "name" not in error:
        raise status_error(status, headers, body, what=what)
    name = str(error.get("name") or "") or None
    message = str(error.get("message") or "")
    short = (name or "Error").rsplit(".", 1)[-1]
    detail = f"{what}: {short}: {message}" if message else f"{what}: {short}"
    kwargs: dict[str, Any] = {
        "http_status": status,
        "response_excerpt": excerpt(body),
        "odoo_name": name,
        "odoo_message": message,
    }
    # The status is JSON-2's contract; the name refines it where the status is generic.
    if status == 401:
        raise OdooAuthError(detail, **kwargs)
    if status == 403:
        raise OdooAccessError(detail, **kwargs)
    if status == 409:
        raise OdooConflict(detail, **kwargs)
    if status == 429:
        raise OdooRateLimited(detail, retry_after=retry_after(headers.get("Retry-After")), **kwargs)
    if status == 400:
        raise OdooServerError(detail, **kwargs)
    raise classify_named(
        name, message, what=what, http_status=status, body=body, debug=error.get("debug")
    )


# --- XML-RPC --------------------------------------------------------------------------------


def xmlrpc_body(method: str, args: list[Any]) -> bytes:
    # allow_none is off on Odoo's side: None becomes False, which Odoo treats alike.
    return xmlrpc.client.dumps(
        tuple(to_wire(args, none=False)), method, allow_none=False, encoding="utf-8"
    ).encode("utf-8")


def parse_xmlrpc(status: int, headers: Mapping[str, str], body: bytes, *, what: str) -> Any:
    if status != 200:
        raise status_error(status, headers, body, what=what)
    _check_media(headers, body, expected="xml", what=what, status=status)
    try:
        params, _ = xmlrpc.client.loads(body, use_builtin_types=True)
    except xmlrpc.client.Fault as fault:
        if _UNMARSHALLABLE in str(fault.faultString):
            # Odoo ran the method and committed; only its answer (None, or an action whose
            # context holds None) cannot travel over XML-RPC. The call succeeded.
            return None
        raise _classify_fault(fault, what=what, body=body) from None
    except (ExpatError, xmlrpc.client.ResponseError, ValueError, TypeError) as exc:
        raise OdooProtocolError(
            f"{what}: the answer is not XML-RPC", http_status=status,
            response_excerpt=excerpt(body),
        ) from exc  # fmt: skip
    if len(params) != 1:
        raise OdooProtocolError(f"{what}: XML-RPC answer without a value")
    return params[0]


_UNMARSHALLABLE = "cannot marshal None unless allow_none is enabled"


def _classify_fault(fault: xmlrpc.client.Fault, *, what: str, body: bytes) -> OdooError:
    code: object = fault.faultCode
    text = str(fault.faultString)
    if isinstance(code, int) or (isinstance(code, str) and code.isdigit()):
        number = int(code)
        if number == 3:
            return classify_named("odoo.exceptions.AccessDenied", text, what=what, body=body)
        if number == 4:
            return classify_named("odoo.exceptions.AccessError", text, what=what, body=body)
        if number == 2:
            return classify_named("odoo.exceptions.UserError", text, what=what, body=body)
        name, message = _traceback_tail(text)
        return classify_named(name, message, what=what, body=body, debug=text)
    # Legacy /xmlrpc/<service>: string codes such as "warning -- AccessError\n\nmessage".
    label = str(code)
    if label == "AccessDenied":
        return classify_named("odoo.exceptions.AccessDenied", text, what=what, body=body)
    if label.startswith("warning -- "):
        kind, _, message = label[len("warning -- ") :].partition("\n\n")
        name = (
            "odoo.exceptions.AccessError" if kind == "AccessError" else "odoo.exceptions.UserError"
        )
        return classify_named(name, message or text, what=what, body=body)
    name, message = _traceback_tail(text or label)
    return classify_named(name, message, what=what, body=body, debug=text)


def _traceback_tail(text: str) -> tuple[str | None, str]:
    """``("psycopg2.errors.SerializationFailure", "could not ...")`` from a traceback text."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    for line in reversed(lines[-5:]):
        found = _TRACEBACK_LAST.match(line.strip())
        if found and not line.startswith(" "):
            return found.group(1), found.group(2)
    return None, lines[-1].strip() if lines else ""
