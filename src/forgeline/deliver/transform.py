"""What a subscription does to an event before its sink sees it: the ownership check, then
the mapping (the "map" of a flow).

Both run at delivery, per target, on the event as the log holds it, so a fixed mapping file
or ownership rule applies to a replay without re-publishing anything, and a target whose
mapping fails is dead-lettered alone while the flow's other targets go on.

* Ownership: when a rule governs the entity the subscription changes (its ``entity``, else
  the catalog's for the event type), the system the event came from (``Origins``) must own
  it. Otherwise the change is not applied: a ``masterdata.change.quarantined.v1`` event
  records it (one per refused event, however many targets refuse it), and the delivery is
  dead with the reason, to be replayed once the rule or the owner is sorted out.
* Mapping: its result is the data the sink sees; a document that does not fit (a missing
  field, an unknown status word, a missing cross-reference) is a permanent failure naming the
  field and the path. A mapping file that cannot be read right now is a transient one, so
  fixing the file lets the retries through.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ..canonical import CATALOG
from ..envelope import Event
from ..exceptions import ConfigError, PermanentDeliveryError, TransientDeliveryError
from ..mapping import CrossReference, MappingError
from ..mapping.cache import compiled_mapping
from ..origins import Origins
from ..ownership.quarantine import quarantine_event
from ..ownership.registry import Change, OwnershipConflict, OwnershipRegistry
from ..route.subscription import SubscriptionSpec

__all__ = ["Transform"]

Publish = Callable[[Sequence[Event]], Awaitable[Any]]


class Transform:
    def __init__(
        self,
        *,
        ownership: OwnershipRegistry,
        origins: Origins,
        xref: CrossReference | None,
        publish: Publish,
    ) -> None:
        self.ownership = ownership
        self.origins = origins
        self.xref = xref
        self._publish = publish

    def origin_of(self, event: Event) -> str | None:
        """The system ``event`` came from: its ``origin`` extension when the hub derived it
        from another event (a flow's ``publish``; the events API refuses the extension from
        anyone else), else the system whose origins match its source."""
        origin = event.extensions.get("origin")
        return str(origin) if origin is not None else self.origins.system_of(event.source)

    def applies(self, spec: SubscriptionSpec) -> bool:
        """Whether ``apply`` can change or refuse an event of ``spec``'s (else: skip it)."""
        return spec.map is not None or bool(len(self.ownership))

    async def apply(self, spec: SubscriptionSpec, event: Event) -> Event:
        """The event as ``spec``'s sink is to see it; raises a ``DeliveryError`` instead."""
        if len(self.ownership):
            await self._check_owner(spec, event)
        if spec.map is None:
            return event
        try:
            mapping = compiled_mapping(spec.map)
        except ConfigError as exc:
            raise TransientDeliveryError(f"mapping: {exc.detail}") from None
        try:
            data = mapping(event.to_dict(), xref=self.xref)
        except MappingError as exc:
            raise PermanentDeliveryError(f"mapping {mapping.name!r}: {exc.detail}") from None
        return dataclasses.replace(
            event, data=data, datacontenttype="application/json", data_base64=None
        )

    async def _check_owner(self, spec: SubscriptionSpec, event: Event) -> None:
        entity = spec.entity
        if entity is None:
            known = CATALOG.get(event.type)
            entity = known.entity if known is not None else None
        if entity is None:
            return
        # No configured system claims the source: it cannot be an owner, whatever it is
        # called (a source spelled like the owner's name proves nothing).
        system = self.origin_of(event) or f"{event.source} (no configured system)"
        change = Change.from_event(event, system=system, entity=entity)
        try:
            self.ownership.check(change)
        except OwnershipConflict as conflict:
            await self._publish([quarantine_event(change, conflict)])
            raise PermanentDeliveryError(f"quarantined: {conflict.detail}") from None
