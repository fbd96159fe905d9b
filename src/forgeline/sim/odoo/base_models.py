"""The models of Odoo's ``base`` (and ``uom``, ``base_automation``) that every database has,
and the base data a new database is seeded with.

Users authenticate with a password (PBKDF2-hashed) or an API key (40 hex characters, the
first 8 an index, the rest only stored hashed). ``base.automation`` is a simplified Odoo
automation rule: a trigger on a model and one action (send a webhook, write values, call a
method); ``service.py`` runs them.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Sequence
from typing import Any

from . import fields
from .api import model_method
from .orm import Model

__all__ = ["hash_secret", "seed_base", "verify_secret"]

_ITERATIONS = 10_000
_ADMIN_ONLY = {"read": ("base.group_user",), "write": ("base.group_erp_manager",)}
_SYSTEM_ONLY = {"read": ("base.group_user",), "write": ("base.group_system",)}
_SYSTEM_ONLY_RW = {"read": ("base.group_system",), "write": ("base.group_system",)}
_verified: dict[tuple[str, str], bool] = {}


def hash_secret(secret: str) -> str:
    salt = secrets.token_hex(8)
    digest = hashlib.pbkdf2_hmac("sha256", secret.encode(), salt.encode(), _ITERATIONS)
    return f"pbkdf2_sha256${_ITERATIONS}${salt}${digest.hex()}"


def verify_secret(secret: str, stored: str | bool) -> bool:
    if not stored or not isinstance(stored, str):
        return False
    # XML-RPC sends the password with every call: remember what already verified.
    key = (stored, hashlib.sha256(secret.encode()).hexdigest())
    known = _verified.get(key)
    if known is not None:
        return known
    try:
        _scheme, rounds, salt, expected = stored.split("$")
        digest = hashlib.pbkdf2_hmac("sha256", secret.encode(), salt.encode(), int(rounds))
    except ValueError:
        return False
    ok = hmac.compare_digest(digest.hex(), expected)
    if len(_verified) > 4096:
        _verified.clear()
    _verified[key] = ok
    return ok


class ResGroups(Model):
    _name = "res.groups"
    _description = "Access Groups"
    _order = "name"
    _access = _ADMIN_ONLY
    name = fields.Char(required=True)
    category = fields.Char()
    comment = fields.Text()

    def _compute_display_name(self) -> None:
        for group in self:
            label = f"{group.category} / {group.name}" if group.category else group.name
            self.env.database.computed[("res.groups", "display_name", group.id)] = label


class ResCountry(Model):
    _name = "res.country"
    _description = "Country"
    _order = "name"
    _access = _SYSTEM_ONLY
    name = fields.Char(required=True)
    code = fields.Char()


class ResCurrency(Model):
    _name = "res.currency"
    _description = "Currency"
    _order = "active desc, name"
    _access = _SYSTEM_ONLY
    name = fields.Char(required=True)
    symbol = fields.Char()
    rounding = fields.Float(default=0.01)
    active = fields.Boolean(default=True)


class ResPartner(Model):
    _name = "res.partner"
    _description = "Contact"
    _order = "name, id desc"
    name = fields.Char(index=True)
    ref = fields.Char(index=True, string="Reference")
    email = fields.Char()
    phone = fields.Char()
    mobile = fields.Char()
    street = fields.Char()
    street2 = fields.Char()
    city = fields.Char()
    zip = fields.Char()
    country_id = fields.Many2one("res.country", ondelete="restrict")
    website = fields.Char()
    comment = fields.Text(string="Notes")
    lang = fields.Char(default="en_US")
    type = fields.Selection(
        [
            ("contact", "Contact"),
            ("invoice", "Invoice Address"),
            ("delivery", "Delivery Address"),
            ("other", "Other Address"),
        ],
        default="contact",
    )
    is_company = fields.Boolean()
    parent_id = fields.Many2one("res.partner", string="Related Company")
    child_ids = fields.One2many("res.partner", "parent_id", string="Contact")
    company_id = fields.Many2one("res.company")
    customer_rank = fields.Integer()
    supplier_rank = fields.Integer()
    vat = fields.Char(string="Tax ID")
    credit_limit = fields.Float()
    active = fields.Boolean(default=True)

    def _compute_display_name(self) -> None:
        computed = self.env.database.computed
        for partner in self:
            name = partner.name or ""
            parent = partner.parent_id
            if parent and not partner.is_company and parent.name:
                name = f"{parent.name}, {name}" if name else parent.name
            computed[("res.partner", "display_name", partner.id)] = name or False


class ResCompany(Model):
    _name = "res.company"
    _description = "Companies"
    _order = "sequence, name"
    _access = _SYSTEM_ONLY
    name = fields.Char(required=True)
    sequence = fields.Integer(default=10)
    partner_id = fields.Many2one("res.partner", required=True)
    currency_id = fields.Many2one("res.currency", required=True)
    country_id = fields.Many2one("res.country")
    email = fields.Char(related="partner_id.email")

    @model_method
    def create(self, vals_list: Any) -> Any:
        for vals in vals_list:
            if not vals.get("partner_id"):
                partner = (
                    self.env["res.partner"]
                    .sudo()
                    .create({"name": vals.get("name"), "is_company": True})
                )
                vals["partner_id"] = partner.id
        return super().create(vals_list)


class ResUsers(Model):
    _name = "res.users"
    _description = "User"
    _order = "name, login"
    _access = _ADMIN_ONLY
    _unique = (("login",),)
    name = fields.Char(related="partner_id.name", store=False)
    login = fields.Char(required=True, index=True)
    password = fields.Char(compute="_compute_password", readonly=False)
    password_hash = fields.Char(readonly=True, copy=False)
    partner_id = fields.Many2one("res.partner", required=True, ondelete="restrict")
    company_id = fields.Many2one("res.company", default=lambda env: 1)
    company_ids = fields.Many2many("res.company", default=lambda env: [1])
    groups_id = fields.Many2many("res.groups", string="Groups")
    lang = fields.Char(default="en_US")
    tz = fields.Char(default="Europe/Brussels")
    share = fields.Boolean()
    active = fields.Boolean(default=True)

    def _compute_password(self) -> None:
        for user in self:
            self.env.database.computed[("res.users", "password", user.id)] = ""

    @model_method
    def create(self, vals_list: Any) -> Any:
        partners = self.env["res.partner"].sudo()
        for vals in vals_list:
            password = vals.pop("password", None)
            if password:
                vals["password_hash"] = hash_secret(str(password))
            name = vals.pop("name", None)
            if not vals.get("partner_id"):
                vals["partner_id"] = partners.create({"name": name or vals.get("login")}).id
        return super().create(vals_list)

    def write(self, vals: Any) -> bool:
        vals = dict(vals)
        password = vals.pop("password", None)
        if password:
            vals["password_hash"] = hash_secret(str(password))
        name = vals.pop("name", None)
        if name:
            self.mapped("partner_id").sudo().write({"name": name})
        return super().write(vals)

    def read(self, fields: Sequence[str] | None = None, load: str | None = "_classic_read") -> Any:
        records = super().read(fields, load)
        for record in records:
            record.pop("password_hash", None)  # never leaves the server, even for admin
        return records

    @model_method
    def context_get(self) -> dict[str, Any]:
        user = self.env.user.sudo()
        return {"lang": user.lang or "en_US", "tz": user.tz or "Europe/Brussels", "uid": user.id}

    def has_group(self, xmlid: str) -> bool:
        return xmlid in self.env(user=self.ensure_one().id).user_groups


class ResUsersApikeys(Model):
    _name = "res.users.apikeys"
    _description = "Users API Keys"
    _access = _SYSTEM_ONLY_RW
    name = fields.Char(required=True, string="Description")
    user_id = fields.Many2one("res.users", required=True, ondelete="cascade")
    index = fields.Char(index=True)
    key = fields.Char(readonly=True)
    scope = fields.Char(default="rpc")
    expiration_date = fields.Datetime()


class UomCategory(Model):
    _name = "uom.category"
    _description = "Product UoM Categories"
    name = fields.Char(required=True)


class UomUom(Model):
    _name = "uom.uom"
    _description = "Product Unit of Measure"
    _order = "factor desc, id"
    name = fields.Char(required=True)
    category_id = fields.Many2one("uom.category", required=True, ondelete="restrict")
    factor = fields.Float(default=1.0, string="Ratio")
    rounding = fields.Float(default=0.01)
    uom_type = fields.Selection(
        [
            ("bigger", "Bigger than the reference Unit of Measure"),
            ("reference", "Reference"),
            ("smaller", "Smaller than the reference Unit of Measure"),
        ],
        default="reference",
    )
    active = fields.Boolean(default=True)


class IrModel(Model):
    _name = "ir.model"
    _description = "Models"
    _order = "model"
    _rec_name = "name"
    _access = _SYSTEM_ONLY
    name = fields.Char(required=True, string="Model Description")
    model = fields.Char(required=True, index=True)
    state = fields.Selection([("manual", "Custom Object"), ("base", "Base Object")], default="base")
    transient = fields.Boolean()
    field_id = fields.One2many("ir.model.fields", "model_id", string="Fields")


class IrModelFields(Model):
    _name = "ir.model.fields"
    _description = "Fields"
    _order = "name"
    _access = _SYSTEM_ONLY
    name = fields.Char(required=True, index=True)
    model = fields.Char(required=True, index=True)
    model_id = fields.Many2one("ir.model", required=True, ondelete="cascade")
    field_description = fields.Char()
    ttype = fields.Char(string="Field Type")
    relation = fields.Char()
    required = fields.Boolean()
    readonly = fields.Boolean()
    store = fields.Boolean()


class IrModelData(Model):
    _name = "ir.model.data"
    _description = "Model Data"
    _order = "module, model, name"
    _rec_name = "name"
    _access = _SYSTEM_ONLY
    module = fields.Char(required=True, index=True)
    name = fields.Char(required=True, index=True, string="External Identifier")
    model = fields.Char(required=True)
    res_id = fields.Integer(index=True, string="Record ID")
    noupdate = fields.Boolean()
    complete_name = fields.Char(compute="_compute_complete_name")

    def _compute_complete_name(self) -> None:
        for data in self:
            value = f"{data.module}.{data.name}"
            self.env.database.computed[("ir.model.data", "complete_name", data.id)] = value


class BaseAutomation(Model):
    _name = "base.automation"
    _description = "Automation Rule"
    _access = _SYSTEM_ONLY
    name = fields.Char(required=True)
    model_name = fields.Char(required=True, string="Model")
    trigger = fields.Selection(
        [
            ("on_create", "On Creation"),
            ("on_write", "On Update"),
            ("on_create_or_write", "On Creation & Update"),
            ("on_unlink", "On Deletion"),
            ("on_webhook", "On webhook"),
        ],
        required=True,
    )
    # Field names (Odoo: many2many of ir.model.fields); empty means any change.
    trigger_field_ids = fields.Json(string="Trigger Fields")
    filter_domain = fields.Json(string="Apply on")
    action = fields.Selection(
        [
            ("webhook", "Send Webhook Notification"),
            ("write", "Update Record"),
            ("method", "Execute Method"),
        ],
        required=True,
        default="webhook",
    )
    url = fields.Char(string="Webhook URL")
    webhook_field_ids = fields.Json(string="Fields")
    write_values = fields.Json()
    method_name = fields.Char()
    webhook_uuid = fields.Char(default=lambda env: str(uuid.uuid4()), readonly=True, copy=False)
    active = fields.Boolean(default=True)


# -- base data ---------------------------------------------------------------------------

GROUPS = (
    ("base.group_user", "User types", "Internal User"),
    ("base.group_portal", "User types", "Portal"),
    ("base.group_public", "User types", "Public"),
    ("base.group_erp_manager", "Administration", "Access Rights"),
    ("base.group_system", "Administration", "Settings"),
    ("sales_team.group_sale_salesman", "Sales", "User: Own Documents Only"),
    ("sales_team.group_sale_salesman_all_leads", "Sales", "User: All Documents"),
    ("sales_team.group_sale_manager", "Sales", "Administrator"),
    ("purchase.group_purchase_user", "Purchase", "User"),
    ("purchase.group_purchase_manager", "Purchase", "Administrator"),
    ("account.group_account_readonly", "Accounting", "Read-only"),
    ("account.group_account_invoice", "Invoicing", "Billing"),
    ("account.group_account_manager", "Invoicing", "Billing Administrator"),
    ("stock.group_stock_user", "Inventory", "User"),
    ("stock.group_stock_manager", "Inventory", "Administrator"),
    ("mrp.group_mrp_user", "Manufacturing", "User"),
    ("mrp.group_mrp_manager", "Manufacturing", "Administrator"),
    ("quality.group_quality_user", "Quality", "User"),
)
DEMO_USER_GROUPS = ("base.group_user", "account.group_account_readonly")


def make(env: Any, xmlid: str, model: str, vals: dict[str, Any]) -> Any:
    """Create a record and its external id (``module.name``)."""
    record = env[model].create(vals)
    module, _, name = xmlid.partition(".")
    env["ir.model.data"].create(
        {"module": module, "name": name, "model": model, "res_id": record.id, "noupdate": True}
    )
    return record


def seed_base(env: Any, *, demo: bool) -> None:
    """Base data of a fresh database; ``env`` is a superuser environment in a transaction."""
    make(env, "base.EUR", "res.currency", {"name": "EUR", "symbol": "€"})
    make(env, "base.USD", "res.currency", {"name": "USD", "symbol": "$", "active": False})
    countries = {}
    for code, name in (
        ("BE", "Belgium"),
        ("DE", "Germany"),
        ("FR", "France"),
        ("LU", "Luxembourg"),
        ("NL", "Netherlands"),
        ("US", "United States"),
    ):
        countries[code] = make(
            env, f"base.{code.lower()}", "res.country", {"name": name, "code": code}
        )
    company = make(
        env,
        "base.main_company",
        "res.company",
        {"name": "YourCompany", "currency_id": 1, "country_id": countries["BE"].id},
    )
    env["ir.model.data"].create(
        {
            "module": "base",
            "name": "main_partner",
            "model": "res.partner",
            "res_id": company.partner_id.id,
            "noupdate": True,
        }
    )
    groups = [
        make(env, xmlid, "res.groups", {"name": name, "category": category})
        for xmlid, category, name in GROUPS
    ]
    make(
        env,
        "base.user_root",
        "res.users",
        {
            "name": "OdooBot",
            "login": "__system__",
            "active": False,
            "groups_id": [g.id for g in groups],
        },
    )
    admin = make(
        env,
        "base.user_admin",
        "res.users",
        {
            "name": "Mitchell Admin",
            "login": "admin",
            "password": "admin",
            "groups_id": [g.id for g in groups],
        },
    )
    admin.partner_id.write(
        {"email": "admin@yourcompany.example.com", "parent_id": company.partner_id.id}
    )
    units = make(env, "uom.product_uom_categ_unit", "uom.category", {"name": "Unit"})
    weight = make(env, "uom.product_uom_categ_kgm", "uom.category", {"name": "Weight"})
    for xmlid, vals in (
        ("uom.product_uom_unit", {"name": "Units", "category_id": units.id, "rounding": 1.0}),
        (
            "uom.product_uom_dozen",
            {"name": "Dozens", "category_id": units.id, "factor": 1 / 12, "uom_type": "bigger"},
        ),
        ("uom.product_uom_kgm", {"name": "kg", "category_id": weight.id, "rounding": 0.001}),
        (
            "uom.product_uom_gram",
            {"name": "g", "category_id": weight.id, "factor": 1000.0, "uom_type": "smaller"},
        ),
    ):
        make(env, xmlid, "uom.uom", vals)
    if not demo:
        return
    demo_groups = [env.ref(x).id for x in DEMO_USER_GROUPS]
    make(
        env,
        "base.user_demo",
        "res.users",
        {"name": "Marc Demo", "login": "demo", "password": "demo", "groups_id": demo_groups},
    )
    for xmlid, vals in (
        (
            "base.res_partner_1",
            {
                "name": "Wood Corner",
                "is_company": True,
                "city": "Brussels",
                "country_id": countries["BE"].id,
                "customer_rank": 1,
                "email": "wood.corner26@example.com",
            },
        ),
        (
            "base.res_partner_2",
            {
                "name": "Deco Addict",
                "is_company": True,
                "city": "Antwerp",
                "country_id": countries["BE"].id,
                "customer_rank": 1,
                "email": "deco.addict82@example.com",
            },
        ),
        (
            "base.res_partner_3",
            {
                "name": "Gemini Furniture",
                "is_company": True,
                "city": "Lyon",
                "country_id": countries["FR"].id,
                "supplier_rank": 1,
                "email": "gemini.furniture39@example.com",
            },
        ),
        (
            "base.res_partner_4",
            {
                "name": "Ready Mat",
                "is_company": True,
                "city": "Hamburg",
                "country_id": countries["DE"].id,
                "supplier_rank": 1,
                "email": "ready.mat28@example.com",
            },
        ),
    ):
        make(env, xmlid, "res.partner", vals)


def new_api_key() -> tuple[str, str, str]:
    """A fresh key: (key, index, stored hash)."""
    key = secrets.token_hex(20)
    return key, key[:8], hash_secret(key)
