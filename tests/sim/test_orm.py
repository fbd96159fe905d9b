"""The simulated ORM in process: domains, records, x2many commands, read formats, import.

Test models are named ``x_orm.*`` so that they cannot collide with the simulated addons.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from forgeline.sim.odoo import OdooSimulator, fields
from forgeline.sim.odoo.errors import MissingError, UserError, ValidationError
from forgeline.sim.odoo.orm import Model, model_method
from forgeline.sim.odoo.registry import Environment


class Order(Model):
    _name = "x_orm.order"
    _description = "ORM Test Order"
    name = fields.Char(required=True, default=lambda env: env.next_sequence("x_orm", "T"))
    partner_id = fields.Many2one("res.partner", required=True)
    line_ids = fields.One2many("x_orm.line", "order_id")
    tag_ids = fields.Many2many("x_orm.tag")
    state = fields.Selection(
        lambda version: (
            [("draft", "Draft"), ("done", "Done")]
            + ([("locked", "Locked")] if version >= 18 else [])
        ),
        default="draft",
    )
    amount = fields.Float()
    priority = fields.Integer()
    date_order = fields.Datetime()
    total_qty = fields.Float(compute="_compute_total_qty")
    country_code = fields.Char(related="partner_id.country_id.code")
    partner_contacts = fields.One2many("res.partner", related="partner_id.child_ids")
    legacy_ref = fields.Char(until=16)
    modern_flag = fields.Boolean(since=18)
    active = fields.Boolean(default=True)

    def _compute_total_qty(self) -> None:
        for order in self:
            order.total_qty = sum(order.line_ids.mapped("qty"))

    def action_done(self) -> bool:
        self.write({"state": "done"})
        return True

    def action_fail_halfway(self) -> bool:
        self.write({"amount": 999.0})
        raise UserError("no way")


class OrderExtension(Model):
    _inherit = "x_orm.order"
    note = fields.Char()
    state = fields.Selection(selection_add=[("cancel", "Cancelled")])

    def action_done(self) -> bool:
        result = super().action_done()
        self.write({"note": "extended"})
        return result

    @model_method
    def create(self, vals_list: list[dict[str, Any]]) -> Any:
        for vals in vals_list:
            vals.setdefault("note", "created")
        return super().create(vals_list)


class Line(Model):
    _name = "x_orm.line"
    _description = "ORM Test Line"
    order_id = fields.Many2one("x_orm.order", required=True, ondelete="cascade")
    qty = fields.Float()
    product = fields.Char()


class Tag(Model):
    _name = "x_orm.tag"
    _description = "ORM Test Tag"
    name = fields.Char(required=True)
    parent_id = fields.Many2one("x_orm.tag", ondelete="restrict")


@pytest.fixture(scope="module")
def sim() -> Iterator[OdooSimulator]:
    simulator = OdooSimulator(17)
    yield simulator
    simulator.close()


@pytest.fixture
def env(sim: OdooSimulator) -> Iterator[Environment]:
    """A superuser environment in a transaction that is always rolled back."""

    class Rollback(Exception):
        pass

    try:
        with sim.transaction("demo") as environment:
            yield environment
            raise Rollback
    except Rollback:
        pass


def partner(env: Environment, name: str, **vals: Any) -> Any:
    return env["res.partner"].create({"name": name, **vals})


# -- domains -----------------------------------------------------------------------------


@pytest.fixture
def orders(env: Environment) -> dict[str, int]:
    be = env.ref("base.be").id
    fr = env.ref("base.fr").id
    acme = partner(env, "Acme", country_id=be)
    bolt = partner(env, "Bolt_Works", country_id=fr, parent_id=acme.id)
    red = env["x_orm.tag"].create({"name": "red"})
    blue = env["x_orm.tag"].create({"name": "blue", "parent_id": red.id})
    o1 = env["x_orm.order"].create(
        {
            "name": "A1",
            "partner_id": acme.id,
            "amount": 10,
            "priority": 1,
            "date_order": "2024-01-15 10:00:00",
            "tag_ids": [red.id],
            "line_ids": [(0, 0, {"qty": 2, "product": "bolt"})],
        }
    )
    o2 = env["x_orm.order"].create(
        {
            "name": "B2",
            "partner_id": bolt.id,
            "amount": 20,
            "priority": 2,
            "date_order": "2024-02-01 00:00:00",
            "tag_ids": [red.id, blue.id],
            "line_ids": [(0, 0, {"qty": 5, "product": "nut"})],
        }
    )
    o3 = env["x_orm.order"].create({"name": "c3%", "partner_id": acme.id, "amount": 30})
    return {
        "o1": o1.id,
        "o2": o2.id,
        "o3": o3.id,
        "acme": acme.id,
        "bolt": bolt.id,
        "red": red.id,
        "blue": blue.id,
    }


def ids(env: Environment, domain: list[Any], model: str = "x_orm.order") -> set[int]:
    return set(env[model].search(domain).ids)


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        ([("amount", "=", 10)], {"o1"}),
        ([("amount", "!=", 10)], {"o2", "o3"}),
        ([("amount", ">", 10)], {"o2", "o3"}),
        ([("amount", ">=", 20)], {"o2", "o3"}),
        ([("amount", "<", 20)], {"o1"}),
        ([("amount", "<=", 20)], {"o1", "o2"}),
        ([("amount", "in", [10, 30])], {"o1", "o3"}),
        ([("amount", "not in", [10, 30])], {"o2"}),
        ([("name", "like", "1")], {"o1"}),
        ([("name", "like", "a")], set()),  # like is case-sensitive
        ([("name", "ilike", "a")], {"o1"}),
        ([("name", "not ilike", "a")], {"o2", "o3"}),
        ([("name", "not like", "A")], {"o2", "o3"}),
        ([("name", "=like", "A_")], {"o1"}),
        ([("name", "=ilike", "b%")], {"o2"}),
        ([("name", "ilike", "c3%")], {"o3"}),  # % is a wildcard, not a literal
        ([("priority", "=?", False)], {"o1", "o2", "o3"}),
        ([("priority", "=?", 2)], {"o2"}),
        ([("date_order", "=", False)], {"o3"}),
        ([("date_order", "!=", False)], {"o1", "o2"}),
        ([("date_order", ">=", "2024-02-01")], {"o2"}),
        ([("date_order", "<=", "2024-01-15")], {"o1"}),  # a bare date covers the whole day
        (["|", ("amount", "=", 10), ("amount", "=", 30)], {"o1", "o3"}),
        (["!", ("amount", "=", 10)], {"o2", "o3"}),
        (["&", ("amount", ">", 5), "!", ("name", "=", "B2")], {"o1", "o3"}),
        ([("amount", ">", 5), ("amount", "<", 25)], {"o1", "o2"}),
        (["|", "!", ("amount", "=", 10), ("name", "=", "A1")], {"o1", "o2", "o3"}),
    ],
)
def test_scalar_operators(
    env: Environment, orders: dict[str, int], domain: list[Any], expected: set[str]
) -> None:
    assert ids(env, domain) == {orders[k] for k in expected}


def test_id_ranges_page_by_key(env: Environment, orders: dict[str, int]) -> None:
    # Connectors page with [("id", ">", last)]: the key, not a column, is compared.
    every = set(env["x_orm.order"].search([]).ids)
    first, second, third = sorted(every)[:3]
    assert ids(env, [("id", ">", first)]) == every - {first}
    assert ids(env, [("id", ">=", second), ("id", "<", third)]) == {second}
    assert ids(env, [("id", "<=", first)]) == {first}
    assert ids(env, ["!", ("id", ">", first)]) == {first}


def test_relational_operators_and_paths(env: Environment, orders: dict[str, int]) -> None:
    o = orders
    assert ids(env, [("partner_id", "=", o["acme"])]) == {o["o1"], o["o3"]}
    assert ids(env, [("partner_id", "in", [o["bolt"]])]) == {o["o2"]}
    assert ids(env, [("partner_id", "!=", o["acme"])]) == {o["o2"]}
    assert ids(env, [("partner_id", "ilike", "bolt")]) == {o["o2"]}  # name search
    assert ids(env, [("partner_id.country_id.code", "=", "FR")]) == {o["o2"]}
    assert ids(env, [("country_code", "=", "BE")]) == {o["o1"], o["o3"]}  # related field
    assert ids(env, [("line_ids.product", "=", "nut")]) == {o["o2"]}  # x2many path: any line
    assert ids(env, [("line_ids.product", "!=", "nut")]) == {o["o1"], o["o3"]}  # no such line
    assert ids(env, [("line_ids", "=", False)]) == {o["o3"]}
    assert ids(env, [("line_ids", "any", [("qty", ">", 3)])]) == {o["o2"]}
    assert ids(env, [("line_ids", "not any", [("qty", ">", 3)])]) == {o["o1"], o["o3"]}
    assert ids(env, [("tag_ids", "in", [o["blue"]])]) == {o["o2"]}
    assert ids(env, [("tag_ids.name", "=", "red")]) == {o["o1"], o["o2"]}
    assert ids(env, [("tag_ids", "=", False)]) == {o["o3"]}
    assert ids(env, [("partner_id", "child_of", o["acme"])]) == {o["o1"], o["o2"], o["o3"]}
    assert ids(env, [("id", "parent_of", [o["bolt"]])], "res.partner") == {o["acme"], o["bolt"]}
    assert ids(env, [("id", "child_of", [o["red"]])], "x_orm.tag") == {o["red"], o["blue"]}
    assert ids(env, [("id", "in", [o["o1"], 999999])]) == {o["o1"]}


def test_invalid_domains_raise_value_error_like_odoo(env: Environment) -> None:
    orders = env["x_orm.order"]
    with pytest.raises(ValueError, match=r"Invalid field x_orm.order.nope in leaf"):
        orders.search([("nope", "=", 1)])
    with pytest.raises(ValueError, match="Invalid operator"):
        orders.search([("name", "~", 1)])
    with pytest.raises(ValueError, match="Invalid leaf"):
        orders.search(["name"])
    with pytest.raises(ValueError, match="syntactically not correct"):
        orders.search(["|", ("name", "=", "x")])


def test_active_test(env: Environment) -> None:
    archived = partner(env, "Ghost Ltd", active=False)
    partners = env["res.partner"]
    assert archived.id not in partners.search([("name", "=", "Ghost Ltd")]).ids
    assert partners.search([("name", "=", "Ghost Ltd"), ("active", "=", False)]).ids == [
        archived.id
    ]
    everything = partners.with_context(active_test=False).search([("name", "=", "Ghost Ltd")])
    assert everything.ids == [archived.id]
    assert archived.exists()  # hidden from search, not deleted


def test_order_limit_offset(env: Environment, orders: dict[str, int]) -> None:
    found = env["x_orm.order"].search([], order="amount desc", limit=2, offset=1)
    assert found.ids == [orders["o2"], orders["o1"]]
    by_partner = env["x_orm.order"].search([], order="partner_id, name desc")
    assert by_partner.ids == [orders["o3"], orders["o1"], orders["o2"]]  # Acme before Bolt
    with pytest.raises(ValueError, match="Invalid field"):
        env["x_orm.order"].search([], order="bogus")


# -- records -----------------------------------------------------------------------------


def test_inherit_super_create_override_and_compute(
    env: Environment, orders: dict[str, int]
) -> None:
    order = env["x_orm.order"].browse(orders["o1"])
    assert order.note == "created"
    assert order.action_done() is True
    assert (order.state, order.note) == ("done", "extended")
    assert order.total_qty == 2.0
    assert order.partner_id.name == "Acme"
    assert order.line_ids.mapped("product") == ["bolt"]
    assert order.partner_contacts.ids == [orders["bolt"]]  # a related one2many
    assert order.read(["partner_contacts"])[0]["partner_contacts"] == [orders["bolt"]]
    fresh = env["x_orm.order"].create({"partner_id": orders["acme"]})
    assert fresh.name.startswith("T") and fresh.state == "draft"


def test_fields_by_version() -> None:
    old, new = OdooSimulator(16), OdooSimulator(18)
    try:
        assert "legacy_ref" in old.registry["x_orm.order"]._fields
        assert "modern_flag" not in old.registry["x_orm.order"]._fields
        assert "modern_flag" in new.registry["x_orm.order"]._fields
        states = new.execute_kw("demo", 2, "x_orm.order", "fields_get", [["state"]], {})
        assert states["state"]["selection"] == [
            ["draft", "Draft"],
            ["done", "Done"],
            ["locked", "Locked"],
            ["cancel", "Cancelled"],  # selection_add of an extension
        ]
    finally:
        old.close()
        new.close()


def test_read_formats(env: Environment, orders: dict[str, int]) -> None:
    orders_model = env["x_orm.order"]
    records = orders_model.browse([orders["o3"], 999999]).read(
        ["name", "partner_id", "line_ids", "tag_ids", "date_order", "total_qty"]
    )
    assert records == [
        {
            "id": orders["o3"],
            "name": "c3%",
            "partner_id": [orders["acme"], "Acme"],
            "line_ids": [],
            "tag_ids": [],
            "date_order": False,
            "total_qty": 0.0,
        }
    ]
    classic = orders_model.browse(orders["o3"]).read(["partner_id"], load="_classic_write")
    assert classic == [{"id": orders["o3"], "partner_id": orders["acme"]}]
    with pytest.raises(ValueError, match="Invalid field"):
        orders_model.browse(orders["o3"]).read(["nope"])


def test_write_missing_record_raises_odoo_message(env: Environment) -> None:
    with pytest.raises(MissingError) as info:
        env["x_orm.order"].with_user(2).browse([99]).write({"amount": 1})
    assert info.value.message == (
        "Record does not exist or has been deleted.\n(Record: x_orm.order(99,), User: 2)"
    )


def test_create_validation(env: Environment, orders: dict[str, int]) -> None:
    with pytest.raises(ValidationError, match="mandatory field is not set"):
        env["x_orm.order"].create({"name": "x"})
    with pytest.raises(ValueError, match=r"Wrong value for x_orm\.order\.state"):
        env["x_orm.order"].create({"partner_id": orders["acme"], "state": "bogus"})
    with pytest.raises(ValueError, match="Invalid field 'nope'"):
        env["x_orm.order"].create({"partner_id": orders["acme"], "nope": 1})
    with pytest.raises(ValidationError, match="does not exist"):
        env["x_orm.order"].create({"partner_id": 999999})


def test_create_list_and_dates(env: Environment, orders: dict[str, int]) -> None:
    created = env["x_orm.order"].create([{"partner_id": orders["acme"]}] * 3)
    assert len(created) == 3
    assert len(set(created.mapped("name"))) == 3  # callable default per record
    record = created[0]
    assert record.create_date == record.write_date
    # Stored to the microsecond (PostgreSQL's now()), sent to the second.
    assert len(record.create_date) in (19, 26)
    assert len(record.read(["create_date"])[0]["create_date"]) == 19


def test_x2many_commands(env: Environment, orders: dict[str, int]) -> None:
    order = env["x_orm.order"].browse(orders["o2"])
    first_line = order.line_ids.id
    order.write({"line_ids": [(0, 0, {"qty": 1}), (1, first_line, {"qty": 7})]})
    assert sorted(order.line_ids.mapped("qty")) == [1.0, 7.0]
    new_line = (order.line_ids - order.line_ids.browse(first_line)).id
    order.write({"line_ids": [(2, new_line, 0)]})
    assert not env["x_orm.line"].browse(new_line).exists()
    order.write({"line_ids": [(5, 0, 0)]})  # required inverse: detaching deletes
    assert not order.line_ids and not env["x_orm.line"].browse(first_line).exists()

    red, blue = orders["red"], orders["blue"]
    green = env["x_orm.tag"].create({"name": "green"}).id
    order.write({"tag_ids": [(3, red, 0)]})
    assert order.tag_ids.ids == [blue]
    order.write({"tag_ids": [(4, green, 0), (4, green, 0)]})
    assert order.tag_ids.ids == [blue, green]
    order.write({"tag_ids": [(6, 0, [red])]})
    assert order.tag_ids.ids == [red]
    order.write({"tag_ids": [(0, 0, {"name": "new"})]})
    assert order.tag_ids.mapped("name") == ["red", "new"]
    order.write({"tag_ids": [(5, 0, 0)]})
    assert not order.tag_ids
    order.write({"tag_ids": [blue, green]})  # a bare id list replaces
    assert order.tag_ids.ids == [blue, green]
    assert env["x_orm.tag"].browse(red).exists()  # unlinking a m2m link keeps the record


def test_unlink_ondelete(env: Environment, orders: dict[str, int]) -> None:
    order = env["x_orm.order"].browse(orders["o1"])
    line = order.line_ids
    order.unlink()
    assert not line.exists()  # cascade
    with pytest.raises(ValidationError, match="another model requires the record"):
        env["x_orm.tag"].browse(orders["red"]).unlink()  # restrict: blue's parent
    env["x_orm.tag"].browse(orders["blue"]).unlink()
    assert env["x_orm.order"].browse(orders["o2"]).tag_ids.ids == [orders["red"]]
    child = env["res.partner"].browse(orders["bolt"])
    env["x_orm.order"].search([("partner_id", "=", orders["bolt"])]).unlink()
    env["res.partner"].browse(orders["acme"]).write({"active": True})
    env["x_orm.order"].search([("partner_id", "=", orders["acme"])]).unlink()
    env["res.partner"].browse(orders["acme"]).unlink()
    assert child.parent_id.id is False  # set null


def test_copy_name_search_name_create_default_get(env: Environment, orders: dict[str, int]) -> None:
    order = env["x_orm.order"].browse(orders["o2"])
    clone = order.copy({"amount": 1})
    assert clone.partner_id == order.partner_id and clone.tag_ids == order.tag_ids
    assert clone.amount == 1 and not clone.line_ids  # one2many is not copied
    assert env["res.partner"].name_search("bolt_w") == [(orders["bolt"], "Acme, Bolt_Works")]
    new_id, label = env["x_orm.tag"].name_create("violet")
    assert label == "violet" and env["x_orm.tag"].browse(new_id).name == "violet"
    defaults = env["x_orm.order"].with_context(default_amount=5).default_get(["state", "amount"])
    assert defaults == {"state": "draft", "amount": 5}


def test_fields_get(env: Environment) -> None:
    described = env["x_orm.order"].fields_get(
        ["partner_id", "state"], ["type", "relation", "required"]
    )
    assert described["partner_id"] == {
        "type": "many2one",
        "relation": "x_orm.order" and "res.partner",
        "required": True,
    }
    assert described["state"] == {"type": "selection", "required": False}
    full = env["x_orm.order"].fields_get()
    assert full["total_qty"]["store"] is False and full["name"]["searchable"] is True


def test_read_group(env: Environment, orders: dict[str, int]) -> None:
    groups = env["x_orm.order"].read_group([], ["amount:sum"], ["partner_id"])
    assert [(g["partner_id"], g["partner_id_count"], g["amount"]) for g in groups] == [
        ((orders["acme"], "Acme"), 2, 40.0),
        ((orders["bolt"], "Acme, Bolt_Works"), 1, 20.0),
    ]
    assert env["x_orm.order"].search(groups[0]["__domain"]).ids == [orders["o1"], orders["o3"]]
    by_month = env["x_orm.order"].read_group(
        [("date_order", "!=", False)], ["amount"], ["date_order:month", "partner_id"], lazy=False
    )
    assert [(g["date_order:month"], g["__count"], g["amount"]) for g in by_month] == [
        ("January 2024", 1, 10.0),
        ("February 2024", 1, 20.0),
    ]


# -- import --------------------------------------------------------------------------------


def test_load_is_idempotent_by_external_id(env: Environment, orders: dict[str, int]) -> None:
    fields_ = ["id", "name", "partner_id/id", "amount"]
    env["ir.model.data"].create(
        {"module": "test", "name": "acme", "model": "res.partner", "res_id": orders["acme"]}
    )
    first = env["x_orm.order"].load(fields_, [["fl.ext_1", "EXT-1", "test.acme", "12.5"]])
    assert first["messages"] == [] and len(first["ids"]) == 1
    again = env["x_orm.order"].load(fields_, [["fl.ext_1", "EXT-1b", "test.acme", "13"]])
    assert again["ids"] == first["ids"]
    record = env["x_orm.order"].browse(first["ids"][0])
    assert (record.name, record.amount) == ("EXT-1b", 13.0)
    assert env.ref("fl.ext_1") == record
    bare = env["x_orm.order"].load(["id", "partner_id/.id"], [["plain", str(orders["acme"])]])
    assert env.ref("__import__.plain").id == bare["ids"][0]


def test_load_error_writes_nothing(env: Environment, orders: dict[str, int]) -> None:
    before = env["x_orm.order"].search_count([])
    result = env["x_orm.order"].load(
        ["id", "partner_id/.id", "amount"],
        [["ok_row", str(orders["acme"]), "1"], ["bad_row", str(orders["acme"]), "lots"]],
    )
    assert result["ids"] is False
    assert result["messages"][0]["record"] == 1
    assert "does not seem to be a number" in result["messages"][0]["message"]
    assert env["x_orm.order"].search_count([]) == before
    assert env.ref("__import__.ok_row", raise_if_not_found=False) is None


def test_create_and_page_many_rows(env: Environment, orders: dict[str, int]) -> None:
    # Speed is measured in bench/ (bench.odoo_import); here: a large batch pages correctly.
    env["x_orm.line"].create([{"order_id": orders["o3"], "qty": i} for i in range(20_000)])
    every = env["x_orm.line"].search([]).ids
    page = env["x_orm.line"].search_read([], ["order_id", "qty"], offset=10_000, limit=500)
    assert len(page) == 500 and page[0]["order_id"][0] in orders.values()
    assert [row["id"] for row in page] == every[10_000:10_500]
    assert env["x_orm.line"].search_count([("qty", "=", 1234)]) == 1


def test_version_specific_methods_and_rpc_shapes(orders_sim: OdooSimulator) -> None:
    sim = orders_sim
    partner_id = sim.execute_kw("demo", 2, "res.partner", "create", [{"name": "Zed"}], {})
    made = sim.execute_kw("demo", 2, "x_orm.order", "create", [{"partner_id": partner_id}], {})
    assert sim.execute_kw("demo", 2, "x_orm.order", "exists", [[made, 999999]], {}) == [made]
    assert sim.execute_kw("demo", 2, "x_orm.order", "check_access_rights", ["write"], {}) is True
    assert sim.execute_kw(
        "demo", 2, "x_orm.order", "search", [[("id", "=", made)]], {"count": False}
    ) == [made]
    with pytest.raises(TypeError):
        sim.execute_kw("demo", 2, "x_orm.order", "search", [[]], {"count": True})  # gone in 17
    with pytest.raises(AttributeError):
        sim.execute_kw("demo", 2, "x_orm.order", "name_get", [[made]], {})  # gone in 17
    old = OdooSimulator(16)
    try:
        pid = old.execute_kw("demo", 2, "res.partner", "create", [{"name": "Old"}], {})
        assert old.execute_kw("demo", 2, "res.partner", "name_get", [[pid]], {}) == [[pid, "Old"]]
        assert (
            old.execute_kw(
                "demo", 2, "res.partner", "search", [[("id", "=", pid)]], {"count": True}
            )
            == 1
        )
    finally:
        old.close()


@pytest.fixture
def orders_sim() -> Iterator[OdooSimulator]:
    simulator = OdooSimulator(17)
    yield simulator
    simulator.close()


def test_load_many2many_external_ids_and_names(env: Environment, orders: dict[str, int]) -> None:
    for tag in ("red", "blue"):
        env["ir.model.data"].create(
            {"module": "test", "name": f"tag_{tag}", "model": "x_orm.tag", "res_id": orders[tag]}
        )
    result = env["x_orm.order"].load(
        ["id", "partner_id", "tag_ids/id", "state"],
        [["m2m_1", "Acme", "test.tag_red,test.tag_blue", "Done"]],
    )
    assert result["messages"] == []
    record = env["x_orm.order"].browse(result["ids"])
    assert record.partner_id.id == orders["acme"]
    assert sorted(record.tag_ids.ids) == sorted([orders["red"], orders["blue"]])
    assert record.state == "done"  # a selection label is accepted
    unknown = env["x_orm.order"].load(["partner_id/id"], [["test.nobody"]])
    assert unknown["ids"] is False
    assert unknown["messages"][0]["message"] == (
        "No matching record found for external id 'test.nobody' in field 'Partner'"
    )


def test_read_group_order_offset_limit(env: Environment, orders: dict[str, int]) -> None:
    groups = env["x_orm.order"].read_group(
        [], ["amount:max"], ["partner_id"], orderby="amount desc", limit=1
    )
    assert [(g["partner_id"][0], g["amount"]) for g in groups] == [(orders["acme"], 30.0)]
    rest = env["x_orm.order"].read_group([], ["amount:max"], ["partner_id"], offset=1)
    assert [g["partner_id"][0] for g in rest] == [orders["bolt"]]


def test_failed_orm_call_inside_a_transaction_is_undone_alone(
    env: Environment, orders: dict[str, int]
) -> None:
    order = env["x_orm.order"].browse(orders["o1"])
    with pytest.raises(ValidationError):
        order.write({"amount": 77, "partner_id": 999999})
    assert order.amount == 10  # the failed write left nothing behind
    order.write({"amount": 78})  # and the transaction goes on
    assert order.amount == 78
