"""Purchase requests: a canonical request in, a draft RFQ (``purchase.order``) in Odoo.

``POST /v1/purchase-requests`` names the supplier by its partner reference and the lines by
SKU (``default_code``) and canonical unit code; this module resolves them in Odoo, says which
line is wrong when one is (422 with its path), creates the RFQ and answers its reference.

One request, one RFQ, even across a lost answer. The API's Idempotency-Key replays answers
it has; but when Odoo's answer to ``create`` is lost (a timeout, a cut connection: Odoo may
have committed), the key is released so the client can retry, and the retry must not make a
second RFQ. So every RFQ carries a marker derived from the key in its ``origin`` ("Source
Document"), and a request first looks for an RFQ with its marker: the retry finds the one the
lost answer was about and answers it.
"""

from __future__ import annotations

import hashlib
from datetime import date
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from ..canonical import UnknownStatus
from ..canonical.status_tables import lookup_status
from .erp import Erp, garbled, many2one
from .errors import UnknownReference
from .uom import odoo_unit, unit_code

__all__ = ["PurchaseLineIn", "PurchaseRequestIn", "create_purchase_request", "purchase_marker"]

_Text = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")]


class PurchaseLineIn(BaseModel):
    """One line: ``qty`` of ``sku`` in ``uom`` (default: the product's unit), by a date."""

    model_config = ConfigDict(extra="forbid")

    sku: _Text
    qty: Annotated[float, Field(gt=0, strict=True, allow_inf_nan=False)]
    uom: Annotated[str, Field(min_length=1, max_length=32)] | None = None
    needed_by: date | None = None


