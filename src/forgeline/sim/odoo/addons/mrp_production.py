"""Manufacturing orders, work orders and the wizards ``button_mark_done`` answers with.

An MO gets its component moves (WH/Stock → Production) and its finished move (Production →
WH/Stock) from the BoM when created in draft, as Odoo's computed ``move_raw_ids`` do.
``button_mark_done`` consumes components, produces the finished quantity (with its lot when
the product is tracked), and asks about a backorder when less than planned was produced: a
wizard action (``target: "new"``). Once it created backorders it answers, like Odoo, with an
action that opens them (no ``target``), else True.
Consuming more than is on hand is allowed and leaves negative quants, like Odoo with the
default "Allowed with warning" consumption (Odoo's warnings compare consumption with the BoM,
not with stock); the simulator does not model the consumption-warning wizard.
"""

from __future__ import annotations

from typing import Any

from forgeline.sim.odoo import fields
from forgeline.sim.odoo.errors import UserError, ValidationError
from forgeline.sim.odoo.orm import Model, model_method

from .common import compare, is_zero
from .mrp import SQL_CHECK, bom_for
from .stock import main_warehouse
from .stock_move import (
    assign_moves,
    cancel_moves,
    confirm_moves,
    done_moves,
    set_move_done_qty,
    unreserve_moves,
)

__all__: list[str] = []

MO_STATES = [
    ("draft", "Draft"),
    ("confirmed", "Confirmed"),
    ("progress", "In Progress"),
    ("to_close", "To Close"),
    ("done", "Done"),
    ("cancel", "Cancelled"),
]


def _wo_states(version: int) -> list[tuple[str, str]]:
    """mrp.workorder states: 18 replaced pending/waiting by ``blocked`` (a work order no longer
    waits for components; 19's labels read from mrp/models/mrp_workorder.py, 18's assumed)."""
    if version >= 19:
        return [
            ("blocked", "Blocked"),
            ("ready", "To Do"),
            ("progress", "In Progress"),
            ("done", "Done"),
            ("cancel", "Cancelled"),
        ]
    if version == 18:
        return [
            ("blocked", "Blocked"),
            ("ready", "Ready"),
            ("progress", "In Progress"),
            ("done", "Finished"),
            ("cancel", "Cancelled"),
        ]
    return [
        ("pending", "Waiting for another WO"),
        ("waiting", "Waiting for components"),
        ("ready", "Ready"),
        ("progress", "In Progress"),
        ("done", "Finished"),
        ("cancel", "Cancelled"),
    ]


def _date_fields(version: int) -> tuple[str, str]:
    # 17 renamed the planned dates; 16's date_planned_* became date_start/date_finished.
    return (
        ("date_start", "date_finished")
        if version >= 17
        else ("date_planned_start", "date_planned_finished")
    )


