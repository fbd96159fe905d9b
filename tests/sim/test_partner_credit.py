"""What account and sale add to res.partner in the simulator, as Odoo computes them: the
receivable and payable totals of the commercial partner, the credit limit switch and its
inverse, the company's credit limit setting, and the sales warning (16-18 only)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from forgeline.sim.odoo import OdooSimulator

DB = "demo"
ADMIN = 2


@pytest.fixture(params=[16, 17, 18, 19], ids=lambda v: f"odoo{v}")
def sim(request: pytest.FixtureRequest) -> Iterator[OdooSimulator]:
    simulator = OdooSimulator(int(request.param))
    yield simulator
    simulator.close()


def call(sim: OdooSimulator, model: str, method: str, *args: Any, **kwargs: Any) -> Any:
    return sim.execute_kw(DB, ADMIN, model, method, list(args), dict(kwargs))


def partner(sim: OdooSimulator, **values: Any) -> int:
    return int(
        call(sim, "res.partner", "create", [{"name": "Acme", "is_company": True, **values}])[0]
    )


def read(sim: OdooSimulator, rid: int, *names: str) -> dict[str, Any]:
    [row] = call(sim, "res.partner", "read", [rid], list(names))
    return dict(row)


def move(sim: OdooSimulator, kind: str, to: int, amount: float, *, post: bool = True) -> int:
    [rid] = call(
        sim,
        "account.move",
        "create",
        [
            {
                "move_type": kind,
                "partner_id": to,
                "invoice_date": "2026-11-27",
                "invoice_line_ids": [(0, 0, {"name": "x", "quantity": 1, "price_unit": amount})],
            }
        ],
    )
    if post:
        call(sim, "account.move", "action_post", [rid])
    return int(rid)


def test_credit_is_what_the_commercial_partner_owes_on_posted_invoices(
    sim: OdooSimulator,
) -> None:
    company = partner(sim)
    contact = partner(sim, name="Buyer", is_company=False, parent_id=company)
    move(sim, "out_invoice", company, 300.0)
    move(sim, "out_invoice", contact, 200.0)  # the contact's invoice is on the company's books
    move(sim, "out_refund", company, 50.0)
    move(sim, "out_invoice", company, 1_000.0, post=False)  # a draft owes nothing
    move(sim, "in_invoice", company, 80.0)  # a vendor bill is payable, not receivable
    assert read(sim, company, "credit", "debit") == {"id": company, "credit": 450.0, "debit": 80.0}
    assert read(sim, contact, "credit", "commercial_partner_id") == {
        "id": contact,
        "credit": 0.0,
        "commercial_partner_id": [company, "Acme"],
    }
    [found] = call(sim, "res.partner", "search_read", [("id", "=", company)], ["currency_id"])
    assert found["currency_id"][1] == "EUR"


def test_use_partner_credit_limit_follows_the_limit_and_resets_it_when_turned_off(
    sim: OdooSimulator,
) -> None:
    customer = partner(sim)
    assert read(sim, customer, "use_partner_credit_limit")["use_partner_credit_limit"] is False
    call(sim, "res.partner", "write", [customer], {"credit_limit": 500.0})
    assert read(sim, customer, "use_partner_credit_limit")["use_partner_credit_limit"] is True
    # Odoo's inverse: turning the switch off puts the company's default back.
    call(sim, "res.partner", "write", [customer], {"use_partner_credit_limit": False})
    assert read(sim, customer, "credit_limit", "use_partner_credit_limit") == {
        "id": customer,
        "credit_limit": 0.0,
        "use_partner_credit_limit": False,
    }
    # Turning it on changes nothing until a limit is written.
    call(sim, "res.partner", "write", [customer], {"use_partner_credit_limit": True})
    assert read(sim, customer, "credit_limit")["credit_limit"] == 0.0
    created = partner(sim, credit_limit=9.0, use_partner_credit_limit=False)
    assert read(sim, created, "credit_limit")["credit_limit"] == 0.0


def test_the_company_setting_turns_credit_limits_on(sim: OdooSimulator) -> None:
    customer = partner(sim)
    assert read(sim, customer, "show_credit_limit")["show_credit_limit"] is False
    [company] = call(sim, "res.company", "search", [])
    call(
        sim,
        "res.company",
        "write",
        [company],
        {"account_use_credit_limit": True, "account_default_credit_limit": 250.0},
    )
    assert read(sim, customer, "show_credit_limit", "use_partner_credit_limit") == {
        "id": customer,
        "show_credit_limit": True,
        "use_partner_credit_limit": True,  # 0.0 differs from the new default
    }


def test_the_blocking_sales_warning_exists_up_to_18(sim: OdooSimulator) -> None:
    fields = call(sim, "res.partner", "fields_get", attributes=["type", "selection"])
    assert fields["sale_warn_msg"]["type"] == "text"
    assert fields["credit"]["type"] == "monetary"
    if sim.version <= 18:
        assert [key for key, _ in fields["sale_warn"]["selection"]] == [
            "no-message",
            "warning",
            "block",
        ]
        customer = partner(sim, sale_warn="block", sale_warn_msg="Unpaid since March")
        assert read(sim, customer, "sale_warn")["sale_warn"] == "block"
    else:
        assert "sale_warn" not in fields  # 18.3 made sales warnings non-blocking
