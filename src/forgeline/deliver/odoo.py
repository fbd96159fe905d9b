"""The Odoo sink on the deliver stage: one event becomes one idempotent effect in Odoo.

The dispatcher hands over an event and the subscription's :class:`OdooTarget`; values are
read from the event by path, the connector does the call. Failures arrive already classified
by the connector (business errors are permanent and carry Odoo's message into the dead
letter; network trouble, 5xx and lock errors are transient), so the dispatcher's retry
schedule applies unchanged.

Redelivery is the normal case under at-least-once (a lost answer, a worker crash), so the
actions are made safe to repeat: ``upsert`` goes through the external id; ``action`` skips
records already in one of the target's ``done_states``. ``call`` is at-least-once as it
stands: after a lost answer the method runs again, so point it at methods that are safe to
repeat (or use ``action`` with ``done_states``). Values that select records (``find``,
``external_id``) must be present and single: a null would select every record whose field is
empty. ``values`` are written before the
method runs, in their own call (as Odoo's form would save them): when Odoo then refuses the
method, they stay, and writing them again on a replay is harmless.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from ..connections import Connections
from ..envelope import Event
from ..exceptions import Conflict, PermanentDeliveryError
from ..route.subscription import OdooTarget
from .paths import event_path

if TYPE_CHECKING:
    from ..connectors.odoo import OdooClient

__all__ = ["deliver_to_odoo", "event_path"]


def _values(document: dict[str, Any], mapping: dict[str, Any]) -> dict[str, Any]:
    return {
        field: source["const"] if isinstance(source, dict) else event_path(document, source)
        for field, source in mapping.items()
    }


def _key(document: dict[str, Any], path: str) -> str | int | float:
    """A value that selects records: present, a single scalar, not empty. A null here would
    become ``= False`` in Odoo and select every record whose field is empty."""
    value = event_path(document, path)
    if value is None or value is False or value == "" or isinstance(value, (dict, list)):
        raise PermanentDeliveryError(f"{path!r} is {value!r}: not a value that selects a record")
    return value  # type: ignore[no-any-return]


class Binder(Protocol):
    """Where an upsert's ``xref`` binding goes: the hub's cross-reference."""

    async def bind(
        self, system: str, entity: str, external_id: str, canonical_id: str | None = None
    ) -> str: ...


async def deliver_to_odoo(
    connections: Connections, target: OdooTarget, event: Event, *, xref: Binder | None = None
) -> None:
    from ..connectors.odoo import OdooAuthError

    client = await connections.odoo(target.system)
    try:
        await _deliver(client, target, event, xref)
    except OdooAuthError:
        # Expired or rotated credentials: the next delivery logs in with what the secret
        # reference holds then, without a restart.
        await connections.forget(target.system)
        raise


async def _deliver(
    client: OdooClient, target: OdooTarget, event: Event, xref: Binder | None
) -> None:
    from ..connectors.odoo import call_action, upsert

    document = event.to_dict()
    if target.action == "upsert":
        assert target.external_id is not None  # the spec's validator guarantees it
        external_id = str(_key(document, target.external_id))
        values = _values(document, target.values) if target.values else event.data
        if not isinstance(values, dict):
            raise PermanentDeliveryError("an upsert needs values: the event data is not an object")
        record = await upsert(client, target.model, external_id, values)
        if target.xref is not None:
            await _bind(xref, target, document, record)
        return
    assert target.method is not None
    domain: list[Any] = [
        (field, "=", source["const"] if isinstance(source, dict) else _key(document, source))
        for field, source in target.find.items()
    ]
    if target.action == "call":
        ids = await client.search(target.model, domain) if target.find else None
        if target.find and not ids:
            raise PermanentDeliveryError(f"no {target.model} record matches {domain}")
        kwargs = _values(document, target.kwargs)
        await client.call(target.model, target.method, ids=ids, **kwargs)
        return
    pending = [*domain, ("state", "not in", target.done_states)] if target.done_states else domain
    ids = await client.search(target.model, pending)
    if not ids:
        if target.done_states and await client.search_count(target.model, domain):
            return  # already done: this is a redelivery of an effect that happened
        raise PermanentDeliveryError(f"no {target.model} record matches {domain}")
    if target.values:
        await client.write(target.model, ids, _values(document, target.values))
    await call_action(client, target.model, target.method, ids, backorder=target.backorder)


async def _bind(
    xref: Binder | None, target: OdooTarget, document: dict[str, Any], record: int
) -> None:
    """Bind the upserted record's id to the canonical id. After the upsert, so a lost answer
    retried binds the same id again (idempotent); a record already bound to another canonical
    id is a conflict a person must resolve, not something to retry."""
    assert target.xref is not None
    if xref is None:
        raise PermanentDeliveryError("this hub has no cross-reference to bind the record in")
    canonical = str(_key(document, target.xref.canonical))
    try:
        await xref.bind(target.system, target.xref.entity, str(record), canonical)
    except Conflict as exc:
        raise PermanentDeliveryError(f"cross-reference: {exc.detail}") from None