class MrpProduction(Model):
    _name = "mrp.production"
    _description = "Production Order"
    _order = "priority desc, date_start asc,id"

    @staticmethod
    def _order_by_version(version: int) -> str:
        # mrp/models/mrp_production.py: 16 "priority desc, date_planned_start asc,id";
        # 17 renamed the planned start date.
        if version <= 16:
            return "priority desc, date_planned_start asc,id"
        return "priority desc, date_start asc,id"

    name = fields.Char("Reference", default="/", index=True)
    origin = fields.Char("Source", index=True)
    priority = fields.Selection([("0", "Normal"), ("1", "Urgent")], default="0")
    product_id = fields.Many2one("product.product", "Product", required=True, index=True)
    product_tmpl_id = fields.Many2one("product.template", related="product_id.product_tmpl_id")
    product_tracking = fields.Selection(
        [("serial", "By Unique Serial Number"), ("lot", "By Lots"), ("none", "No Tracking")],
        related="product_id.tracking",
    )
    product_qty = fields.Float("Quantity To Produce", default=1.0, required=True)
    product_uom_id = fields.Many2one("uom.uom", "Product Unit of Measure")
    qty_producing = fields.Float("Quantity Producing")
    qty_produced = fields.Float("Quantity Produced", compute="_compute_qty_produced")
    bom_id = fields.Many2one("mrp.bom", "Bill of Material")
    state = fields.Selection(MO_STATES, default="draft", index=True)
    reservation_state = fields.Selection(
        [("confirmed", "Waiting"), ("assigned", "Ready"), ("waiting", "Waiting Another Operation")],
        "MO Readiness",
        compute="_compute_reservation_state",
    )
    move_raw_ids = fields.One2many("stock.move", "raw_material_production_id", "Components")
    move_finished_ids = fields.One2many("stock.move", "production_id", "Finished Products")
    workorder_ids = fields.One2many("mrp.workorder", "production_id", "Work Orders")
    lot_producing_id = fields.Many2one("stock.lot", "Lot/Serial Number", until=18)
    lot_producing_ids = fields.Many2many("stock.lot", "Lot/Serial Numbers", since=19)
    date_planned_start = fields.Datetime("Scheduled Date", until=16)
    date_planned_finished = fields.Datetime("Scheduled End Date", until=16)
    # 16 has date_start/date_finished too: when the MO was started/closed (read-only there).
    date_start = fields.Datetime("Start")
    date_finished = fields.Datetime("End")
    date_deadline = fields.Datetime("Deadline")
    picking_type_id = fields.Many2one("stock.picking.type", "Operation Type")
    location_src_id = fields.Many2one("stock.location", "Components Location")
    location_dest_id = fields.Many2one("stock.location", "Finished Products Location")
    production_location_id = fields.Many2one("stock.location", "Production Location")
    consumption = fields.Selection(
        [("flexible", "Allowed"), ("warning", "Allowed with warning"), ("strict", "Blocked")],
        default="warning",
    )
    user_id = fields.Many2one("res.users", "Responsible")
    backorder_sequence = fields.Integer("Backorder Sequence")
    is_locked = fields.Boolean()

    def _compute_qty_produced(self) -> None:
        for mo in self:
            mo.qty_produced = sum(
                m.product_uom_qty
                for m in mo.move_finished_ids
                if m.state == "done" and m.product_id == mo.product_id
            )

    def _compute_reservation_state(self) -> None:
        for mo in self:
            moves = mo.move_raw_ids.filtered(lambda m: m.state not in ("done", "cancel"))
            if mo.state not in ("confirmed", "progress", "to_close") or not moves:
                mo.reservation_state = False
            elif all(m.state == "assigned" for m in moves):
                mo.reservation_state = "assigned"
            elif any(m.state == "waiting" for m in moves):
                mo.reservation_state = "waiting"
            else:
                mo.reservation_state = "confirmed"

    @model_method
    def create(self, vals_list: list[dict[str, Any]]) -> Any:
        env = self.env
        start, finish = _date_fields(env.version)
        for vals in vals_list:
            if float(vals.get("product_qty", 1.0)) <= 0:
                raise ValidationError(SQL_CHECK + "The quantity to produce must be positive!")
            product = env["product.product"].browse(vals["product_id"])
            wh = main_warehouse(env)
            ptype = env["stock.picking.type"].browse(vals.get("picking_type_id") or ())
            ptype = ptype or wh.manu_type_id
            vals["picking_type_id"] = ptype.id
            vals.setdefault("location_src_id", ptype.default_location_src_id.id)
            vals.setdefault("location_dest_id", ptype.default_location_dest_id.id)
            vals.setdefault(
                "production_location_id",
                env["stock.location"].search([("usage", "=", "production")], limit=1).id,
            )
            if "product_uom_id" not in vals:
                vals["product_uom_id"] = product.uom_id.id
            if "bom_id" not in vals:
                vals["bom_id"] = bom_for(product).id or False
            bom = env["mrp.bom"].browse(vals["bom_id"] or ())
            vals.setdefault("consumption", bom.consumption or "warning")
            vals.setdefault(start, env.now())
            vals.setdefault(finish, env.now())
            if vals.get("name", "/") == "/":
                vals["name"] = env.next_sequence(
                    f"picking.{ptype.id}", f"{wh.code}/{ptype.sequence_code}/"
                )
        productions = super().create(vals_list)
        for mo in productions:
            if not mo.move_raw_ids and not mo.move_finished_ids:
                mo._generate_moves()
        return productions

    def unlink(self) -> bool:
        if any(p.state == "done" for p in self):
            raise UserError("Cannot delete a manufacturing order in done state.")
        self.action_cancel()
        (self.mapped("move_raw_ids") | self.mapped("move_finished_ids")).unlink()
        return bool(super().unlink())

    def write(self, vals: dict[str, Any]) -> bool:
        if "product_qty" in vals and float(vals["product_qty"] or 0.0) <= 0:
            raise ValidationError(SQL_CHECK + "The quantity to produce must be positive!")
        res = super().write(vals)
        if {"product_qty", "bom_id"} & set(vals):
            for mo in self.filtered(lambda p: p.state == "draft"):
                (mo.move_raw_ids | mo.move_finished_ids).unlink()
                mo._generate_moves()
        if "qty_producing" in vals and not self.env.context.get("forgeline_mo_internal"):
            for mo in self.filtered(lambda p: p.state not in ("draft", "done", "cancel")):
                mo._set_qty_producing()
        return bool(res)

    # -- moves ---------------------------------------------------------------------------

    def _generate_moves(self) -> None:
        env = self.env
        moves = env["stock.move"]
        common = {
            "origin": self.name,
            "picking_type_id": self.picking_type_id.id,
            "state": "draft",
            "warehouse_id": self.picking_type_id.warehouse_id.id,
        }
        bom = self.bom_id
        raw: list[dict[str, Any]] = []
        if bom:
            factor = float(self.product_qty) / float(bom.product_qty or 1.0)
            for line in bom.bom_line_ids:
                raw.append(
                    {
                        **common,
                        "name": self.name,
                        "product_id": line.product_id.id,
                        "product_uom_qty": float(line.product_qty) * factor,
                        "product_uom": line.product_uom_id.id or line.product_id.uom_id.id,
                        "location_id": self.location_src_id.id,
                        "location_dest_id": self.production_location_id.id,
                        "raw_material_production_id": self.id,
                        "bom_line_id": line.id,
                    }
                )
        if raw:
            moves.create(raw)
        moves.create(
            {
                **common,
                "name": self.name,
                "product_id": self.product_id.id,
                "product_uom_qty": float(self.product_qty),
                "product_uom": self.product_uom_id.id,
                "location_id": self.production_location_id.id,
                "location_dest_id": self.location_dest_id.id,
                "production_id": self.id,
            }
        )

    def _finished_move(self) -> Any:
        return self.move_finished_ids.filtered(
            lambda m: m.product_id == self.product_id and m.state not in ("done", "cancel")
        )[:1]

    def _set_qty_producing(self) -> None:
        """Components to consume and finished quantity follow qty_producing (Odoo's onchange)."""
        producing = float(self.qty_producing)
        remaining = float(self.product_qty) - float(self.qty_produced)
        ratio = producing / remaining if remaining > 0 else 1.0
        for move in self.move_raw_ids.filtered(lambda m: m.state not in ("done", "cancel")):
            set_move_done_qty(move, float(move.product_uom_qty) * ratio)
            if self.env.version >= 17:
                move.write({"picked": True})
        finished = self._finished_move()
        if finished:
            set_move_done_qty(finished, producing)
            if self.env.version >= 17:
                finished.write({"picked": True})
        self._recompute_state()

    def _recompute_state(self) -> None:
        for mo in self:
            if mo.state in ("draft", "done", "cancel"):
                continue
            wo_states = set(mo.workorder_ids.mapped("state"))
            if (mo.workorder_ids and wo_states <= {"done", "cancel"}) or (
                not mo.workorder_ids and compare(mo.qty_producing, mo.product_qty) >= 0
            ):
                state = "to_close"
            elif wo_states & {"progress", "done"} or not is_zero(mo.qty_producing):
                state = "progress"
            else:
                state = "confirmed"
            if state != mo.state:
                mo.write({"state": state})
            if self.env.version <= 17:  # 18+: a work order does not wait for components
                ready = mo.reservation_state == "assigned"
                mo.workorder_ids.filtered(lambda w: w.state in ("waiting", "ready")).write(
                    {"state": "ready" if ready else "waiting"}
                )

    def _lot(self) -> Any:
        if self.env.version >= 19:
            return self.lot_producing_ids[:1]
        return self.lot_producing_id

    # -- buttons -------------------------------------------------------------------------

    def action_confirm(self) -> bool:
        for mo in self.filtered(lambda p: p.state == "draft"):
            if not mo.move_raw_ids and not mo.move_finished_ids:
                mo._generate_moves()
            mo.write({"state": "confirmed"})
            confirm_moves(mo.move_finished_ids)
            confirm_moves(mo.move_raw_ids, reserve=True)
            mo._create_workorders()
            mo._recompute_state()
        return True

    def _create_workorders(self) -> None:
        ops = self.bom_id.operation_ids
        if not ops:
            return
        factor = float(self.product_qty) / float(self.bom_id.product_qty or 1.0)
        self.env["mrp.workorder"].create(
            [
                {
                    "name": op.name,
                    "production_id": self.id,
                    "workcenter_id": op.workcenter_id.id,
                    "operation_id": op.id,
                    "qty_production": self.product_qty,
                    "duration_expected": float(op.time_cycle_manual) * factor,
                    "state": "waiting" if self.env.version <= 17 else "ready",
                }
                for op in ops
            ]
        )

    def action_assign(self) -> bool:
        for mo in self.filtered(lambda p: p.state in ("confirmed", "progress", "to_close")):
            assign_moves(mo.move_raw_ids.filtered(lambda m: m.state not in ("done", "cancel")))
            mo._recompute_state()
        return True

    def do_unreserve(self) -> None:
        unreserve_moves(self.mapped("move_raw_ids"))
        self._recompute_state()

    def action_generate_serial(self) -> bool:
        for mo in self:
            lot = self.env["stock.lot"].create(
                {
                    "name": self.env.next_sequence("stock.lot.serial", "", padding=7),
                    "product_id": mo.product_id.id,
                }
            )
            key = "lot_producing_ids" if self.env.version >= 19 else "lot_producing_id"
            mo.write({key: [lot.id] if key == "lot_producing_ids" else lot.id})
        return True

    def action_cancel(self) -> bool:
        for mo in self.filtered(lambda p: p.state not in ("done", "cancel")):
            cancel_moves(
                (mo.move_raw_ids | mo.move_finished_ids).filtered(lambda m: m.state != "done")
            )
            mo.workorder_ids.filtered(lambda w: w.state != "done").write({"state": "cancel"})
            mo.write({"state": "cancel", "is_locked": True})
        return True

    def button_mark_done(self) -> Any:
        env = self.env
        ctx = env.context
        todo = self.filtered(lambda p: p.state not in ("done", "cancel"))
        if not todo:
            return True
        if not ctx.get("button_mark_done_production_ids"):
            todo = todo.with_context(button_mark_done_production_ids=todo.ids)
        draft = todo.filtered(lambda p: p.state == "draft")
        if draft:
            draft.action_confirm()
        if env.version <= 16 and not ctx.get("skip_immediate"):
            immediate = todo.filtered(lambda p: is_zero(p.qty_producing))
            if immediate:
                return immediate._wizard_action(
                    "mrp.immediate.production",
                    "Immediate Production?",
                    {"default_mo_ids": immediate.ids},
                )
        for mo in todo:
            if env.version >= 17 and is_zero(mo.qty_producing):
                mo.with_context(forgeline_mo_internal=True).write(
                    {"qty_producing": float(mo.product_qty) - float(mo.qty_produced)}
                )
                mo._set_qty_producing()
            if mo.product_tracking in ("lot", "serial") and not mo._lot():
                raise UserError("You need to supply a Lot/Serial Number for the final product.")
            if compare(mo.qty_producing, 0.0) <= 0:
                raise UserError("The quantity to produce must be positive!")
        short = todo.filtered(lambda p: compare(p.qty_producing, p.product_qty) < 0)
        if short and not ctx.get("skip_backorder"):
            return short._wizard_action(
                "mrp.production.backorder",
                "You produced less than initial demand",
                {"default_mrp_production_ids": todo.ids},
            )
        to_backorder = short.filtered(
            lambda p: (
                p.picking_type_id.create_backorder == "always"
                or p.id in (ctx.get("mo_ids_to_backorder") or ())
            )
        )
        backorders = self.browse(())
        for mo in todo:
            backorders |= mo._post_done(backorder=mo in to_backorder)
        if not backorders:
            return True
        return todo._backorder_action(backorders)

    def _backorder_action(self, backorders: Any) -> dict[str, Any]:
        """Where Odoo's ``button_mark_done`` leads once it created backorders: the backorder's
        form, or a list of them (mrp/models/mrp_production.py, 16-19). It is a navigation
        action, not a wizard: no ``target: "new"``. Its context holds None values, so over
        XML-RPC (allow_none off) the answer is fault 1 "cannot marshal None" although the work
        is committed - as with real Odoo."""
        context = {k: v for k, v in self.env.context.items() if not k.startswith("default_")}
        for key in context:
            if key.startswith("skip_"):
                context[key] = False
        action: dict[str, Any] = {
            "res_model": "mrp.production",
            "type": "ir.actions.act_window",
            "context": {
                **context,
                "mo_ids_to_backorder": None,
                "button_mark_done_production_ids": None,
            },
        }
        if len(backorders) == 1:
            action.update({"view_mode": "form", "res_id": backorders.id})
        else:
            action.update(
                {
                    "name": "Backorder MO",
                    "domain": [("id", "in", backorders.ids)],
                    "view_mode": "tree,form" if self.env.version <= 17 else "list,form",
                }
            )
        return action

    def _wizard_action(self, model: str, name: str, extra: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": name,
            "type": "ir.actions.act_window",
            "view_mode": "form",
            "res_model": model,
            "views": [[False, "form"]],
            "view_id": False,
            "target": "new",
            "context": {**self.env.context, **extra},
        }

    def _post_done(self, *, backorder: bool) -> Any:
        """Mark the MO done; returns the backorder it created (or an empty recordset)."""
        env = self.env
        producing = float(self.qty_producing)
        rest = float(self.product_qty) - float(self.qty_produced) - producing
        finished = self._finished_move()
        dests = finished.move_dest_ids
        if finished and self.product_tracking != "none":
            finished.move_line_ids.write({"lot_id": self._lot().id})
        done_moves(
            self.move_raw_ids.filtered(lambda m: m.state not in ("done", "cancel")),
            cancel_backorder=True,
        )
        done_moves(finished, cancel_backorder=True)
        vals: dict[str, Any] = {
            "product_qty": self.qty_produced,
            "state": "done",
            "is_locked": True,
            "priority": "0",
        }
        vals["date_finished"] = env.now()
        self.workorder_ids.filtered(lambda w: w.state not in ("done", "cancel")).write(
            {"state": "done", "date_finished": env.now()}
        )
        created = self.browse(())
        if backorder and compare(rest, 0.0) > 0:
            created = self._create_backorder(rest, dests)
        self.with_context(forgeline_mo_internal=True).write(vals)
        return created

    def _create_backorder(self, qty: float, dests: Any) -> Any:
        base = self.name.rsplit("-", 1)[0] if self.backorder_sequence else self.name
        seq = max(self.backorder_sequence, 1)
        if not self.backorder_sequence:
            self.write({"name": f"{base}-{seq:03d}", "backorder_sequence": seq})
        siblings = self.search([("name", "=like", f"{base}-%")])
        next_seq = max([seq, *siblings.mapped("backorder_sequence")]) + 1
        backorder = self.create(
            [
                {
                    "name": f"{base}-{next_seq:03d}",
                    "backorder_sequence": next_seq,
                    "product_id": self.product_id.id,
                    "product_qty": qty,
                    "bom_id": self.bom_id.id,
                    "origin": self.origin or False,
                    "picking_type_id": self.picking_type_id.id,
                    "location_src_id": self.location_src_id.id,
                    "location_dest_id": self.location_dest_id.id,
                    "user_id": self.user_id.id or False,
                }
            ]
        )
        if dests:
            backorder.move_finished_ids.write({"move_dest_ids": dests.ids})
        backorder.action_confirm()
        backorder.action_assign()
        return backorder


