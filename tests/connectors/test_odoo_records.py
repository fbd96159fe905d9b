"""Record-level helpers against the simulated Odoo: idempotent upserts (also when Odoo's
answer is lost after it committed), backorder wizards, keyset paging and batches."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from forgeline.connectors.odoo import (
    ImportProgress,
    OdooBusinessError,
    OdooClient,
    call_action,
    create_many,
    external_id,
    import_records,
    iter_search_read,
    resolve,
    upsert,
    write_chunked,
)

from .conftest import recorder

Connect = Callable[..., Any]


async def _by_external_id(client: OdooClient, key: str) -> list[dict[str, Any]]:
    module, _, name = external_id(key).partition(".")
    return await client.search_read(
        "ir.model.data", [("module", "=", module), ("name", "=", name)], ["model", "res_id"]
    )


async def test_upsert_survives_a_lost_answer(odoo: Any, connect: Connect) -> None:
    client = await connect(odoo)
    plan = recorder(odoo)
    await client.field_types("res.partner")  # read once; the fault below hits the load
    plan.paths.clear()
    plan.drop_next()  # Odoo commits the load, then the connection dies unanswered
    vals = {"name": "Acme Ltd", "city": "Lyon", "is_company": True}
    partner_id = await upsert(client, "res.partner", "CUST/0042", vals)
    assert plan.count("") == 2  # the lost load and its retry
    assert await client.search_count("res.partner", [("name", "=", "Acme Ltd")]) == 1
    rows = await _by_external_id(client, "CUST/0042")
    assert rows == [{"id": rows[0]["id"], "model": "res.partner", "res_id": partner_id}]
    # Again with new values (a redelivery of a later event): same record, last values win.
    again = await upsert(client, "res.partner", "CUST/0042", {"name": "Acme SA", "city": False})
    assert again == partner_id
    [record] = await client.read("res.partner", [partner_id], ["name", "city", "is_company"])
    assert (record["name"], record["city"], record["is_company"]) == ("Acme SA", False, True)
    assert await client.search_count("res.partner", [("name", "like", "Acme")]) == 1


async def test_upsert_many2one_and_lines(odoo17: Any, connect: Connect) -> None:
    client = await connect(odoo17)
    parent = await client.create("res.partner", {"name": "Parent Co", "is_company": True})
    vals = {
        "name": "Child",
        "parent_id": [parent, "Parent Co"],  # as read() returns it
        "child_ids": [{"name": "Contact 1"}, {"name": "Contact 2"}],
    }
    child = await upsert(client, "res.partner", "child-1", vals)
    again = await upsert(client, "res.partner", "child-1", vals)  # replayed: replaced, not added
    assert again == child
    [row] = await client.read("res.partner", [child], ["parent_id", "child_ids"])
    assert row["parent_id"][0] == parent
    contacts = await client.read("res.partner", row["child_ids"], ["name"])
    assert sorted(c["name"] for c in contacts) == ["Contact 1", "Contact 2"]
    with pytest.raises(OdooBusinessError, match="no field"):
        await upsert(client, "res.partner", "child-1", {"no_such_field": 1})
    with pytest.raises(OdooBusinessError, match="many2one"):
        await upsert(client, "res.partner", "child-1", {"parent_id": "Parent Co"})


async def test_upsert_reports_import_messages(odoo17: Any, connect: Connect) -> None:
    client = await connect(odoo17)
    with pytest.raises(OdooBusinessError) as caught:
        await upsert(client, "res.partner", "bad-parent", {"name": "X", "parent_id": 987_654})
    assert "987654" in caught.value.detail


async def test_resolve_reads_ir_model_data_once(odoo17: Any, connect: Connect) -> None:
    client = await connect(odoo17)
    partner_id = await upsert(client, "res.partner", "resolve-me", {"name": "Resolved"})
    other = await connect(odoo17)  # a fresh process: empty cache
    plan = recorder(odoo17)
    plan.paths.clear()
    assert await resolve(other, "resolve-me") == partner_id
    assert await resolve(other, "resolve-me") == partner_id
    assert plan.count("") == 1
    assert await resolve(other, "never-loaded") is None


async def _receipt(client: OdooClient, demand: float, done: float) -> int:
    [ptype] = await client.search_read(
        "stock.picking.type",
        [("code", "=", "incoming")],
        ["default_location_src_id", "default_location_dest_id"],
        limit=1,
    )
    src, dest = ptype["default_location_src_id"][0], ptype["default_location_dest_id"][0]
    product = await client.create("product.product", {"name": "Bolt M8"})
    [uom] = await client.read("product.product", [product], ["uom_id"])
    picking = await client.create(
        "stock.picking",
        {
            "picking_type_id": ptype["id"],
            "location_id": src,
            "location_dest_id": dest,
            "move_ids": [
                (0, 0, {
                    "name": "Bolt M8", "product_id": product, "product_uom_qty": demand,
                    "product_uom": uom["uom_id"][0], "location_id": src, "location_dest_id": dest,
                })
            ],
        },
    )  # fmt: skip
    await client.call("stock.picking", "action_confirm", ids=[picking])
    [row] = await client.read("stock.picking", [picking], ["move_ids"])
    await client.write("stock.move", row["move_ids"], {"quantity": done, "picked": True})
    return picking


@pytest.mark.parametrize("backorder", ["no", "yes", "fail"])
async def test_call_action_completes_the_backorder_wizard(
    odoo: Any, connect: Connect, backorder: Any
) -> None:
    client = await connect(odoo)
    picking = await _receipt(client, demand=10, done=4)
    if backorder == "fail":
        with pytest.raises(OdooBusinessError, match=r"stock\.backorder\.confirmation"):
            await call_action(
                client, "stock.picking", "button_validate", [picking], backorder="fail"
            )
        [row] = await client.read("stock.picking", [picking], ["state"])
        assert row["state"] != "done"
        return
    result = await call_action(
        client, "stock.picking", "button_validate", [picking], backorder=backorder
    )
    assert not (isinstance(result, dict) and result.get("res_model"))
    [row] = await client.read("stock.picking", [picking], ["state"])
    assert row["state"] == "done"
    backorders = await client.search("stock.picking", [("backorder_id", "=", picking)])
    assert len(backorders) == (1 if backorder == "yes" else 0)


@pytest.mark.parametrize("backorder", ["no", "yes"])
async def test_call_action_completes_the_production_backorder_wizard(
    odoo: Any, connect: Connect, backorder: Any
) -> None:
    client = await connect(odoo)
    product = await client.create("product.product", {"name": "Widget"})
    mo = await client.create("mrp.production", {"product_id": product, "product_qty": 10})
    await client.call("mrp.production", "action_confirm", ids=[mo])
    await client.write("mrp.production", [mo], {"qty_producing": 4})
    before = await client.search_count("mrp.production", [])
    assert await call_action(
        client, "mrp.production", "button_mark_done", [mo], backorder=backorder
    )
    [row] = await client.read("mrp.production", [mo], ["state", "qty_produced"])
    assert (row["state"], row["qty_produced"]) == ("done", 4.0)
    created = await client.search_count("mrp.production", []) - before
    assert created == (1 if backorder == "yes" else 0)


async def test_keyset_paging_with_inserts_during_the_import(odoo17: Any, connect: Connect) -> None:
    client = await connect(odoo17)
    await create_many(client, "res.partner", [{"name": f"Page {i:03d}"} for i in range(45)])
    domain = [("name", "like", "Page ")]
    seen: list[int] = []
    pages = 0
    async for page in iter_search_read(client, "res.partner", domain, ["name"], page_size=10):
        pages += 1
        seen.extend(r["id"] for r in page)
        if pages == 2:  # records arrive while the import runs
            await client.create("res.partner", [{"name": f"Page late {i}"} for i in range(7)])
    assert len(seen) == len(set(seen)) == 52
    assert seen == sorted(seen)
    assert pages == 6
    backwards = [
        r["id"]
        async for page in iter_search_read(
            client, "res.partner", domain, ["name"], page_size=20, order="id desc"
        )
        for r in page
    ]
    assert backwards == sorted(seen, reverse=True)
    bad_order: Any = "name"
    pages_of_bad_order = iter_search_read(client, "res.partner", order=bad_order)
    with pytest.raises(ValueError, match="keyset"):
        await anext(pages_of_bad_order)


async def test_import_records_reports_progress(odoo17: Any, connect: Connect) -> None:
    client = await connect(odoo17)
    await create_many(client, "res.partner", [{"name": f"Imp {i}"} for i in range(25)], chunk=10)
    plan = recorder(odoo17)
    plan.paths.clear()
    progress: list[ImportProgress] = []

    async def on_page(page: list[dict[str, Any]], step: ImportProgress) -> None:
        assert page
        progress.append(step)

    result = await import_records(
        client, "res.partner", [("name", "like", "Imp ")], ["name"], on_page=on_page, page_size=10
    )
    assert [p.done for p in progress] == [10, 20, 25] and progress[-1].total == 25
    assert (result.records, result.pages, result.requests) == (25, 3, 4)  # count + 3 pages
    assert plan.count("") == 4


async def test_batches_are_chunked(odoo17: Any, connect: Connect) -> None:
    client = await connect(odoo17)
    plan = recorder(odoo17)
    plan.paths.clear()
    steps: list[tuple[int, int | None]] = []
    ids = await create_many(
        client,
        "res.partner",
        [{"name": f"Chunk {i}"} for i in range(23)],
        chunk=10,
        on_progress=lambda done, total: steps.append((done, total)),
    )
    assert len(ids) == 23 and steps == [(10, 23), (20, 23), (23, 23)]
    assert plan.count("") == 3
    await write_chunked(client, "res.partner", ids, {"city": "Nantes"}, chunk=8)
    assert plan.count("") == 6
    assert await client.search_count("res.partner", [("city", "=", "Nantes")]) == 23


class _Answers:
    """A client whose method calls answer from a script: what real Odoo answers that the
    simulator may not (yet)."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.contexts: list[dict[str, Any]] = []

    async def call(self, model: str, method: str, *args: Any, **kwargs: Any) -> Any:
        self.contexts.append(dict(kwargs.get("context") or {}))
        return self.answers.pop(0)


async def test_an_action_that_shows_a_record_is_a_result_not_a_wizard() -> None:
    # Real Odoo's button_mark_done answers, after creating backorders, with an action that
    # opens the backorder (no target "new"): the work is done, nothing to complete.
    shown = {"type": "ir.actions.act_window", "res_model": "mrp.production", "res_id": 7}
    client = _Answers(shown)
    assert await call_action(client, "mrp.production", "button_mark_done", [3]) == shown  # type: ignore[arg-type]
    wizard = {**shown, "res_model": "mrp.production.backorder", "target": "new"}
    client = _Answers(wizard, shown)
    assert await call_action(client, "mrp.production", "button_mark_done", [3]) == shown  # type: ignore[arg-type]
    assert client.contexts[1] == {"skip_backorder": True}  # completed as "no backorder"
