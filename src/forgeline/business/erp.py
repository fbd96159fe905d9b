"""The ERP the business APIs read and write: which Odoo system it is, and the one place where
Odoo's failures become the API's errors.

The system is ``hub.erp`` in the config, or the only ``kind: odoo`` system when that is unset.
Calls go through the hub's pooled ``OdooClient`` (``Connections.odoo``), so the business APIs
share Odoo's few workers with the delivery engine under one concurrency cap.

How a failure reaches the caller (``errors.py``): Odoo unreachable, slow, overloaded, or
refusing the hub's own credentials or rights is ``ErpUnavailable`` (503: nothing the caller
can fix, retry later); Odoo's business rules refusing the request itself (``UserError``,
``ValidationError``) is ``ErpRefused`` (422). Either way the caller reads a summary naming
what was attempted and Odoo's exception class; Odoo's message goes to the hub's log.

What Odoo answers is checked before it is used (``records``, ``number``, ``many2one``): a
proxy's page, a truncated or tampered body, a field of the wrong type is ``ErpUnavailable``
too, never a 500 and never a value passed on unchecked.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ..connectors.odoo.errors import (
    OdooAccessError,
    OdooAuthError,
    OdooBusinessError,
    OdooError,
)
from ..exceptions import ConfigError, DeliveryError, NotFound
from ..systems import OdooSystem, SystemSpec
from .errors import ErpRefused, ErpUnavailable, NoErp

if TYPE_CHECKING:
    from ..connections import Connections
    from ..connectors.odoo import OdooClient

__all__ = ["Erp", "erp_system", "garbled", "many2one", "number", "records"]

log = logging.getLogger("forgeline.business")

T = TypeVar("T")


def erp_system(systems: Mapping[str, SystemSpec], erp: str | None) -> str:
    """The name of the Odoo system the business APIs use; ``NoErp`` saying why there is none."""
    if erp is not None:
        if not isinstance(systems.get(erp), OdooSystem):
            raise NoErp(f"hub.erp names {erp!r}, which is not an Odoo system of the config")
        return erp
    odoo = sorted(name for name, spec in systems.items() if isinstance(spec, OdooSystem))
    if not odoo:
        raise NoErp("no ERP is configured: add an Odoo system under systems: in the config")
    if len(odoo) > 1:
        raise NoErp(
            f"several Odoo systems are configured ({', '.join(odoo)}): set hub.erp to the one"
            " the business APIs use"
        )
    return odoo[0]


class Erp:
    """The business APIs' Odoo: ``await erp.call("read stock", lambda odoo: ...)``."""

    def __init__(self, connections: Connections, erp: str | None) -> None:
        self._connections = connections
        self._erp = erp
        self._fields: dict[str, frozenset[str]] = {}
        self._fields_of: OdooClient | None = None

    @property
    def name(self) -> str:
        return erp_system(self._connections.systems, self._erp)

    async def call(self, doing: str, work: Callable[[OdooClient], Awaitable[T]]) -> T:
        """``work`` on the ERP's client; Odoo's failures translated (see the module).
        ``doing`` completes "cannot ..." in the caller's error: "read stock levels"."""
        name = self.name
        try:
            client = await self._connections.odoo(name)
            return await work(client)
        except OdooBusinessError as exc:
            log.info("Odoo %r refused to %s: %s", name, doing, exc.odoo_message)
            raise ErpRefused(f"Odoo refused to {doing} ({_short(exc.odoo_name)})") from exc
        except OdooAuthError as exc:
            log.error("Odoo %r refused the hub's credentials: %s", name, exc.detail)
            # Rotated credentials: the next call logs in with what the reference holds then.
            await self._connections.forget(name)
            raise ErpUnavailable(f"cannot {doing}: the ERP refused the hub's login") from exc
        except OdooAccessError as exc:
            log.error("Odoo %r denied the hub's user to %s: %s", name, doing, exc.odoo_message)
            raise ErpUnavailable(f"cannot {doing}: the hub's ERP user lacks the right") from exc
        except OdooError as exc:
            log.warning("Odoo %r could not %s: %s", name, doing, exc.detail)
            raise ErpUnavailable(f"cannot {doing}: the ERP is unavailable") from exc
        except (DeliveryError, ConfigError, NotFound) as exc:
            # Opening the connection: unreachable at first use, or a config that cannot work.
            log.warning("cannot reach Odoo %r to %s: %s", name, doing, exc.detail)
            raise ErpUnavailable(f"cannot {doing}: the ERP is unavailable") from exc
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            # The client's own reading of the answer (an id that is not a number...).
            log.error("Odoo %r answered %s with something unusable", name, doing, exc_info=exc)
            raise garbled(doing) from exc

    async def search_read(
        self,
        doing: str,
        model: str,
        domain: Sequence[Any],
        fields: Sequence[str],
        **options: Any,
    ) -> list[dict[str, Any]]:
        """``search_read``, its answer checked to be records."""
        result = await self.call(
            doing, lambda odoo: odoo.search_read(model, domain, fields, **options)
        )
        return records(result, doing)

    async def read(
        self, doing: str, model: str, ids: Sequence[int], fields: Sequence[str]
    ) -> list[dict[str, Any]]:
        """``read``, its answer checked to be records."""
        return records(await self.call(doing, lambda odoo: odoo.read(model, ids, fields)), doing)

    async def client(self) -> OdooClient:
        """The connected client (its ``version`` tells which Odoo answers)."""
        return await self.call("reach the ERP", _client)

    async def fields(self, model: str) -> frozenset[str]:
        """The fields ``model`` has in this database (``fields_get``, once per connection):
        what differs between Odoo versions and installed addons."""
        client = await self.client()
        if client is not self._fields_of:
            self._fields, self._fields_of = {}, client
        known = self._fields.get(model)
        if known is None:
            doing = f"describe {model}"
            described = await self.call(
                doing, lambda odoo: odoo.call(model, "fields_get", attributes=["type"])
            )
            if not isinstance(described, dict):
                raise garbled(doing)
            known = self._fields[model] = frozenset(str(name) for name in described)
        return known


def garbled(doing: str) -> ErpUnavailable:
    return ErpUnavailable(f"cannot {doing}: the ERP answered something unusable")


def records(value: object, doing: str) -> list[dict[str, Any]]:
    """``value`` if it is a list of records (JSON objects with an integer ``id``)."""
    if not isinstance(value, list) or not all(
        isinstance(row, dict) and _is_id(row.get("id")) for row in value
    ):
        raise garbled(doing)
    return value


def number(value: object, doing: str) -> float:
    """A float or integer field's value (Odoo's ``False`` is an empty one: 0)."""
    if value is False:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise garbled(doing)
    return float(value)


def many2one(value: object, doing: str) -> tuple[int, str] | None:
    """A many2one as ``read`` answers it, ``[id, display name]``; None when empty."""
    if value is False or value is None:
        return None
    if (
        isinstance(value, list)
        and len(value) == 2
        and _is_id(value[0])
        and isinstance(value[1], str)
    ):
        return int(value[0]), value[1]
    raise garbled(doing)


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


async def _client(client: OdooClient) -> OdooClient:
    return client


def _short(odoo_name: str | None) -> str:
    """``odoo.exceptions.UserError`` -> ``UserError``."""
    return (odoo_name or "an Odoo error").rsplit(".", 1)[-1]