class MrpWorkorder(Model):
    _name = "mrp.workorder"
    _description = "Work Order"
    _order = "date_start, id"

    @staticmethod
    def _order_by_version(version: int) -> str:
        # 19 (mrp/models/mrp_workorder.py): "date_start, sequence, id". 16-18 order by
        # "leave_id, date_planned_start|date_start, id" (from memory, unconfirmed); the
        # simulator has no calendar leaves, so leave_id is left out.
        if version >= 19:
            return "date_start, sequence, id"
        return "date_planned_start, id" if version <= 16 else "date_start, id"

    name = fields.Char("Work Order", required=True)
    production_id = fields.Many2one(
        "mrp.production", "Manufacturing Order", required=True, ondelete="cascade", index=True
    )
    workcenter_id = fields.Many2one("mrp.workcenter", "Work Center", required=True)
    operation_id = fields.Many2one("mrp.routing.workcenter", "Operation")
    product_id = fields.Many2one("product.product", related="production_id.product_id")
    sequence = fields.Integer(default=100, since=19)
    state = fields.Selection(
        _wo_states, "Status", default=lambda env: "pending" if env.version <= 17 else "ready"
    )
    qty_production = fields.Float("Original Production Quantity")
    qty_produced = fields.Float("Quantity")
    duration_expected = fields.Float("Expected Duration")
    duration = fields.Float("Real Duration")
    date_planned_start = fields.Datetime("Scheduled Start Date", until=16)
    date_planned_finished = fields.Datetime("Scheduled End Date", until=16)
    date_start = fields.Datetime("Start")
    date_finished = fields.Datetime("End")

    def button_start(self) -> bool:
        for wo in self:
            if wo.state in ("done", "cancel"):
                continue
            wo.write({"state": "progress", "date_start": wo.date_start or self.env.now()})
            mo = wo.production_id
            if mo.state == "confirmed":
                vals: dict[str, Any] = {"state": "progress"}
                if not mo.date_start:  # 16: the MO's start date is when work began
                    vals["date_start"] = self.env.now()
                mo.write(vals)
        return True

    def button_pending(self) -> bool:
        self.filtered(lambda w: w.state == "progress").write({"state": "ready"})
        return True

    def button_finish(self) -> bool:
        for wo in self.filtered(lambda w: w.state not in ("done", "cancel")):
            wo.write(
                {
                    "state": "done",
                    "date_finished": self.env.now(),
                    "qty_produced": wo.production_id.qty_producing or wo.qty_production,
                }
            )
            wo.production_id._recompute_state()
        return True

    def button_done(self) -> bool:
        return self.button_finish()


