"""``OdooSimulator`` in process: RPC semantics, credentials, access rights, transactions,
persistence, automations and webhooks."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from forgeline.sim.odoo import OdooSimulator, fields
from forgeline.sim.odoo.errors import AccessDenied, AccessError, UserError
from forgeline.sim.odoo.orm import Model

SETTINGS_ONLY = {"read": ("base.group_user",), "write": ("base.group_system",)}


class Ticket(Model):
    _name = "x_svc.ticket"
    _description = "Service Test Ticket"
    _access = SETTINGS_ONLY
    name = fields.Char(required=True)
    partner_id = fields.Many2one("res.partner")
    state = fields.Selection([("new", "New"), ("done", "Done")], default="new")
    qty = fields.Float()

    def action_close(self) -> bool:
        self.write({"state": "done"})
        return True

    def action_explode(self) -> bool:
        self.write({"qty": 666})
        raise UserError("Boom")


ADMIN = 2


@pytest.fixture
def sim() -> Iterator[OdooSimulator]:
    simulator = OdooSimulator(17)
    yield simulator
    simulator.close()


def call(sim: OdooSimulator, method: str, *args: Any, uid: int = ADMIN, **kwargs: Any) -> Any:
    return sim.execute_kw("demo", uid, "x_svc.ticket", method, list(args), kwargs)


def demo_uid(sim: OdooSimulator) -> int:
    uid = sim.authenticate("demo", "demo", "demo")
    assert uid is not None
    return uid


# -- RPC semantics -------------------------------------------------------------------------


def test_version_info_and_context(sim: OdooSimulator) -> None:
    assert sim.version_info() == {
        "server_version": "17.0",
        "server_version_info": [17, 0, 0, "final", 0, ""],
        "server_serie": "17.0",
        "protocol_version": 1,
    }
    context = sim.execute_kw("demo", ADMIN, "res.users", "context_get", [], {})
    assert context == {"lang": "en_US", "tz": "Europe/Brussels", "uid": ADMIN}
    models = sim.execute_kw(
        "demo",
        ADMIN,
        "ir.model",
        "search_read",
        [[("model", "=", "x_svc.ticket")]],
        {"fields": ["model"]},
    )
    assert [m["model"] for m in models] == ["x_svc.ticket"]


def test_create_returns_int_for_dict_and_list_for_list(sim: OdooSimulator) -> None:
    one = call(sim, "create", {"name": "a"})
    many = call(sim, "create", [{"name": "b"}, {"name": "c"}])
    assert isinstance(one, int) and isinstance(many, list) and len(many) == 2
    assert call(sim, "search", [("name", "in", ["a", "b", "c"])]) == [one, *many]
    assert call(sim, "write", [one], {"qty": 3}) is True
    assert call(sim, "read", [one, 99999], ["qty"]) == [{"id": one, "qty": 3.0}]
    assert call(sim, "action_close", [one]) is True
    assert call(sim, "search_count", [("state", "=", "done")]) == 1
    assert call(sim, "unlink", [one]) is True
    assert call(sim, "read", [one], ["qty"]) == []


def test_rpc_errors(sim: OdooSimulator) -> None:
    with pytest.raises(UserError, match=r"Object x\.nope doesn't exist"):
        sim.execute_kw("demo", ADMIN, "x.nope", "search", [[]], {})
    with pytest.raises(AccessError, match=r"Private methods \(such as _create\)"):
        call(sim, "_create", {"name": "x"})
    with pytest.raises(AttributeError, match="The method 'nope' does not exist"):
        call(sim, "nope", [1])
    with pytest.raises(AttributeError):
        call(sim, "formatted_read_group", [], ["state"])  # Odoo 19 only
    with pytest.raises(TypeError):
        call(sim, "search", [], 0, 10, "id", False, "extra")
    with pytest.raises(AccessDenied):
        sim.execute_kw("demo", 4242, "x_svc.ticket", "search", [[]], {})


def test_context_travels_in_kwargs(sim: OdooSimulator) -> None:
    call(sim, "create", {"name": "ctx"})
    partner = sim.execute_kw(
        "demo", ADMIN, "res.partner", "create", [{"name": "Archived"}], {"context": {}}
    )
    sim.execute_kw("demo", ADMIN, "res.partner", "write", [[partner], {"active": False}], {})
    hidden = sim.execute_kw("demo", ADMIN, "res.partner", "search", [[("id", "=", partner)]], {})
    shown = sim.execute_kw(
        "demo",
        ADMIN,
        "res.partner",
        "search",
        [[("id", "=", partner)]],
        {"context": {"active_test": False}},
    )
    assert (hidden, shown) == ([], [partner])


def test_call_json2_and_describe_model(sim: OdooSimulator) -> None:
    body = {"vals_list": {"name": "j"}}
    created = sim.call_json2("demo", ADMIN, "x_svc.ticket", "create", body)
    assert isinstance(created, list) and len(created) == 1
    rows = sim.call_json2(
        "demo",
        ADMIN,
        "x_svc.ticket",
        "read",
        {"ids": created, "fields": ["name"], "context": {"lang": "en_US"}},
    )
    assert rows == [{"id": created[0], "name": "j"}]
    doc = sim.describe_model("demo", ADMIN, "x_svc.ticket")
    assert list(doc["methods"]["search_read"]["parameters"])[:2] == ["domain", "fields"]
    assert "model" in doc["methods"]["search"]["api"]
    assert doc["methods"]["action_close"]["api"] == []
    assert "_create" not in doc["methods"] and "sudo" not in doc["methods"]
    assert doc["fields"]["state"]["type"] == "selection"


def test_formatted_read_group_on_19() -> None:
    sim = OdooSimulator(19)
    try:
        call(
            sim,
            "create",
            [
                {"name": "a", "qty": 2},
                {"name": "b", "qty": 3, "state": "done"},
                {"name": "c", "qty": 5, "state": "done"},
            ],
        )
        groups = call(sim, "formatted_read_group", [], ["state"], ["qty:sum", "__count"])
        assert [(g["state"], g["qty:sum"], g["__count"]) for g in groups] == [
            ("done", 8.0, 2),
            ("new", 2.0, 1),
        ]
        assert call(sim, "search_count", groups[0]["__extra_domain"]) == 2
    finally:
        sim.close()


# -- credentials and access ------------------------------------------------------------------


def test_authentication_password_and_api_key(sim: OdooSimulator) -> None:
    assert sim.authenticate("demo", "admin", "admin") == ADMIN
    assert sim.authenticate("demo", "admin", "wrong") is None
    assert sim.authenticate("demo", "__system__", "admin") is None
    assert sim.authenticate("nodb", "admin", "admin") is None
    key = sim.create_api_key("demo", ADMIN, "connector")
    assert len(key) == 40 and int(key, 16) >= 0
    assert sim.uid_for_api_key("demo", key) == ADMIN
    assert sim.authenticate("demo", "admin", key) == ADMIN
    assert sim.uid_for_api_key("demo", key[:-1] + ("0" if key[-1] != "0" else "1")) is None
    stored = sim.execute_kw(
        "demo",
        ADMIN,
        "res.users.apikeys",
        "search_read",
        [[]],
        {"fields": ["index", "key", "scope"]},
    )
    assert stored[0]["index"] == key[:8] and key not in stored[0]["key"]
    sim.check_credentials("demo", ADMIN, key)
    with pytest.raises(AccessDenied):
        sim.check_credentials("demo", ADMIN, "nope")
    expired = sim.create_api_key("demo", ADMIN, "old", expiration_date="2000-01-01 00:00:00")
    assert sim.uid_for_api_key("demo", expired) is None


def test_demo_user_reads_but_cannot_write(sim: OdooSimulator) -> None:
    ticket = call(sim, "create", {"name": "t"})
    uid = demo_uid(sim)
    assert call(sim, "read", [ticket], ["name"], uid=uid) == [{"id": ticket, "name": "t"}]
    with pytest.raises(AccessError) as info:
        call(sim, "write", [ticket], {"name": "x"}, uid=uid)
    assert info.value.message.startswith(
        "You are not allowed to modify 'Service Test Ticket' (x_svc.ticket) records."
    )
    assert "Administration / Settings" in info.value.message
    with pytest.raises(AccessError, match="not allowed to create"):
        call(sim, "create", {"name": "y"}, uid=uid)
    with pytest.raises(AccessError, match="not allowed to access"):
        sim.execute_kw("demo", uid, "res.users.apikeys", "search", [[]], {})
    info_ = sim.session_info("demo", uid)
    assert info_["uid"] == uid and info_["is_system"] is False


# -- transactions and persistence ----------------------------------------------------------


def test_failed_call_leaves_nothing_half_written(sim: OdooSimulator) -> None:
    ticket = call(sim, "create", {"name": "t", "qty": 1})
    with pytest.raises(UserError, match="Boom"):
        call(sim, "action_explode", [ticket])
    assert call(sim, "read", [ticket], ["qty"]) == [{"id": ticket, "qty": 1.0}]
    with pytest.raises(ValueError, match="Wrong value"):
        call(sim, "create", [{"name": "ok"}, {"name": "bad", "state": "nope"}])
    assert call(sim, "search_count", [("name", "=", "ok")]) == 0


def test_sqlite_persistence_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "odoo.sqlite"
    first = OdooSimulator(17, path=path)
    ticket = call(first, "create", {"name": "kept", "qty": 4})
    call(first, "create", {"name": "gone"})
    call(first, "unlink", call(first, "search", [("name", "=", "gone")]))
    with pytest.raises(UserError):
        call(first, "action_explode", [ticket])
    key = first.create_api_key("demo", ADMIN, "persisted")
    first.create_database("second", demo=False)
    with first.transaction("demo") as env:
        assert env.next_sequence("x_svc", "T") == "T00001"
    first.close()

    second = OdooSimulator(17, path=path)
    try:
        assert call(second, "search_read", [("name", "in", ["kept", "gone"])], ["name", "qty"]) == [
            {"id": ticket, "name": "kept", "qty": 4.0}
        ]
        assert second.uid_for_api_key("demo", key) == ADMIN
        newer = call(second, "create", {"name": "next"})
        assert newer > ticket  # ids keep growing after a reopen
        assert second.list_databases() == ["demo", "second"]
        assert second.authenticate("second", "admin", "admin") == ADMIN
        assert second.authenticate("second", "demo", "demo") is None  # no demo data there
        with second.transaction("demo") as env:
            assert env.next_sequence("x_svc", "T") == "T00002"  # sequences are persisted
    finally:
        second.close()


def test_write_date_never_goes_backwards() -> None:
    times = iter([dt.datetime(2024, 5, 1, 12, 0, 0), dt.datetime(2024, 5, 1, 11, 0, 0)])
    current = [dt.datetime(2024, 5, 1, 10, 0, 0)]

    def clock() -> dt.datetime:
        return current[0]

    sim = OdooSimulator(17, clock=clock)
    try:
        current[0] = next(times)
        first = call(sim, "create", {"name": "a"})
        current[0] = next(times)  # the clock jumps back an hour
        second = call(sim, "create", {"name": "b"})
        dates = call(sim, "read", [first, second], ["write_date"])
        assert dates[0]["write_date"] == dates[1]["write_date"] == "2024-05-01 12:00:00"
    finally:
        sim.close()


# -- automations ----------------------------------------------------------------------------


def automation(sim: OdooSimulator, **vals: Any) -> int:
    base = {
        "name": "Notify",
        "model_name": "x_svc.ticket",
        "action": "webhook",
        "url": "http://hook.example/odoo",
    }
    result: int = sim.execute_kw("demo", ADMIN, "base.automation", "create", [{**base, **vals}], {})
    return result


def test_webhook_sent_after_commit_only(sim: OdooSimulator) -> None:
    sent: list[tuple[str, dict[str, Any]]] = []

    def sender(url: str, body: bytes) -> None:
        payload = json.loads(body)
        # Sent after the commit: outside any transaction, and what it names is readable.
        assert sim.database("demo").depth == 0
        assert call(sim, "read", [payload["id"]], ["state"])[0]["state"] == payload["state"]
        sent.append((url, payload))

    sim.webhook_sender = sender
    rule = automation(
        sim,
        trigger="on_create_or_write",
        trigger_field_ids=["state"],
        webhook_field_ids=["name", "partner_id", "state"],
    )
    partner = sim.execute_kw("demo", ADMIN, "res.partner", "create", [{"name": "P"}], {})
    ticket = call(sim, "create", {"name": "t", "partner_id": partner})
    assert sent == [
        (
            "http://hook.example/odoo",
            {
                "_action": f"Notify(#{rule})",
                "_id": ticket,
                "_model": "x_svc.ticket",
                "id": ticket,
                "name": "t",
                "partner_id": partner,
                "state": "new",
            },
        )
    ]
    call(sim, "write", [ticket], {"qty": 2})  # not a trigger field
    assert len(sent) == 1
    with pytest.raises(UserError):
        call(sim, "action_explode", [ticket])
    call(sim, "write", [ticket], {"state": "new"})  # unchanged value: no trigger
    assert len(sent) == 1
    call(sim, "action_close", [ticket])
    assert len(sent) == 2 and sent[1][1]["state"] == "done"

    def failing_transaction() -> None:
        with sim.transaction("demo") as env:
            env["x_svc.ticket"].create({"name": "rolled back"})
            env["x_svc.ticket"].create({"name": "x", "state": "bad"})

    with pytest.raises(ValueError, match="Wrong value"):
        failing_transaction()
    assert len(sent) == 2  # nothing sent for a rolled back transaction


def test_webhook_body_is_sorted_json_and_sender_errors_are_contained(sim: OdooSimulator) -> None:
    bodies: list[bytes] = []

    def sender(url: str, body: bytes) -> None:
        bodies.append(body)
        raise ConnectionError("receiver down")

    sim.webhook_sender = sender
    automation(sim, trigger="on_create", webhook_field_ids=["qty"])
    ticket = call(sim, "create", {"name": "t", "qty": 1.5})
    assert ticket and len(bodies) == 1
    assert list(json.loads(bodies[0])) == sorted(json.loads(bodies[0]))
    assert bodies[0].startswith(b'{"_action": "Notify(#')


def test_write_action_and_incoming_webhook(sim: OdooSimulator) -> None:
    automation(
        sim, name="Auto close", trigger="on_create", action="write", write_values={"state": "done"}
    )
    ticket = call(sim, "create", {"name": "t"})
    assert call(sim, "read", [ticket], ["state"])[0]["state"] == "done"

    hook = automation(
        sim, name="Incoming", trigger="on_webhook", action="write", write_values={"qty": 42}
    )
    uuid = sim.execute_kw("demo", ADMIN, "base.automation", "read", [[hook], ["webhook_uuid"]], {})
    sim.run_incoming_webhook(
        None, uuid[0]["webhook_uuid"], {"_model": "x_svc.ticket", "_id": ticket}
    )
    assert call(sim, "read", [ticket], ["qty"])[0]["qty"] == 42.0
    with pytest.raises(KeyError):
        sim.run_incoming_webhook("demo", "no-such-uuid", {})
