"""Invoices and bills (``account.move``) as far as an integration sees them: created over RPC
or from a sales order, posted with ``action_post`` under Odoo's checks, reset or cancelled.
The simulator keeps no journal items, taxes or payments; ``payment_state`` stays "not_paid"."""

from __future__ import annotations

from typing import Any

from forgeline.sim.odoo import fields
from forgeline.sim.odoo.errors import UserError
from forgeline.sim.odoo.orm import Model, model_method

__all__: list[str] = []

MOVE_TYPES = [
    ("entry", "Journal Entry"),
    ("out_invoice", "Customer Invoice"),
    ("out_refund", "Customer Credit Note"),
    ("in_invoice", "Vendor Bill"),
    ("in_refund", "Vendor Credit Note"),
    ("out_receipt", "Sales Receipt"),
    ("in_receipt", "Purchase Receipt"),
]
SALE_TYPES = ("out_invoice", "out_refund", "out_receipt")
PURCHASE_TYPES = ("in_invoice", "in_refund", "in_receipt")
# Sequence prefixes of Odoo's default journals.
_PREFIX = {
    "out_invoice": "INV",
    "out_refund": "RINV",
    "in_invoice": "BILL",
    "in_refund": "RBILL",
    "out_receipt": "INV",
    "in_receipt": "BILL",
    "entry": "MISC",
}


def _payment_states(version: int) -> list[tuple[str, str]]:
    states = [
        ("not_paid", "Not Paid"),
        ("in_payment", "In Payment"),
        ("paid", "Paid"),
        ("partial", "Partially Paid"),
        ("reversed", "Reversed"),
    ]
    if version >= 18:
        states.append(("blocked", "Blocked"))
    return [*states, ("invoicing_legacy", "Invoicing App Legacy")]


def _line_display_types(version: int) -> list[tuple[str, str]]:
    return [
        ("product", "Product"),
        ("cogs", "Cost of Goods Sold"),
        ("tax", "Tax"),
        ("rounding", "Rounding"),
        ("payment_term", "Payment Term"),
        ("line_section", "Section"),
        ("line_note", "Note"),
        ("epd", "Early Payment Discount"),
    ]


# Everyone reads; writing needs the app's user group (demo/demo reads only).
_ACCESS = {"read": ("base.group_user",), "write": ("account.group_account_invoice",)}


class AccountJournal(Model):
    _name = "account.journal"
    _description = "Journal"
    _order = "sequence, type, code"
    name = fields.Char("Journal Name", required=True)
    code = fields.Char("Short Code", required=True)
    type = fields.Selection(
        [
            ("sale", "Sales"),
            ("purchase", "Purchase"),
            ("cash", "Cash"),
            ("bank", "Bank"),
            ("general", "Miscellaneous"),
        ],
        required=True,
    )
    sequence = fields.Integer(default=10)
    active = fields.Boolean(default=True)


def _journal_for(env: Any, move_type: str) -> Any:
    kind = (
        "sale"
        if move_type in SALE_TYPES
        else "purchase"
        if move_type in PURCHASE_TYPES
        else "general"
    )
    journals = env["account.journal"].sudo()
    journal = journals.search([("type", "=", kind)], limit=1)
    if not journal:
        name, code = {
            "sale": ("Customer Invoices", "INV"),
            "purchase": ("Vendor Bills", "BILL"),
            "general": ("Miscellaneous Operations", "MISC"),
        }[kind]
        journal = journals.create({"name": name, "code": code, "type": kind})
    return journal