class MrpProductionBackorder(Model):
    _name = "mrp.production.backorder"
    _description = "Wizard to mark as done or create back order"
    mrp_production_ids = fields.Many2many("mrp.production")
    mrp_production_backorder_line_ids = fields.One2many(
        "mrp.production.backorder.line",
        "mrp_production_backorder_id",
        "Backorder Confirmation Lines",
    )
    show_backorder_lines = fields.Boolean(compute="_compute_show_backorder_lines")

    def _compute_show_backorder_lines(self) -> None:
        for wizard in self:
            wizard.show_backorder_lines = len(wizard.mrp_production_backorder_line_ids) > 1

    @model_method
    def create(self, vals_list: list[dict[str, Any]]) -> Any:
        wizards = super().create(vals_list)
        for wizard in wizards:
            if not wizard.mrp_production_backorder_line_ids:
                short = wizard.mrp_production_ids.filtered(
                    lambda p: compare(p.qty_producing, p.product_qty) < 0
                )
                wizard.write(
                    {
                        "mrp_production_backorder_line_ids": [
                            (0, 0, {"mrp_production_id": p.id, "to_backorder": True}) for p in short
                        ]
                    }
                )
        return wizards

    def action_backorder(self) -> Any:
        ctx = {k: v for k, v in self.env.context.items() if k != "default_mrp_production_ids"}
        ids = (
            self.mrp_production_backorder_line_ids.filtered(lambda ln: ln.to_backorder)
            .mapped("mrp_production_id")
            .ids
        )
        return self.mrp_production_ids.with_context(
            ctx, skip_backorder=True, mo_ids_to_backorder=ids
        ).button_mark_done()

    def action_close_mo(self) -> Any:
        return self.mrp_production_ids.with_context(skip_backorder=True).button_mark_done()


