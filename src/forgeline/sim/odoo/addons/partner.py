"""What the accounting and sales addons add to ``res.partner``, and the company settings they
read: the receivable and payable totals, the credit limit, the sales warning. Order entry
(``GET /v1/customers/{ref}/validation``) reads these fields as it would on a real Odoo.

As in Odoo (``account/models/partner.py``, 16 onwards, where the per-partner credit limit
arrived in 15.3):

- ``credit`` (Total Receivable) and ``debit`` (Total Payable) are computed on the commercial
  partner from its posted customer invoices and vendor bills. The simulator keeps no journal
  items or payments, so an invoice's residual is its total (``account.move``).
- ``use_partner_credit_limit`` is computed, not stored: the partner's ``credit_limit`` differs
  from the company's default. Writing False resets the limit to that default (Odoo's
  inverse); writing True changes nothing until a limit is written.
- ``show_credit_limit`` follows the company's ``account_use_credit_limit`` ("Sales Credit
  Limit" in the settings); ``currency_id`` is the company's currency.
- ``commercial_partner_id`` (base): the partner itself when it is a company or has no
  parent, else its parent's commercial partner.

``sale_warn`` ("Sales Warnings": no message, warning, blocking message) exists up to 18:
18.3 made every sales warning non-blocking and dropped the selection; ``sale_warn_msg`` stays.

Field-level ``groups`` (Odoo reads the credit fields only for accounting users) are not
simulated: every user who may read partners reads them.
"""

from __future__ import annotations

from typing import Any

from forgeline.sim.odoo import fields
from forgeline.sim.odoo.orm import Model, model_method

from .account import PURCHASE_TYPES, SALE_TYPES

__all__: list[str] = []

# odoo/addons/base/models/res_partner.py
WARNING_MESSAGE = [
    ("no-message", "No Message"),
    ("warning", "Warning"),
    ("block", "Blocking Message"),
]
_REFUNDS = ("out_refund", "in_refund")


class ResCompanyCredit(Model):
    _inherit = "res.company"
    account_use_credit_limit = fields.Boolean(
        "Sales Credit Limit", help="Enable the use of credit limit on partners."
    )
    account_default_credit_limit = fields.Monetary(
        "Default Credit Limit", help="Default value for the credit limit of new partners."
    )


class ResPartnerCredit(Model):
    _inherit = "res.partner"
    commercial_partner_id = fields.Many2one(
        "res.partner", "Commercial Entity", compute="_compute_commercial_partner"
    )
    currency_id = fields.Many2one("res.currency", "Currency", compute="_get_company_currency")
    credit = fields.Monetary(
        "Total Receivable",
        compute="_credit_debit_get",
        help="Total amount this customer owes you.",
    )
    debit = fields.Monetary(
        "Total Payable",
        compute="_credit_debit_get",
        help="Total amount you have to pay to this vendor.",
    )
    use_partner_credit_limit = fields.Boolean(
        "Partner Limit",
        compute="_compute_use_partner_credit_limit",
        help="Set a value greater than 0.0 to activate a credit limit check",
    )
    show_credit_limit = fields.Boolean(compute="_compute_show_credit_limit")
    sale_warn = fields.Selection(WARNING_MESSAGE, "Sales Warnings", default="no-message", until=18)
    sale_warn_msg = fields.Text("Message for Sales Order")

    # -- computes ------------------------------------------------------------------------

    def _compute_commercial_partner(self) -> None:
        for partner in self:
            partner.commercial_partner_id = _commercial(partner)

    def _get_company_currency(self) -> None:
        for partner in self:
            company = partner.company_id or self.env.company
            partner.currency_id = company.currency_id

    def _credit_debit_get(self) -> None:
        moves = (
            self.env["account.move"]
            .sudo()
            .search(
                [
                    ("state", "=", "posted"),
                    ("move_type", "in", [*SALE_TYPES, *PURCHASE_TYPES]),
                    ("partner_id", "child_of", self.ids),
                ]
            )
        )
        receivable = dict.fromkeys(self.ids, 0.0)
        payable = dict.fromkeys(self.ids, 0.0)
        for move in moves:
            # Journal items carry the commercial partner, so a contact's invoice counts on
            # its company and the contact itself owes nothing.
            owner = _commercial(move.partner_id).id
            if owner not in receivable:
                continue
            sign = -1.0 if move.move_type in _REFUNDS else 1.0
            if move.move_type in SALE_TYPES:
                receivable[owner] += sign * move.amount_residual
            else:
                payable[owner] += sign * move.amount_residual
        for partner in self:
            partner.credit = receivable[partner.id]
            partner.debit = payable[partner.id]

    def _compute_use_partner_credit_limit(self) -> None:
        default = self.env.company.account_default_credit_limit
        for partner in self:
            partner.use_partner_credit_limit = partner.credit_limit != default

    def _compute_show_credit_limit(self) -> None:
        shown = bool(self.env.company.account_use_credit_limit)
        for partner in self:
            partner.show_credit_limit = shown

    # -- the inverse of use_partner_credit_limit -----------------------------------------

    @model_method
    def create(self, vals_list: list[dict[str, Any]]) -> Any:
        reset = [vals.pop("use_partner_credit_limit", None) is False for vals in vals_list]
        partners = super().create(vals_list)
        for partner, off in zip(partners, reset, strict=True):
            if off:
                partner._reset_credit_limit()
        return partners

    def write(self, vals: Any) -> bool:
        vals = dict(vals)
        use_limit = vals.pop("use_partner_credit_limit", None)
        result = super().write(vals) if vals else True
        if use_limit is not None and not use_limit:
            self._reset_credit_limit()
        return bool(result)

    def _reset_credit_limit(self) -> None:
        default = self.env.company.account_default_credit_limit
        super().write({"credit_limit": default})


def _commercial(partner: Any) -> Any:
    current = partner
    while current and not current.is_company and current.parent_id:
        current = current.parent_id
    return current
