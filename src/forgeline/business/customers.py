"""Customer validation for order entry: may we take an order from this customer now?

``GET /v1/customers/{ref}/validation`` finds the partner by its reference in Odoo and answers
in the canonical vocabulary:

- ``account_status``: ``archived`` when the partner (or the company it belongs to) is
  archived; ``blocked`` when Odoo itself refuses it sales orders, i.e. a "Blocking Message"
  sales warning (``sale_warn``, Odoo 16-18; 18.3 made sales warnings non-blocking, so a 19
  database has no blocked customers); else ``active``.
- ``credit_hold``: Odoo's credit limit check, as its sales orders and invoices run it, on the
  commercial partner (the company, whose books carry its contacts' invoices): the company
  uses credit limits ("Sales Credit Limit", seen on the partner as ``show_credit_limit``), the
  limit is set (``credit_limit`` > 0) and the receivable (``credit``) is over it.
- ``reasons``: one entry (a stable ``code``, a ``detail`` for people) per thing above that
  stands in the way.

No cache and no stale answers here: a credit decision on an old balance is the wrong
decision, so when Odoo cannot answer, this is a 503.
"""

from __future__ import annotations

from typing import Any

from ..exceptions import Conflict, NotFound
from .erp import Erp, garbled, many2one, number

__all__ = ["validate_customer"]

_DOING = "read customers"
_WANTED = (
    "name",
    "ref",
    "active",
    "is_company",
    "parent_id",
    "commercial_partner_id",
    "credit",
    "credit_limit",
    "use_partner_credit_limit",
    "show_credit_limit",
    "currency_id",
    "sale_warn",
)


async def validate_customer(erp: Erp, ref: str) -> dict[str, Any]:
    """The validation answer for the partner with reference ``ref``: ``NotFound`` when none
    has it, ``Conflict`` when several do."""
    known = await erp.fields("res.partner")
    fields = [name for name in _WANTED if name in known]
    rows = await erp.search_read(
        _DOING, "res.partner", [("ref", "=", ref)], fields, limit=10, context={"active_test": False}
    )
    partner = _pick(rows, ref)
    commercial = partner
    owner = many2one(partner.get("commercial_partner_id"), _DOING)
    if owner is not None and owner[0] != partner["id"]:
        found = await erp.read(_DOING, "res.partner", [owner[0]], fields)
        commercial = found[0] if found else partner
    return _validation(ref, partner, commercial)


def _pick(rows: list[dict[str, Any]], ref: str) -> dict[str, Any]:
    """The partner ``ref`` names: the active one over archived ones, a company or top-level
    partner over its contacts (a contact may repeat its company's reference)."""
    if not rows:
        raise NotFound(f"no customer with reference {ref!r} in the ERP")
    for keep in (_active, _top_level):
        narrowed = [row for row in rows if keep(row)]
        rows = narrowed or rows
        if len(rows) == 1:
            return rows[0]
    raise Conflict(f"several partners in the ERP have reference {ref!r}")


def _active(row: dict[str, Any]) -> bool:
    return _flag(row, "active", True)


def _top_level(row: dict[str, Any]) -> bool:
    return not row.get("parent_id") or _flag(row, "is_company", False)


def _flag(row: dict[str, Any], name: str, default: bool) -> bool:
    value = row.get(name, default)
    if not isinstance(value, bool):
        raise garbled(_DOING)
    return value


def _validation(ref: str, partner: dict[str, Any], commercial: dict[str, Any]) -> dict[str, Any]:
    reasons: list[dict[str, str]] = []
    status = "active"
    if not _active(partner) or not _active(commercial):
        status = "archived"
        reasons.append({"code": "archived", "detail": "the customer is archived in the ERP"})
    elif "block" in (partner.get("sale_warn"), commercial.get("sale_warn")):
        status = "blocked"
        reasons.append(
            {"code": "sales_blocked", "detail": "the ERP blocks sales orders for this customer"}
        )
    credit_used = number(commercial.get("credit", False), _DOING)
    limit = number(commercial.get("credit_limit", False), _DOING)
    # Without the field (a database without the feature), a set limit is taken as meant.
    enforced = _flag(commercial, "show_credit_limit", True) and limit > 0
    currency_field = many2one(commercial.get("currency_id"), _DOING)
    currency = currency_field[1] if currency_field is not None else None
    credit_hold = enforced and credit_used > limit
    if credit_hold:
        unit = f" {currency}" if currency else ""
        reasons.append(
            {
                "code": "credit_limit_exceeded",
                "detail": f"credit used {credit_used:.2f}{unit} is over the limit"
                f" {limit:.2f}{unit}",
            }
        )
    return {
        "ref": ref,
        "name": partner["name"] if isinstance(partner.get("name"), str) else None,
        "account_status": status,
        "credit_hold": credit_hold,
        "credit_limit": limit if enforced else None,
        "credit_used": credit_used,
        "currency": currency,
        "reasons": reasons,
    }