class PurchaseRequestIn(BaseModel):
    """A request to buy: the supplier's partner reference and what is needed."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "supplier": "S-GEMINI",
                    "lines": [{"sku": "RM-LEG", "qty": 40, "uom": "EA", "needed_by": "2026-12-01"}],
                    "note": "for WO-2026-00042",
                }
            ]
        },
    )

    supplier: _Text
    lines: Annotated[list[PurchaseLineIn], Field(min_length=1, max_length=500)]
    note: Annotated[str, Field(max_length=10_000)] | None = None


def purchase_marker(tenant: str, principal: str, key: str) -> str:
    """The ``origin`` an RFQ made for this Idempotency-Key carries (see the module)."""
    digest = hashlib.sha256(f"{tenant}\x1f{principal}\x1f{key}".encode()).hexdigest()
    return f"forgeline:{digest[:32]}"


async def create_purchase_request(
    erp: Erp, request: PurchaseRequestIn, marker: str
) -> dict[str, Any]:
    """Create (or find, by ``marker``) the RFQ for ``request``; its canonical answer.
    ``UnknownReference`` (422) naming the supplier or each line Odoo cannot resolve."""
    supplier_id = await _supplier(erp, request.supplier)
    products = await _products(erp, request)
    units = await _units(erp, request)
    line_fields = await erp.fields("purchase.order.line")
    # The line's unit is product_uom up to 18; newer databases call it product_uom_id. Ask
    # the database, not its version number.
    uom_field = "product_uom_id" if "product_uom_id" in line_fields else "product_uom"
    found = await erp.search_read(
        "look for the request's RFQ", "purchase.order", [("origin", "=", marker)], ["id"], limit=1
    )
    if found:
        order_id = int(found[0]["id"])
    else:
        lines = []
        for line in request.lines:
            values: dict[str, Any] = {
                "product_id": products[line.sku][0],
                "product_qty": line.qty,
            }
            if line.uom is not None:
                values[uom_field] = units[line.uom]
            if line.needed_by is not None:
                # Noon UTC: the same calendar day in every time zone a plant is likely in.
                values["date_planned"] = f"{line.needed_by.isoformat()} 12:00:00"
            lines.append((0, 0, values))
        order: dict[str, Any] = {"partner_id": supplier_id, "origin": marker, "order_line": lines}
        if request.note:
            order["notes"] = request.note
        order_id = await erp.call(
            "create the RFQ", lambda odoo: odoo.create("purchase.order", order)
        )
    return await _answer(erp, order_id, request, products)


async def _supplier(erp: Erp, ref: str) -> int:
    rows = await erp.search_read(
        "read suppliers", "res.partner", [("ref", "=", ref)], ["id"], limit=2
    )
    if len(rows) != 1:
        problem = "no active partner has this reference" if not rows else "several partners do"
        raise _unresolved([{"path": "supplier", "message": f"{ref!r}: {problem}"}])
    return int(rows[0]["id"])


async def _products(erp: Erp, request: PurchaseRequestIn) -> dict[str, tuple[int, str]]:
    """SKU -> (product id, its canonical unit); 422 naming every line that does not resolve."""
    skus = sorted({line.sku for line in request.lines})
    doing = "read products"
    rows = await erp.search_read(
        doing,
        "product.product",
        [("default_code", "in", skus)],
        ["default_code", "uom_id", "purchase_ok"],
    )
    by_sku: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_sku.setdefault(str(row.get("default_code")), []).append(row)
    errors: list[dict[str, str]] = []
    products: dict[str, tuple[int, str]] = {}
    for index, line in enumerate(request.lines):
        matches = by_sku.get(line.sku, [])
        if len(matches) != 1:
            problem = "no active product has this SKU" if not matches else "several products do"
        elif matches[0].get("purchase_ok") is False:
            problem = "the product cannot be purchased"
        else:
            uom = many2one(matches[0].get("uom_id"), doing)
            if uom is None:
                raise garbled(doing)  # Odoo requires a product's unit
            products[line.sku] = (int(matches[0]["id"]), unit_code(uom[1]))
            continue
        errors.append({"path": f"lines[{index}].sku", "message": f"{line.sku!r}: {problem}"})
    if errors:
        raise _unresolved(errors)
    return products


async def _units(erp: Erp, request: PurchaseRequestIn) -> dict[str, int]:
    """Unit code -> ``uom.uom`` id, for the units the lines name."""
    codes = sorted({line.uom for line in request.lines if line.uom is not None})
    if not codes:
        return {}
    names = {code: odoo_unit(code) for code in codes}
    rows = await erp.search_read(
        "read units of measure", "uom.uom", [("name", "in", sorted(set(names.values())))], ["name"]
    )
    ids = {str(row["name"]): int(row["id"]) for row in rows}
    units = {code: ids[name] for code, name in names.items() if name in ids}
    errors = [
        {"path": f"lines[{index}].uom", "message": f"{line.uom!r} is not a unit of the ERP"}
        for index, line in enumerate(request.lines)
        if line.uom is not None and line.uom not in units
    ]
    if errors:
        raise _unresolved(errors)
    return units


async def _answer(
    erp: Erp, order_id: int, request: PurchaseRequestIn, products: dict[str, tuple[int, str]]
) -> dict[str, Any]:
    doing = "read the RFQ"
    rows = await erp.read(doing, "purchase.order", [order_id], ["name", "state"])
    if len(rows) != 1 or not isinstance(rows[0].get("name"), str):
        raise garbled(doing)
    row = rows[0]
    client = await erp.client()
    state = str(row.get("state") or "draft")
    try:
        status = str(lookup_status("odoo", "purchase_order", state, client.version))
    except UnknownStatus:
        status = state
    return {
        "reference": row.get("name"),
        "status": status,
        "supplier": request.supplier,
        "lines": [
            {
                "sku": line.sku,
                "qty": line.qty,
                "uom": line.uom or products[line.sku][1],
                "needed_by": line.needed_by.isoformat() if line.needed_by else None,
            }
            for line in request.lines
        ],
        "note": request.note,
    }


def _unresolved(errors: list[dict[str, str]]) -> UnknownReference:
    first = errors[0]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return UnknownReference(f"{first['path']}: {first['message']}{more}", errors=errors)