class MrpProductionBackorderLine(Model):
    _name = "mrp.production.backorder.line"
    _description = "Backorder Confirmation Line"
    mrp_production_backorder_id = fields.Many2one("mrp.production.backorder", ondelete="cascade")
    mrp_production_id = fields.Many2one("mrp.production", "Manufacturing Order")
    to_backorder = fields.Boolean("To Backorder")


class MrpImmediateProduction(Model):
    # Odoo 16 (17 folded "produce all" into button_mark_done).
    _name = "mrp.immediate.production"
    _description = "Immediate Production"
    mo_ids = fields.Many2many("mrp.production", "Manufacturing Orders")

    def process(self) -> Any:
        for mo in self.mo_ids:
            if mo.product_tracking in ("lot", "serial") and not mo._lot():
                mo.action_generate_serial()
            qty = float(mo.product_qty) - float(mo.qty_produced)
            if mo.product_tracking == "serial":
                qty = min(qty, 1.0)
            mo.with_context(forgeline_mo_internal=True).write({"qty_producing": qty})
            mo._set_qty_producing()
        ids = self.env.context.get("button_mark_done_production_ids")
        if not ids:
            return True
        return (
            self.env["mrp.production"]
            .browse(ids)
            .with_context(skip_immediate=True)
            .button_mark_done()
        )
