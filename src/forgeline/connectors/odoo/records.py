"""Record-level work on top of :class:`~.client.OdooClient`: idempotent writes and batches.

On the data path this is what a sink does to Odoo (``upsert``, ``call_action``) and how
bulk data leaves it (``iter_search_read``, ``import_records``):

* ``upsert`` goes through Odoo's import method ``load`` with an ``id`` column (external id
  ``forgeline.<key>``): Odoo creates the record and its ``ir.model.data`` row in the same
  transaction, and re-loading an existing external id updates that record. So a retried
  upsert - even one whose first answer was lost after Odoo committed - never makes a second
  record, and the client may retry it freely.
* ``call_action`` runs a business method and completes the wizard it may return
  (backorders) the way Odoo 17+'s own wizards do: by calling again with their context.
* ``iter_search_read`` pages by id (keyset), not by offset: records created while an import
  runs are neither skipped nor read twice, and each page costs one call.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Literal

from .errors import OdooBusinessError, OdooConflict
from .transports import is_conflict

if TYPE_CHECKING:
    from .client import OdooClient

__all__ = [
    "Binder",
    "ImportProgress",
    "ImportResult",
    "call_action",
    "create_many",
    "external_id",
    "import_records",
    "iter_search_read",
    "resolve",
    "upsert",
    "write_chunked",
]

Backorder = Literal["no", "yes", "fail"]
ProgressCallback = Callable[[int, int | None], Awaitable[None] | None]

#: Module part of the external ids Forgeline creates in Odoo (``forgeline.<key>``).
MODULE = "forgeline"
# Field types ``load`` converts from text; the others are written after the load.
_LOADABLE = frozenset(
    {"char", "text", "html", "integer", "float", "monetary", "boolean", "date", "datetime",
     "selection"}
)  # fmt: skip
_X2MANY = frozenset({"one2many", "many2many"})
_NAME_SAFE = re.compile(r"[^A-Za-z0-9_]")
# Wizards a business method may return instead of doing the work, and the context under
# which Odoo 17+'s wizard itself calls the method again ("no" = no backorder, "yes" = create).
_BACKORDER_WIZARDS: dict[str, Callable[[list[int], bool], dict[str, Any]]] = {
    "stock.backorder.confirmation": lambda ids, keep: (
        {"skip_backorder": True}
        if keep
        else {"skip_backorder": True, "picking_ids_not_to_backorder": ids}
    ),
    "mrp.production.backorder": lambda ids, keep: (
        {"skip_backorder": True, "mo_ids_to_backorder": ids} if keep else {"skip_backorder": True}
    ),
}


def external_id(key: str, module: str = MODULE) -> str:
    """``forgeline.<key>``: the key made a valid external-id name. Keys with other characters
    than letters, digits and ``_`` get a digest suffix, so two keys never share a name."""
    name = _NAME_SAFE.sub("_", key)
    if name != key:
        name = f"{name}_{hashlib.sha1(key.encode()).hexdigest()[:10]}"  # noqa: S324  # a name, not a secret
    return f"{module}.{name}"


class Binder:
    """External id <-> Odoo id (the OCA connector's "binder"), an LRU cache in this process.
    Cached entries save the ``ir.model.data`` lookup of :func:`resolve`."""

    def __init__(self, maxsize: int = 10_000) -> None:
        self.maxsize = maxsize
        self._ids: OrderedDict[str, tuple[str, int]] = OrderedDict()

    def get(self, xmlid: str) -> tuple[str, int] | None:
        found = self._ids.get(xmlid)
        if found is not None:
            self._ids.move_to_end(xmlid)
        return found

    def remember(self, xmlid: str, model: str, res_id: int) -> None:
        self._ids[xmlid] = (model, res_id)
        self._ids.move_to_end(xmlid)
        while len(self._ids) > self.maxsize:
            self._ids.popitem(last=False)

    def forget(self, xmlid: str) -> None:
        self._ids.pop(xmlid, None)

    def __len__(self) -> int:
        return len(self._ids)


async def resolve(client: OdooClient, key: str, *, module: str = MODULE) -> int | None:
    """The Odoo id behind the external id of ``key``: from the cache, else ``ir.model.data``."""
    xmlid = external_id(key, module)
    cached = client.binder.get(xmlid)
    if cached is not None:
        return cached[1]
    mod, _, name = xmlid.partition(".")
    rows = await client.search_read(
        "ir.model.data", [("module", "=", mod), ("name", "=", name)], ["model", "res_id"], limit=1
    )
    if not rows:
        return None
    client.binder.remember(xmlid, str(rows[0]["model"]), int(rows[0]["res_id"]))
    return int(rows[0]["res_id"])


async def upsert(
    client: OdooClient,
    model: str,
    key: str,
    vals: Mapping[str, Any],
    *,
    module: str = MODULE,
    context: Mapping[str, Any] | None = None,
) -> int:
    """Create or update the ``model`` record whose external id is ``forgeline.<key>``; its id.

    Plain fields and many2ones (an id, or ``[id, name]`` as ``read`` returns it) go through
    ``load``; x2many values are written after it: a list of dicts replaces the lines
    (``(5,0,0)`` then ``(0,0,line)``), a list of ids sets the relation, a list of commands is
    written as given. Safe to repeat: the result is one record with the last values.
    """
    xmlid = external_id(key, module)
    types = await client.field_types(model)
    columns, row = ["id"], [xmlid]
    later: dict[str, Any] = {}
    for field, value in vals.items():
        kind = types.get(field)
        if kind is None:
            raise OdooBusinessError(
                f"{model}: no field {field!r} (upsert of {xmlid})",
                odoo_message=f"no field {field!r}",
            )
        if kind == "many2one":
            columns.append(f"{field}/.id")
            row.append(_many2one_cell(model, field, value))
        elif kind in _X2MANY:
            later[field] = _x2many_commands(value)
        elif kind in _LOADABLE:
            columns.append(field)
            row.append(_cell(kind, value))
        else:
            later[field] = value  # binary, json, reference...: plain write
    # Import converts datetimes from the context's timezone: ours are UTC already.
    ctx = {"tz": "UTC", **(context or {})}
    result = await client.execute(
        model, "load", [columns, [row]], {"context": ctx}, idempotent=True
    )
    ids = result.get("ids") if isinstance(result, dict) else None
    messages = [m for m in (result or {}).get("messages") or [] if isinstance(m, dict)]
    errors = [m for m in messages if m.get("type") == "error"]
    if errors or not ids:
        text = "; ".join(str(m.get("message")) for m in errors) or "load returned no id"
        if is_conflict(text) or "duplicate key value" in text:
            # load() reports a concurrent writer (serialization failure, a unique index hit
            # by a parallel create of the same key) as a row message, rolled back: retry.
            raise OdooConflict(f"{model}.load: {text} (upsert of {xmlid})")
        raise OdooBusinessError(
            f"{model}.load: {text} (upsert of {xmlid})",
            odoo_name="odoo.exceptions.ValidationError",
            odoo_message=text,
        )
    record_id = int(ids[0])
    if later:
        await client.write(model, [record_id], later, context=context)
    client.binder.remember(xmlid, model, record_id)
    return record_id


def _many2one_cell(model: str, field: str, value: Any) -> str:
    if value is None or value is False:
        return ""
    if isinstance(value, list | tuple) and value and isinstance(value[0], int):
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int):
        raise OdooBusinessError(
            f"{model}.{field}: a many2one takes an id, not {value!r}",
            odoo_message=f"{field}: a many2one takes an id",
        )
    return str(value)


def _x2many_commands(value: Any) -> list[Any]:
    if not value:
        return [(5, 0, 0)]
    items = list(value)
    if all(isinstance(item, Mapping) for item in items):
        return [(5, 0, 0), *((0, 0, dict(item)) for item in items)]
    if all(isinstance(item, int) and not isinstance(item, bool) for item in items):
        return [(6, 0, items)]
    return items


def _cell(kind: str, value: Any) -> str:
    """One import cell as Odoo's ``ir.fields.converter`` reads text; empty means False."""
    if value is None or (value is False and kind != "boolean"):
        return ""
    if kind == "boolean":
        return "1" if value else "0"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.strftime("%Y-%m-%d")
    return str(value)


async def call_action(
    client: OdooClient,
    model: str,
    method: str,
    ids: Sequence[int],
    *,
    backorder: Backorder = "no",
    context: Mapping[str, Any] | None = None,
) -> Any:
    """Run a business method (``button_validate``, ``button_mark_done`` ...) and, when it
    answers with a backorder wizard instead of doing the work, complete it: ``"no"`` closes
    without a backorder, ``"yes"`` creates one, ``"fail"`` raises a business error naming the
    wizard. Any other wizard is a business error too: it needs a person's decision."""
    ids = list(ids)
    ctx = dict(context or {})
    result = await client.call(model, method, ids=ids, context=ctx)
    for _ in range(3):  # a completed wizard may lead to another one
        wizard = _wizard_model(result)
        if wizard is None:
            return result
        complete = _BACKORDER_WIZARDS.get(wizard)
        if backorder == "fail" or complete is None:
            raise OdooBusinessError(
                f"{model}.{method} on {ids} needs the wizard {wizard}"
                + ("" if complete is None else " (backorder='fail')"),
                odoo_name="odoo.exceptions.UserError",
                odoo_message=f"wizard {wizard} required",
            )
        ctx = {**ctx, **complete(ids, backorder == "yes")}
        result = await client.call(model, method, ids=ids, context=ctx)
    raise OdooBusinessError(f"{model}.{method} on {ids} keeps answering with wizards")


def _wizard_model(result: Any) -> str | None:
    """The wizard a method answered with instead of doing the work, if any. A wizard opens in
    a dialog (``target: "new"``); an action that merely shows a record - what
    ``button_mark_done`` answers after creating backorders - means the work is done."""
    if (
        isinstance(result, dict)
        and result.get("type") == "ir.actions.act_window"
        and result.get("target") == "new"
    ):
        return str(result.get("res_model") or "?")
    return None


# --- batches --------------------------------------------------------------------------------


async def iter_search_read(
    client: OdooClient,
    model: str,
    domain: Sequence[Any] = (),
    fields: Sequence[str] | None = None,
    *,
    page_size: int = 2000,
    order: Literal["id", "id asc", "id desc"] = "id",
    context: Mapping[str, Any] | None = None,
) -> AsyncIterator[list[dict[str, Any]]]:
    """Pages of ``search_read`` in id order, each after the last id of the previous one.

    The next page is fetched while the caller works on the current one.
    """
    if order not in ("id", "id asc", "id desc"):
        raise ValueError("keyset paging orders by id: order is 'id', 'id asc' or 'id desc'")
    if page_size < 1:
        raise ValueError("page_size must be at least 1")
    descending = order == "id desc"
    base = list(domain)

    async def fetch(after: int | None) -> list[dict[str, Any]]:
        keyset = [] if after is None else [("id", "<" if descending else ">", after)]
        return await client.search_read(
            model, [*base, *keyset], fields, limit=page_size, order=order, context=context
        )

    pending: asyncio.Future[list[dict[str, Any]]] = asyncio.ensure_future(fetch(None))
    try:
        while True:
            page = await pending
            if not page:
                return
            full = len(page) >= page_size
            if full:
                pending = asyncio.ensure_future(fetch(int(page[-1]["id"])))
            yield page
            if not full:
                return
    finally:
        if not pending.done():
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pending


@dataclass(frozen=True, slots=True)
class ImportProgress:
    done: int
    total: int | None
    pages: int


@dataclass(frozen=True, slots=True)
class ImportResult:
    records: int
    pages: int
    requests: int
    seconds: float

    @property
    def records_per_request(self) -> float:
        return self.records / self.requests if self.requests else 0.0


async def import_records(
    client: OdooClient,
    model: str,
    domain: Sequence[Any] = (),
    fields: Sequence[str] | None = None,
    *,
    on_page: Callable[[list[dict[str, Any]], ImportProgress], Awaitable[None] | None] | None = None,
    page_size: int = 2000,
    count: bool = True,
    context: Mapping[str, Any] | None = None,
) -> ImportResult:
    """Read every matching record, page by page, handing each page to ``on_page`` with the
    progress so far (``total`` from one ``search_count`` first, for a progress bar)."""
    started, requests_before = time.perf_counter(), client.requests
    total = await client.search_count(model, domain, context=context) if count else None
    done = pages = 0
    async for page in iter_search_read(
        client, model, domain, fields, page_size=page_size, context=context
    ):
        done += len(page)
        pages += 1
        if on_page is not None:
            await _maybe_await(on_page(page, ImportProgress(done, total, pages)))
    return ImportResult(
        done, pages, client.requests - requests_before, time.perf_counter() - started
    )


async def create_many(
    client: OdooClient,
    model: str,
    vals_list: Sequence[Mapping[str, Any]],
    *,
    chunk: int = 500,
    on_progress: ProgressCallback | None = None,
    context: Mapping[str, Any] | None = None,
) -> list[int]:
    """Create records ``chunk`` at a time (one call each); their ids in order. Not retried
    after a chunk was sent: for writes that must survive retries, use ``upsert``."""
    ids: list[int] = []
    for start in range(0, len(vals_list), chunk):
        ids.extend(
            await client.create(model, list(vals_list[start : start + chunk]), context=context)
        )
        if on_progress is not None:
            await _maybe_await(on_progress(len(ids), len(vals_list)))
    return ids


async def write_chunked(
    client: OdooClient,
    model: str,
    ids: Sequence[int],
    vals: Mapping[str, Any],
    *,
    chunk: int = 1000,
    on_progress: ProgressCallback | None = None,
    context: Mapping[str, Any] | None = None,
) -> None:
    """Write the same ``vals`` to ``ids``, ``chunk`` records per call."""
    done = 0
    for start in range(0, len(ids), chunk):
        part = list(ids[start : start + chunk])
        await client.write(model, part, vals, context=context)
        done += len(part)
        if on_progress is not None:
            await _maybe_await(on_progress(done, len(ids)))


async def _maybe_await(value: Awaitable[None] | None) -> None:
    if inspect.isawaitable(value):
        await value