class AccountMove(Model):
    _name = "account.move"
    _description = "Journal Entry"
    _order = "date desc, name desc, id desc"
    _access = _ACCESS
    name = fields.Char("Number", default="/", index=True)
    ref = fields.Char("Reference")
    move_type = fields.Selection(MOVE_TYPES, "Type", default="entry", required=True)
    state = fields.Selection(
        [("draft", "Draft"), ("posted", "Posted"), ("cancel", "Cancelled")],
        "Status",
        default="draft",
        required=True,
    )
    payment_state = fields.Selection(_payment_states, default="not_paid")
    date = fields.Date(required=True, default=lambda env: env.today())
    invoice_date = fields.Date("Invoice/Bill Date")
    invoice_date_due = fields.Date("Due Date")
    invoice_origin = fields.Char("Origin")
    partner_id = fields.Many2one("res.partner", "Partner", index=True)
    journal_id = fields.Many2one("account.journal", "Journal")
    currency_id = fields.Many2one("res.currency", default=lambda env: env.company.currency_id.id)
    line_ids = fields.One2many("account.move.line", "move_id", "Journal Items")
    invoice_line_ids = fields.One2many("account.move.line", "move_id", "Invoice lines")
    amount_untaxed = fields.Monetary("Untaxed Amount", compute="_compute_amounts")
    amount_tax = fields.Monetary("Tax", compute="_compute_amounts")
    amount_total = fields.Monetary("Total", compute="_compute_amounts")
    amount_residual = fields.Monetary("Amount Due", compute="_compute_amounts")

    def _compute_amounts(self) -> None:
        for move in self:
            total = sum(ln.price_subtotal for ln in move.line_ids if ln.display_type == "product")
            move.amount_untaxed = total
            move.amount_tax = 0.0
            move.amount_total = total
            move.amount_residual = total if move.state == "posted" else 0.0

    def _compute_display_name(self) -> None:
        for move in self:
            if move.name and move.name != "/":
                move.display_name = move.name
            elif move.move_type == "entry":
                move.display_name = f"Draft Entry ({move.id})"
            else:
                label = dict(MOVE_TYPES)[move.move_type]
                move.display_name = f"Draft {label} ({move.id})"

    @model_method
    def create(self, vals_list: list[dict[str, Any]]) -> Any:
        for vals in vals_list:
            move_type = vals.get("move_type") or self.env.context.get("default_move_type")
            vals.setdefault("move_type", move_type or "entry")
            if not vals.get("journal_id"):
                vals["journal_id"] = _journal_for(self.env, vals["move_type"]).id
        return super().create(vals_list)

    def action_post(self) -> Any:
        self._post()
        return False

    def _post(self) -> None:
        env = self.env
        for move in self.filtered(lambda m: m.move_type != "entry"):
            if move.amount_total < 0:
                raise UserError(
                    "You cannot validate an invoice with a negative total amount. You should "
                    "create a credit note instead. Use the action menu to transform it into a "
                    "credit note or refund."
                )
            if not move.partner_id:
                if move.move_type in SALE_TYPES:
                    raise UserError(
                        "The field 'Customer' is required, please complete it to validate the "
                        "Customer Invoice."
                    )
                raise UserError(
                    "The field 'Vendor' is required, please complete it to validate the "
                    "Vendor Bill."
                )
            if not move.invoice_date and move.move_type in PURCHASE_TYPES:
                raise UserError("The Bill/Refund date is required to validate this document.")
        for move in self:
            if move.state == "posted":
                raise UserError(f"The entry {move.name} (id {move.id}) is already posted.")
            if not move.line_ids.filtered(
                lambda ln: ln.display_type not in ("line_section", "line_note")
            ):
                raise UserError("You need to add a line before posting.")
        for move in self:
            invoice_date = move.invoice_date or env.today()
            vals: dict[str, Any] = {"state": "posted", "date": invoice_date}
            if move.move_type != "entry":
                vals["invoice_date"] = invoice_date
                vals["invoice_date_due"] = move.invoice_date_due or invoice_date
            if not move.name or move.name == "/":
                prefix = f"{_PREFIX[move.move_type]}/{invoice_date[:4]}/"
                vals["name"] = env.next_sequence(f"account.move.{prefix}", prefix)
            move.write(vals)

    # account/models/account_move.py (16-18): button_draft and button_cancel return nothing, so
    # None reaches the wire (XML-RPC fault 1 after the work is committed).

    def button_draft(self) -> None:
        if any(m.state not in ("posted", "cancel") for m in self):
            raise UserError("Only posted/cancelled journal entries can be reset to draft.")
        self.write({"state": "draft"})

    def button_cancel(self) -> None:
        # "Shortcut to move from posted to cancelled directly": posted moves are reset first.
        posted = self.filtered(lambda m: m.state == "posted")
        if posted:
            posted.button_draft()
        if any(m.state != "draft" for m in self):
            raise UserError("Only draft journal entries can be cancelled.")
        self.write({"state": "cancel"})


class AccountMoveLine(Model):
    _name = "account.move.line"
    _description = "Journal Item"
    _order = "move_id, sequence, id"
    move_id = fields.Many2one(
        "account.move", "Journal Entry", required=True, ondelete="cascade", index=True
    )
    sequence = fields.Integer(default=10)
    display_type = fields.Selection(_line_display_types, default="product")
    name = fields.Char("Label")
    product_id = fields.Many2one("product.product", "Product")
    quantity = fields.Float(default=1.0)
    price_unit = fields.Float("Unit Price")
    discount = fields.Float("Discount (%)")
    price_subtotal = fields.Monetary("Subtotal", compute="_compute_totals")
    price_total = fields.Monetary("Total", compute="_compute_totals")
    partner_id = fields.Many2one("res.partner", related="move_id.partner_id")
    parent_state = fields.Selection(
        [("draft", "Draft"), ("posted", "Posted"), ("cancel", "Cancelled")],
        related="move_id.state",
    )
    sale_line_ids = fields.Many2many("sale.order.line", "Sales Order Lines")
    purchase_line_id = fields.Many2one("purchase.order.line", "Purchase Order Line", index=True)

    def _compute_totals(self) -> None:
        for line in self:
            subtotal = line.quantity * line.price_unit * (1 - (line.discount or 0.0) / 100)
            line.price_subtotal = subtotal
            line.price_total = subtotal

    @model_method
    def create(self, vals_list: list[dict[str, Any]]) -> Any:
        for vals in vals_list:
            product = self.env["product.product"].browse(vals.get("product_id") or ())
            if product:
                if "name" not in vals:
                    vals["name"] = product.display_name
                if "price_unit" not in vals:
                    vals["price_unit"] = product.list_price
        return super().create(vals_list)
