"""The deliver stage's Odoo sink (``deliver/odoo.py``) on top of this connector: an event
delivered twice (a lost answer, a redelivery) has one effect, and Odoo's refusals arrive
classified for the dispatcher."""

from __future__ import annotations

from typing import Any

import pytest

from forgeline.connections import Connections
from forgeline.connectors.odoo import OdooBusinessError
from forgeline.deliver.odoo import deliver_to_odoo
from forgeline.envelope import Event
from forgeline.exceptions import PermanentDeliveryError
from forgeline.route.subscription import OdooTarget
from forgeline.systems import OdooSystem

from .conftest import recorder


async def test_upsert_sink_twice_is_one_record(odoo17: Any) -> None:
    system = OdooSystem(url=odoo17.url, db="demo", login="admin", password="admin")
    async with Connections({"erp": system}) as connections:
        target = OdooTarget(
            system="erp",
            model="res.partner",
            action="upsert",
            external_id="subject",
            values={"name": "data.name", "city": "data.city"},
        )
        event = Event.new(
            "customer.updated.v1", "crm/test", {"name": "Sink Co", "city": "Oslo"}, subject="C-9"
        )
        recorder(odoo17).drop_next()  # the first answer is lost after Odoo committed
        await deliver_to_odoo(connections, target, event)
        await deliver_to_odoo(connections, target, event)  # the dispatcher's redelivery
        client = await connections.odoo("erp")
        rows = await client.search_read("res.partner", [("name", "=", "Sink Co")], ["city"])
        assert [r["city"] for r in rows] == ["Oslo"]

        refused = OdooTarget(
            system="erp", model="res.partner", action="call", method="no_such_method"
        )
        with pytest.raises(PermanentDeliveryError):
            await deliver_to_odoo(connections, refused, event)
        bad_upsert = OdooTarget(
            system="erp",
            model="res.partner",
            action="upsert",
            external_id="subject",
            values={"parent_id": "data.city"},  # text where an id belongs
        )
        with pytest.raises(OdooBusinessError):
            await deliver_to_odoo(connections, bad_upsert, event)
