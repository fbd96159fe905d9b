"""The Odoo client: one connection pool, one login, every call classified and retried safely.

Everything Forgeline does with Odoo goes through :class:`OdooClient`: the sink's calls
(``deliver/odoo.py``), the write-date poller and bulk imports (``records.py``, ``poller.py``).
It speaks JSON-2 (Odoo 19+ with an API key), JSON-RPC or XML-RPC (``transports.py``), picked
on :meth:`~OdooClient.open` from the server's version unless the configuration insists.

Odoo runs few workers, so calls share one aiohttp session and a semaphore caps how many are
in flight (``max_concurrency``). Failures arrive as the classes of ``errors.py``.

Retry-safety rule (what :meth:`~OdooClient.execute` retries by itself, with capped
exponential backoff and jitter, up to ``retry.attempts`` tries):

1. a transient failure of a *read* method (``search_read``, ``read``, ``fields_get`` ...);
2. a transient failure of a call the caller declared idempotent (``idempotent=True``:
   ``load`` by external id in ``upsert``, ``write`` of plain values or of x2many lists that
   start by clearing), because repeating it leaves Odoo in the same state;
3. any transient failure where Odoo certainly did not commit (``error.rolled_back``): the
   connection was refused, a 429 or 503 came back, Odoo reported a lock or serialization
   conflict (it rolled back), or the session had expired (we log in again, once).

Everything else - a ``create`` or a business method that timed out or lost its answer - is
raised at once as a :class:`~.errors.OdooTransientError`: the hub's dispatcher reschedules
the delivery, and the sink makes the redelivery safe (external ids, ``done_states``).
Permanent errors are never retried. A ``Retry-After`` longer than ``retry.max_delay`` is
raised too, so the hub's schedule (not a sleeping worker) does the waiting.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, overload
from urllib.parse import urlsplit

import aiohttp

from ..._lifecycle import AsyncResource
from ...exceptions import ConfigError
from .errors import (
    OdooAuthError,
    OdooProtocolError,
    OdooServerError,
    OdooSessionExpired,
    OdooTimeout,
    OdooTransientError,
    OdooUnavailable,
)
from .records import Binder
from .transports import (
    MAX_RESPONSE_BYTES,
    json2_body,
    jsonrpc_body,
    parse_json2,
    parse_jsonrpc,
    parse_xmlrpc,
    read_capped,
    xmlrpc_body,
)

__all__ = ["READ_METHODS", "OdooClient", "OdooRetry", "Protocol", "write_is_idempotent"]

log = logging.getLogger("forgeline.connectors.odoo")

Protocol = Literal["auto", "json2", "jsonrpc", "xmlrpc"]

#: Methods that change nothing: always safe to retry.
READ_METHODS = frozenset(
    {
        "search", "search_read", "search_count", "read", "fields_get", "name_search",
        "read_group", "formatted_read_group", "default_get", "context_get", "check_access_rights",
        "has_access", "name_get", "web_search_read", "web_read", "get_metadata",
    }
)  # fmt: skip

# JSON-2 takes named arguments only; these are the ORM's names (odooly ships the same table).
# Other methods' names come from /doc-bearer/<model>.json, read once per model.
_ORM_PARAMS: dict[str, tuple[str, ...]] = {
    "search": ("domain", "offset", "limit", "order"),
    "search_count": ("domain", "limit"),
    "search_read": ("domain", "fields", "offset", "limit", "order"),
    "read": ("fields", "load"),
    "write": ("vals",),
    "create": ("vals_list",),
    "unlink": (),
    "copy": ("default",),
    "fields_get": ("allfields", "attributes"),
    "name_search": ("name", "domain", "operator", "limit"),
    "load": ("fields", "data"),
    "context_get": (),
}
# x2many commands whose repetition changes nothing: update, unlink-relation, link, clear, set.
_IDEMPOTENT_COMMANDS = frozenset({1, 3, 4, 5, 6})


@dataclass(frozen=True, slots=True)
class OdooRetry:
    """How hard one call tries before its failure goes to the caller (and the hub's schedule):
    ``attempts`` tries in all, delays ``initial_delay * multiplier**n`` capped at
    ``max_delay``, each shortened by up to ``jitter`` (a fraction) so retries spread out."""

    attempts: int = 4
    initial_delay: float = 0.2
    multiplier: float = 2.0
    max_delay: float = 5.0
    jitter: float = 0.5

    def delay(self, failures: int) -> float:
        base = min(self.max_delay, self.initial_delay * self.multiplier ** (failures - 1))
        return base * (1.0 - self.jitter * random.random())


def write_is_idempotent(vals: Mapping[str, Any]) -> bool:
    """Whether writing ``vals`` twice leaves the record as writing it once: plain values do;
    x2many commands do when they never create, or when the list starts by clearing."""
    for value in vals.values():
        if not isinstance(value, list | tuple) or not value:
            continue
        commands = [c for c in value if isinstance(c, list | tuple) and c]
        if not commands:
            continue  # a bare id list: many2many "set"
        codes = [c[0] for c in commands]
        if all(code in _IDEMPOTENT_COMMANDS for code in codes):
            continue
        if codes[0] == 5 and all(code in _IDEMPOTENT_COMMANDS or code == 0 for code in codes):
            continue
        return False
    return True


class OdooClient(AsyncResource):
    """An authenticated connection to one Odoo database.

    ``OdooClient(url, db, login=..., password=...)`` or ``api_key=...`` (with ``login`` for
    Odoo < 19). ``protocol="auto"`` uses JSON-2 on Odoo 19+ when an API key is given, else
    JSON-RPC. After :meth:`open`: ``version`` (major), ``server_version``, ``protocol``,
    ``uid``. ``requests`` counts HTTP requests sent (retries included).
    """

    def __init__(
        self,
        url: str,
        db: str,
        *,
        login: str | None = None,
        password: str | None = None,
        api_key: str | None = None,
        protocol: Protocol = "auto",
        max_concurrency: int = 4,
        timeout: float = 30.0,
        retry: OdooRetry | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"an Odoo url is http:// or https:// with a host, not {url!r}")
        if password is None and api_key is None:
            raise ConfigError("an Odoo client needs a password or an api_key")
        if protocol not in ("auto", "json2", "jsonrpc", "xmlrpc"):
            raise ConfigError(f"unknown Odoo protocol {protocol!r}")
        if protocol == "json2" and api_key is None:
            raise ConfigError("JSON-2 authenticates with an API key only")
        if max_concurrency < 1:
            raise ConfigError("max_concurrency must be at least 1")
        self.url = url.rstrip("/")
        self.db = db
        self.login = login
        self._secret: str = api_key if api_key is not None else password  # type: ignore[assignment]
        self._api_key = api_key
        self.requested_protocol: Protocol = protocol
        self.protocol: Protocol = protocol
        self.max_concurrency = max_concurrency
        self.timeout = timeout
        self.retry = retry or OdooRetry()
        #: Answers over this many bytes are refused unread (``transports.read_capped``).
        self.max_response_bytes = max_response_bytes
        self.version: int | None = None
        self.server_version: str | None = None
        self.uid: int | None = None
        self.requests = 0
        #: External id <-> Odoo id cache and field types, shared by ``records`` helpers.
        self.binder = Binder()
        self._session: aiohttp.ClientSession | None = None
        self._slots = asyncio.Semaphore(max_concurrency)
        self._ids = itertools.count(1)
        self._doc_params: dict[str, dict[str, tuple[str, ...]]] = {}
        self._field_types: dict[str, dict[str, str]] = {}
        self._login_lock = asyncio.Lock()

    @property
    def host(self) -> str:
        """``host[:port]`` (never user or password): what errors and events may name."""
        parts = urlsplit(self.url)
        return f"{parts.hostname}{f':{parts.port}' if parts.port else ''}"

    # --- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, detect the version, pick the protocol and log in. Idempotent."""
        if self._session is not None and self.uid is not None:
            return
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self.max_concurrency, ttl_dns_cache=60)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers={"User-Agent": "forgeline-odoo"},
            )
        try:
            await self._detect_version()
            await self._authenticate()
        except BaseException:
            # ``async with`` never reaches __aexit__ when opening fails: do not leak the pool.
            await self.aclose()
            raise

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        self.uid = None

    async def _detect_version(self) -> None:
        info: Any = None
        if self.requested_protocol in ("auto", "json2"):
            status, _, body = await self._http("GET", "/web/version", None, {}, what="version")
            if status == 200:
                try:
                    info = parse_json2(status, {}, body, what="GET /web/version")
                except OdooProtocolError:
                    info = None
            if isinstance(info, dict) and info.get("version_info"):
                info = {
                    "server_version_info": info["version_info"],
                    "server_version": info.get("version"),
                }
            else:
                info = None
        if info is None and self.requested_protocol != "xmlrpc":
            try:
                info = await self._jsonrpc("/web/webclient/version_info", {}, what="version_info")
            except OdooServerError:  # the route is gone (Odoo 22+ or blocked): ask XML-RPC
                info = None
        if info is None:
            info = await self._xmlrpc("common", "version", [], what="common.version")
        if not isinstance(info, dict) or not info.get("server_version_info"):
            raise OdooProtocolError(f"{self.url} did not say which Odoo version it runs")
        self.version = int(info["server_version_info"][0])
        self.server_version = str(info.get("server_version") or self.version)
        if self.requested_protocol == "auto":
            self.protocol = "json2" if self.version >= 19 and self._api_key else "jsonrpc"
        elif self.requested_protocol == "json2" and self.version < 19:
            raise ConfigError(
                f"JSON-2 needs Odoo 19 or later; {self.url} runs {self.server_version}"
            )
        if self.protocol != "json2" and not self.login:
            raise ConfigError(f"Odoo {self.server_version} over {self.protocol} needs a login")

    async def _authenticate(self) -> None:
        async with self._login_lock:
            if self.protocol == "json2":
                context = await self._json2("res.users", "context_get", {}, what="context_get")
                uid = context.get("uid") if isinstance(context, dict) else None
                self.uid = int(uid) if isinstance(uid, int) else 0
                return
            args: list[Any] = [self.db, self.login, self._secret, {}]
            if self.protocol == "xmlrpc":
                uid = await self._xmlrpc("common", "authenticate", args, what="authenticate")
            else:
                params = {"service": "common", "method": "authenticate", "args": args}
                uid = await self._jsonrpc("/jsonrpc", params, what="authenticate")
            if not uid:
                raise OdooAuthError(
                    f"Odoo {self.url} db {self.db!r} refused the login {self.login!r} "
                    "(wrong login, password or API key)"
                )
            self.uid = int(uid)

    # --- calls ----------------------------------------------------------------------------

    async def call(
        self, model: str, method: str, *args: Any, ids: Sequence[int] | None = None, **kwargs: Any
    ) -> Any:
        """``model.method(*args, **kwargs)`` on ``ids`` (a record method) or on the model.
        Retried only as the module's retry-safety rule allows (reads are)."""
        return await self.execute(model, method, args, kwargs, ids=ids)

    async def execute(
        self,
        model: str,
        method: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        ids: Sequence[int] | None = None,
        idempotent: bool | None = None,
    ) -> Any:
        """The primitive under every call. ``idempotent`` overrides the method-name rule."""
        if self._session is None or self.uid is None:
            await self.open()
        safe = idempotent if idempotent is not None else method in READ_METHODS
        what = f"{model}.{method}"
        failures = 0
        logged_in_again = False
        while True:
            try:
                return await self._once(model, method, list(args), dict(kwargs or {}), ids, what)
            except OdooSessionExpired:
                if logged_in_again:
                    raise
                logged_in_again = True
                await self._authenticate()
            except OdooTransientError as exc:
                failures += 1
                if failures >= self.retry.attempts or not (safe or exc.rolled_back):
                    raise
                delay = self.retry.delay(failures)
                if exc.retry_after is not None:
                    if exc.retry_after > self.retry.max_delay:
                        raise
                    delay = max(delay, exc.retry_after)
                log.info("%s failed (%s); try %d in %.2fs", what, exc.detail, failures + 1, delay)
                await asyncio.sleep(delay)

    async def _once(
        self,
        model: str,
        method: str,
        args: list[Any],
        kwargs: dict[str, Any],
        ids: Sequence[int] | None,
        what: str,
    ) -> Any:
        if self.protocol == "json2":
            params = dict(kwargs)
            if ids is not None:
                params["ids"] = list(ids)
            if args:
                names = _ORM_PARAMS.get(method) or await self._method_params(model, method)
                if len(args) > len(names):
                    raise OdooServerError(
                        f"{what}: {len(args)} positional arguments, JSON-2 knows {len(names)} "
                        f"names ({', '.join(names) or 'none'}): pass them by name"
                    )
                params.update(zip(names, args, strict=False))
            return await self._json2(model, method, params, what=what)
        call_args: list[Any] = [list(ids), *args] if ids is not None else args
        rpc_args = [self.db, self.uid, self._secret, model, method, call_args, kwargs]
        if self.protocol == "xmlrpc":
            return await self._xmlrpc("object", "execute_kw", rpc_args, what=what)
        params = {"service": "object", "method": "execute_kw", "args": rpc_args}
        return await self._jsonrpc("/jsonrpc", params, what=what)

    async def _method_params(self, model: str, method: str) -> tuple[str, ...]:
        """Parameter names of ``method`` from Odoo 19's ``/doc-bearer/<model>.json``."""
        known = self._doc_params.get(model)
        if known is None:
            headers = self._bearer()
            status, hdrs, body = await self._http(
                "GET", f"/doc-bearer/{model}.json", None, headers, what=f"{model} doc"
            )
            doc = parse_json2(status, hdrs, body, what=f"/doc-bearer/{model}.json")
            methods = doc.get("methods") if isinstance(doc, dict) else None
            known = {
                name: tuple(spec.get("parameters") or ())
                for name, spec in (methods or {}).items()
                if isinstance(spec, dict)
            }
            self._doc_params[model] = known
        return known.get(method, ())

    def _bearer(self) -> dict[str, str]:
        return {
            "Authorization": f"bearer {self._api_key}",
            "X-Odoo-Database": self.db,
        }

    async def _json2(self, model: str, method: str, params: Mapping[str, Any], *, what: str) -> Any:
        headers = {"Content-Type": "application/json", **self._bearer()}
        status, hdrs, body = await self._http(
            "POST", f"/json/2/{model}/{method}", json2_body(params), headers, what=what
        )
        return parse_json2(status, hdrs, body, what=what)

    async def _jsonrpc(self, path: str, params: Mapping[str, Any], *, what: str) -> Any:
        data = jsonrpc_body(params, next(self._ids))
        headers = {"Content-Type": "application/json"}
        status, hdrs, body = await self._http("POST", path, data, headers, what=what)
        return parse_jsonrpc(status, hdrs, body, what=what)

    async def _xmlrpc(self, service: str, method: str, args: list[Any], *, what: str) -> Any:
        data = xmlrpc_body(method, args)
        headers = {"Content-Type": "text/xml"}
        status, hdrs, body = await self._http(
            "POST", f"/xmlrpc/2/{service}", data, headers, what=what
        )
        return parse_xmlrpc(status, hdrs, body, what=what)

    async def _http(
        self, verb: str, path: str, data: bytes | None, headers: Mapping[str, str], *, what: str
    ) -> tuple[int, Mapping[str, str], bytes]:
        """One HTTP exchange under the concurrency cap; aiohttp's errors translated here."""
        if self._session is None:
            raise OdooUnavailable(
                f"{what}: the client is closed (open() it first)", rolled_back=True
            )
        async with self._slots:
            self.requests += 1
            try:
                async with self._session.request(
                    verb, self.url + path, data=data, headers=headers, allow_redirects=False
                ) as response:
                    body = await read_capped(
                        response.content.iter_any(), response.content_length,
                        status=response.status, what=what, limit=self.max_response_bytes,
                    )  # fmt: skip
                    return response.status, response.headers, body
            except aiohttp.ConnectionTimeoutError as exc:
                raise OdooUnavailable(
                    f"{what}: cannot connect to {self.host} within {self.timeout:g}s",
                    rolled_back=True,
                ) from exc
            except TimeoutError as exc:
                raise OdooTimeout(f"{what}: no answer from Odoo within {self.timeout:g}s") from exc
            except aiohttp.ClientConnectorError as exc:
                # Refused or unresolvable: the request never left, so nothing ran.
                raise OdooUnavailable(
                    f"{what}: cannot connect to {self.host}: {exc.os_error or exc}",
                    rolled_back=True,
                ) from exc
            except aiohttp.ClientError as exc:
                # Cut after sending: Odoo may or may not have committed the call.
                raise OdooUnavailable(f"{what}: {type(exc).__name__}: {exc}") from exc

    # --- typed helpers --------------------------------------------------------------------

    async def search(
        self,
        model: str,
        domain: Sequence[Any] = (),
        *,
        offset: int = 0,
        limit: int | None = None,
        order: str | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> list[int]:
        kwargs = _named(offset=offset or None, limit=limit, order=order, context=context)
        return list(await self.execute(model, "search", [list(domain)], kwargs))

    async def search_count(
        self, model: str, domain: Sequence[Any] = (), *, context: Mapping[str, Any] | None = None
    ) -> int:
        return int(
            await self.execute(model, "search_count", [list(domain)], _named(context=context))
        )

    async def search_read(
        self,
        model: str,
        domain: Sequence[Any] = (),
        fields: Sequence[str] | None = None,
        *,
        offset: int = 0,
        limit: int | None = None,
        order: str | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        kwargs = _named(
            fields=list(fields) if fields is not None else None,
            offset=offset or None,
            limit=limit,
            order=order,
            context=context,
        )
        return list(await self.execute(model, "search_read", [list(domain)], kwargs))

    async def read(
        self,
        model: str,
        ids: Sequence[int],
        fields: Sequence[str] | None = None,
        *,
        context: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        kwargs = _named(fields=list(fields) if fields is not None else None, context=context)
        return list(await self.execute(model, "read", [], kwargs, ids=list(ids)))

    @overload
    async def create(
        self, model: str, vals: Mapping[str, Any], *, context: Mapping[str, Any] | None = None
    ) -> int: ...
    @overload
    async def create(
        self,
        model: str,
        vals: Sequence[Mapping[str, Any]],
        *,
        context: Mapping[str, Any] | None = None,
    ) -> list[int]: ...
    async def create(
        self,
        model: str,
        vals: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        *,
        context: Mapping[str, Any] | None = None,
    ) -> int | list[int]:
        """One record (``dict`` -> id) or many in one call (list -> ids). Not retried once
        sent: a second create would make a second record (use ``upsert`` for that)."""
        single = isinstance(vals, Mapping)
        payload = [dict(vals)] if isinstance(vals, Mapping) else [dict(v) for v in vals]
        result = await self.execute(model, "create", [payload], _named(context=context))
        ids = [int(i) for i in result] if isinstance(result, list) else [int(result)]
        return ids[0] if single else ids

    async def write(
        self,
        model: str,
        ids: Sequence[int],
        vals: Mapping[str, Any],
        *,
        context: Mapping[str, Any] | None = None,
    ) -> bool:
        idempotent = write_is_idempotent(vals)
        kwargs = _named(context=context)
        return bool(
            await self.execute(
                model, "write", [dict(vals)], kwargs, ids=list(ids), idempotent=idempotent
            )
        )

    async def unlink(
        self, model: str, ids: Sequence[int], *, context: Mapping[str, Any] | None = None
    ) -> bool:
        return bool(await self.execute(model, "unlink", [], _named(context=context), ids=list(ids)))

    async def fields_get(
        self,
        model: str,
        fields: Sequence[str] | None = None,
        attributes: Sequence[str] | None = None,
        *,
        context: Mapping[str, Any] | None = None,
    ) -> dict[str, dict[str, Any]]:
        kwargs = _named(
            allfields=list(fields) if fields is not None else None,
            attributes=list(attributes) if attributes is not None else None,
            context=context,
        )
        return dict(await self.execute(model, "fields_get", [], kwargs))

    async def name_search(
        self,
        model: str,
        name: str = "",
        domain: Sequence[Any] = (),
        *,
        operator: str = "ilike",
        limit: int = 100,
        context: Mapping[str, Any] | None = None,
    ) -> list[tuple[int, str]]:
        # The domain's keyword is ``args`` up to 17 and ``domain`` from 18; the order of the
        # four arguments never changed, so they travel by position (JSON-2 maps them to names).
        args = [name, list(domain), operator, limit]
        answer = await self.execute(model, "name_search", args, _named(context=context))
        return [(int(pair[0]), str(pair[1])) for pair in answer]

    async def field_types(self, model: str) -> dict[str, str]:
        """``{field: type}`` of a model, read once per client (``fields_get``)."""
        types = self._field_types.get(model)
        if types is None:
            described = await self.fields_get(model, attributes=["type"])
            types = {name: str(spec.get("type")) for name, spec in described.items()}
            self._field_types[model] = types
        return types


def _named(**kwargs: Any) -> dict[str, Any]:
    """Keyword arguments for Odoo without the ones left at their default (``None``)."""
    return {key: value for key, value in kwargs.items() if value is not None}
