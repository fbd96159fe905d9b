"""Odoo's import (``Model.load``): rows of text cells, records identified by external id.

An ``id`` column holds external ids (``module.name``; a bare name means ``__import__.name``).
A row whose external id already exists UPDATES that record instead of creating one, which is
what makes a connector's "create" idempotent when it sends its own key as the external id.
Any error cancels the whole import: ``ids`` is ``False`` and ``messages`` says why, as Odoo.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .api import model_method
from .errors import UserError
from .grouping import GroupingMixin

if TYPE_CHECKING:
    from .fields import Field

__all__ = ["ImportMixin", "split_xmlid"]

_TRUE = {"1", "true", "yes", "y", "t"}
_FALSE = {"0", "false", "no", "n", "f", ""}


class ImportError_(ValueError):
    """A cell that cannot be converted; becomes an import message."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def split_xmlid(xmlid: str) -> tuple[str, str]:
    module, dot, name = xmlid.partition(".")
    return (module, name) if dot else ("__import__", xmlid)


class ImportMixin(GroupingMixin):
    """``load(fields, data)``."""

    @model_method
    def load(self, fields: Sequence[str], data: Sequence[Sequence[Any]]) -> dict[str, Any]:
        env = self.env
        storage = env.storage
        savepoint = storage.savepoint()
        events = len(env.database.events)
        ids: list[int] = []
        messages: list[dict[str, Any]] = []
        for index, cells in enumerate(data):
            field_name = ""
            try:
                vals: dict[str, Any] = {}
                xmlid: str | None = None
                dbid: int | None = None
                for column, cell in zip(fields, cells, strict=False):
                    field_name = column.split("/")[0]
                    if column == "id":
                        xmlid = str(cell) if cell else None
                    elif column == ".id":
                        dbid = int(cell) if cell not in ("", None, False) else None
                    else:
                        vals[field_name] = self._import_cell(column, cell)
                ids.append(self._import_record(vals, xmlid, dbid))
            except (UserError, ValueError) as exc:
                message: dict[str, Any] = {
                    "type": "error",
                    "message": getattr(exc, "message", None) or str(exc),
                    "record": index,
                    "rows": {"from": index, "to": index},
                }
                if field_name and field_name in self._fields:
                    message["field"] = field_name
                    message["field_name"] = self._fields[field_name].string
                messages.append(message)
        if messages:
            storage.rollback(savepoint)
            del env.database.events[events:]
            return {"ids": False, "messages": messages, "nextrow": 0}
        return {"ids": ids, "messages": [], "nextrow": 0}

    def _import_record(self, vals: dict[str, Any], xmlid: str | None, dbid: int | None) -> int:
        env = self.env
        if dbid is not None:
            record = self.browse((dbid,))
            if not record.exists():
                raise UserError(f"No matching record found for database id '{dbid}'")
            record.write(vals)
            return dbid
        data = env["ir.model.data"].sudo()
        entry = None
        if xmlid:
            module, name = split_xmlid(xmlid)
            found = data.browse(data._search_ids([("module", "=", module), ("name", "=", name)]))
            entry = found[:1] if found else None
            if entry:
                if entry.model != self._name:
                    raise UserError(
                        f"External ID {module}.{name} already refers to a record of "
                        f"{entry.model}, not {self._name}"
                    )
                record = self.browse((entry.res_id,))
                if record.exists():
                    record.write(vals)
                    return int(entry.res_id)
        record = self.create(vals)
        if xmlid:
            module, name = split_xmlid(xmlid)
            if entry:
                entry.write({"res_id": record.id})
            else:
                data.create(
                    {"module": module, "name": name, "model": self._name, "res_id": record.id}
                )
        return int(record.id)

    def _import_cell(self, column: str, cell: Any) -> Any:
        name, _, sub = column.partition("/")
        field = self._fields.get(name)
        if field is None or "/" in sub:
            raise ImportError_(f"Unknown field '{column}' on model {self._name}", name)
        text = cell if not isinstance(cell, str) else cell.strip()
        if field.relational:
            return self._import_relation(field, sub, text)
        if text in ("", None):
            return False
        label = field.string
        kind = field.type
        try:
            if kind == "boolean":
                lowered = str(text).lower()
                if lowered in _TRUE:
                    return True
                if lowered in _FALSE:
                    return False
                raise ImportError_(f"Unknown value '{text}' for boolean field '{label}'", name)
            if kind == "integer":
                return int(text)
            if kind in ("float", "monetary"):
                return float(text)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, ImportError_):
                raise
            noun = "an integer" if kind == "integer" else "a number"
            raise ImportError_(
                f"'{text}' does not seem to be {noun} for field '{label}'", name
            ) from exc
        if kind == "selection":
            options = field.get_selection(self.env.version)  # type: ignore[attr-defined]
            for key, option in options:
                if text in (key, option):
                    return key
            raise ImportError_(f"Value '{text}' not found in selection field '{label}'", name)
        return text

    def _import_relation(self, field: Field, sub: str, text: Any) -> Any:
        env = self.env
        comodel = env[field.comodel_name]  # type: ignore[attr-defined]
        label = field.string
        if text in ("", None, False):
            return False if field.type == "many2one" else [(6, 0, [])]
        values = (
            [text]
            if field.type == "many2one" or not isinstance(text, str)
            else [v.strip() for v in text.split(",") if v.strip()]
        )
        ids: list[int] = []
        for value in values:
            if sub == "id":
                found = env.xmlid_lookup(".".join(split_xmlid(str(value))))
                if found is None or found[0] != comodel._name:
                    raise ImportError_(
                        f"No matching record found for external id '{value}' in field '{label}'",
                        field.name,
                    )
                ids.append(found[1])
            elif sub == ".id":
                rid = int(value)
                if rid not in comodel._table().rows:
                    raise ImportError_(
                        f"No matching record found for database id '{value}' in field '{label}'",
                        field.name,
                    )
                ids.append(rid)
            else:
                matches = comodel.sudo().name_search(str(value), operator="=", limit=1)
                if not matches:
                    raise ImportError_(
                        f"No matching record found for name '{value}' in field '{label}'",
                        field.name,
                    )
                ids.append(matches[0][0])
        if field.type == "many2one":
            return ids[0]
        return [(6, 0, ids)]
