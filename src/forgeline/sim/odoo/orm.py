"""The simulated ORM's ``Model``: declaring models, and the record life cycle.

Simulated addons subclass ``Model`` with ``_name`` (a new model) or ``_inherit`` (an
extension), as in Odoo; ``registry.Registry`` merges them per Odoo version. The recordset
machinery is in ``recordset.py``; searching, grouping and importing in ``search.py``,
``grouping.py`` and ``importing.py``; this module creates, writes and deletes records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from . import fields
from .api import model_method, versioned
from .errors import ValidationError
from .importing import ImportMixin
from .recordset import BaseModel, missing_error

__all__ = ["BaseModel", "Model", "definitions", "missing_error", "model_method", "versioned"]

_DEFINITIONS: list[type[Model]] = []
_MAGIC = ("id", "display_name", "create_date", "write_date", "create_uid", "write_uid")


def _writable_relation(field: fields.Field) -> bool:
    """An x2many that holds its own links (not a related or computed one)."""
    return not (field.related or field.compute)


def definitions() -> list[type[Model]]:
    """Every model class defined so far, in import order."""
    return list(_DEFINITIONS)


def _mandatory_error(model: Model, field: fields.Field) -> ValidationError:
    return ValidationError(
        "The operation cannot be completed:\n"
        "- Create/update: a mandatory field is not set.\n"
        "- Delete: another model requires the record being deleted. "
        "If possible, archive it instead.\n\n"
        f"Model: {model._description} ({model._name})\nField: {field.string} ({field.name})"
    )


class Model(ImportMixin):
    """Base of every simulated model; an instance is a recordset."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("_registry_class"):
            return
        cls._own_fields = {k: v for k, v in cls.__dict__.items() if isinstance(v, fields.Field)}
        inherit = cls.__dict__.get("_inherit")
        parents = (inherit,) if isinstance(inherit, str) else tuple(inherit or ())
        name = cls.__dict__.get("_name") or (parents[0] if parents else None)
        if not name:
            raise TypeError(f"{cls.__qualname__} needs _name or _inherit")
        cls._model_name = name
        cls._parents = parents
        if "_description" not in cls.__dict__ and "_name" in cls.__dict__:
            cls._description = name
        _DEFINITIONS.append(cls)

    # -- create / write / unlink ---------------------------------------------------------

    @model_method
    def create(self, vals_list: Any) -> Any:
        """Create records from a dict or a list of dicts; returns the new recordset."""
        # Each ORM call is atomic (a savepoint inside a transaction, a commit outside one).
        with self.env.database.transaction():
            return self._create(vals_list)

    def _create(self, vals_list: Any) -> Any:
        if isinstance(vals_list, Mapping):
            vals_list = [vals_list]
        self._check_access("create")
        env = self.env
        storage = env.storage
        name = self._name
        model_fields = self._fields
        now = env.database.stamp()
        uid = env.uid
        defaults = self._default_values(vals_list)
        new_ids: list[int] = []
        later: list[tuple[int, dict[str, Any]]] = []
        for vals in vals_list:
            row: dict[str, Any] = {}
            for fname, field in model_fields.items():
                if not field.store or fname in _MAGIC or field.type == "many2many":
                    continue
                if fname in vals:
                    value = field.to_cache(vals[fname], env)
                elif fname in defaults:
                    value = defaults[fname]
                else:
                    value = field.empty
                if field.required and (value is False or value is None):
                    raise _mandatory_error(self, field)
                row[fname] = value
            row["create_date"] = row["write_date"] = now
            row["create_uid"] = row["write_uid"] = uid
            x2many = {}
            for key, value in vals.items():
                given = model_fields.get(key)
                if given is None:
                    raise ValueError(f"Invalid field {key!r} on model {name!r}")
                if given.type in ("one2many", "many2many"):
                    if _writable_relation(given):
                        x2many[key] = value
                elif given.type == "many2one" and row[key]:
                    self._check_reference(given, row[key])
            for fname, field in model_fields.items():
                if field.type == "many2many" and field.store:
                    row[fname] = ()
                    if fname not in x2many and fname in defaults:
                        x2many[fname] = defaults[fname]
            rid = storage.insert(name, row)
            new_ids.append(rid)
            if x2many:
                later.append((rid, x2many))
        for rid, x2many in later:
            for fname, commands in x2many.items():
                self._apply_x2many(model_fields[fname], rid, commands)
        records = self.browse(new_ids)
        records._check_unique()
        env.database.events.extend(("create", name, rid, frozenset()) for rid in new_ids)
        return records

    def _default_values(self, vals_list: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Defaults for the fields some ``vals`` lack (context ``default_*`` first)."""
        env = self.env
        context = env.context
        missing = {f for f in self._fields if not all(f in vals for vals in vals_list)}
        defaults: dict[str, Any] = {}
        for fname in missing:
            field = self._fields[fname]
            if not field.store or fname in _MAGIC:
                continue
            if f"default_{fname}" in context:
                value = context[f"default_{fname}"]
            elif field.has_default():
                if callable(field.default) and len(vals_list) > 1:
                    continue  # evaluated per record below
                value = field.default_value(env)
            else:
                continue
            defaults[fname] = value if field.type == "many2many" else field.to_cache(value, env)
        if len(vals_list) > 1:
            # Callable defaults (sequences) must give each record its own value.
            per_record = [
                f
                for f in missing
                if f not in defaults and self._fields[f].has_default() and self._fields[f].store
            ]
            if per_record:
                return _PerRecordDefaults(self, defaults, per_record)
        return defaults

    def _check_reference(self, field: fields.Field, value: int) -> None:
        if value not in self._table(field.comodel_name).rows:  # type: ignore[attr-defined]
            raise ValidationError(
                "The operation cannot be completed: "
                f"{field} refers to a record that does not exist "
                f"({field.comodel_name}({value},))."  # type: ignore[attr-defined]
            )

    def write(self, vals: Any) -> bool:
        """Write ``vals`` on every record; ``MissingError`` if one of them is gone."""
        with self.env.database.transaction():
            return self._write(vals)

    def _write(self, vals: Any) -> bool:
        self._check_access("write")
        if not self._ids:
            return True
        env = self.env
        storage = env.storage
        rows = self._table().rows
        missing = [rid for rid in self._ids if rid not in rows]
        if missing:
            raise missing_error(self._name, missing, env.uid)
        scalars: dict[str, Any] = {}
        x2many: dict[str, Any] = {}
        for key, value in vals.items():
            field = self._fields.get(key)
            if field is None:
                raise ValueError(f"Invalid field {key!r} on model {self._name!r}")
            if key in _MAGIC:
                continue
            if field.type in ("one2many", "many2many"):
                if _writable_relation(field):
                    x2many[key] = value
            elif field.store:
                cached = field.to_cache(value, env)
                if field.required and (cached is False or cached is None):
                    raise _mandatory_error(self, field)
                if field.type == "many2one" and cached:
                    self._check_reference(field, cached)
                scalars[key] = cached
        now = env.database.stamp()
        events = env.database.events
        for rid in dict.fromkeys(self._ids):
            changed = set(storage.update(self._name, rid, scalars)) if scalars else set()
            for fname, commands in x2many.items():
                if self._apply_x2many(self._fields[fname], rid, commands):
                    changed.add(fname)
            storage.update(self._name, rid, {"write_date": now, "write_uid": env.uid})
            events.append(("write", self._name, rid, frozenset(changed)))
        if scalars and self._unique:
            self._check_unique()
        return True

    def _apply_x2many(self, field: fields.Field, rid: int, commands: Any) -> bool:
        """Apply Odoo's x2many commands for record ``rid``; True if the relation changed."""
        env = self.env
        comodel = env[field.comodel_name]  # type: ignore[attr-defined]
        if hasattr(commands, "_ids"):
            commands = [(6, 0, commands._ids)]
        elif commands and all(isinstance(c, int) for c in commands):
            commands = [(6, 0, list(commands))]
        elif not commands:
            commands = [(6, 0, [])] if commands is not None and field.type == "many2many" else []
        if field.type == "many2many":
            current = list(self._table().rows[rid].get(field.name, ()))
            for command in commands:
                code = command[0]
                target = command[1] if len(command) > 1 else 0
                if code == 0:
                    current.append(comodel.create(command[2]).id)
                elif code == 1:
                    comodel.browse(target).write(command[2])
                elif code == 2:
                    comodel.browse(target).unlink()
                    current = [i for i in current if i != target]
                elif code == 3:
                    current = [i for i in current if i != target]
                elif code == 4:
                    if target not in current:
                        self._check_reference(field, target)
                        current.append(target)
                elif code == 5:
                    current = []
                elif code == 6:
                    wanted = list(dict.fromkeys(int(i) for i in command[2] or ()))
                    for i in wanted:
                        self._check_reference(field, i)
                    current = wanted
                else:
                    raise ValueError(f"Invalid x2many command {command!r}")
            old = env.storage.update(self._name, rid, {field.name: tuple(current)})
            return bool(old)
        inverse = field.inverse_name  # type: ignore[attr-defined]
        changed = False

        def detach(children: Model) -> None:
            inverse_field = children._fields[inverse]
            if inverse_field.required or getattr(inverse_field, "ondelete", "") == "cascade":
                children.unlink()
            else:
                children.write({inverse: False})

        for command in commands:
            code = command[0]
            target = command[1] if len(command) > 1 else 0
            changed = True
            if code == 0:
                comodel.create({**command[2], inverse: rid})
            elif code == 1:
                comodel.browse(target).write(command[2])
            elif code == 2:
                comodel.browse(target).unlink()
            elif code == 3:
                detach(comodel.browse(target))
            elif code == 4:
                comodel.browse(target).write({inverse: rid})
            elif code in (5, 6):
                keep = set(command[2] or ()) if code == 6 else set()
                current = self._one2many_ids(field, (rid,))[rid]
                detach(comodel.browse(i for i in current if i not in keep))
                existing = set(current)
                comodel.browse(i for i in keep if i not in existing).write({inverse: rid})
            else:
                raise ValueError(f"Invalid x2many command {command!r}")
        return changed

    def _check_unique(self) -> None:
        for columns in self._unique:
            table = self._table()
            index = table.ensure_index(columns[0])
            for rec_id in self._ids:
                row = table.rows[rec_id]
                key = tuple(row.get(c) for c in columns)
                clash = [
                    other
                    for other in index.get(row.get(columns[0]), ())
                    if other != rec_id and tuple(table.rows[other].get(c) for c in columns) == key
                ]
                if clash:
                    raise ValidationError(
                        f"The operation cannot be completed: {', '.join(columns)} must be "
                        f"unique on {self._description} ({self._name})."
                    )

    def unlink(self) -> bool:
        """Delete the records; follow ``ondelete`` of the many2one fields pointing at them."""
        with self.env.database.transaction():
            return self._unlink()

    def _unlink(self) -> bool:
        self._check_access("unlink")
        storage = self.env.storage
        table = self._table()
        ids = [rid for rid in dict.fromkeys(self._ids) if rid in table.rows]
        if not ids:
            return True
        gone = set(ids)
        registry = self.env.registry
        for model_name, field in registry.references.get(self._name, ()):
            other = self.env[model_name].sudo()
            other_table = other._table()
            if field.type == "many2many":
                for oid, row in other_table.rows.items():
                    links = row.get(field.name, ())
                    if links and not gone.isdisjoint(links):
                        kept = tuple(i for i in links if i not in gone)
                        storage.update(model_name, oid, {field.name: kept})
                continue
            index = other_table.ensure_index(field.name)
            refs = [oid for rid in ids for oid in index.get(rid, ())]
            if model_name == self._name:
                refs = [oid for oid in refs if oid not in gone]
            if not refs:
                continue
            ondelete = getattr(field, "ondelete", "set null")
            if ondelete == "cascade":
                other.browse(refs).unlink()
            elif ondelete == "restrict":
                raise ValidationError(
                    "The operation cannot be completed: another model requires the record "
                    "being deleted. If possible, archive it instead.\n\n"
                    f"Model: {other._description} ({model_name}), Field: {field.string} "
                    f"({field.name})"
                )
            else:
                for oid in refs:
                    storage.update(model_name, oid, {field.name: False})
        xmlids = self.env["ir.model.data"].sudo() if "ir.model.data" in registry else None
        if xmlids is not None and self._name != "ir.model.data":
            data = xmlids._table()
            index = data.ensure_index("res_id")
            for rid in ids:
                for did in list(index.get(rid, ())):
                    if data.rows[did].get("model") == self._name:
                        storage.delete("ir.model.data", did)
        for rid in ids:
            storage.delete(self._name, rid)
        return True

    def action_archive(self) -> bool:
        return self.write({"active": False})

    def action_unarchive(self) -> bool:
        return self.write({"active": True})

    def copy(self, default: Mapping[str, Any] | None = None) -> Any:
        """Duplicate the records. 16/17: one record (``ensure_one``), and RPC answers the new
        id (``@api.returns('self', lambda value: value.id)``); 18+: any number of records,
        and RPC answers the list of new ids (odoo/models.py)."""
        if self.env.version <= 17:
            self.ensure_one()
        copies = self.browse(())
        for record in self:
            copies |= record._copy_one(default)
        return copies

    def _copy_one(self, default: Mapping[str, Any] | None) -> Any:
        row = self._table().rows.get(self._ids[0])
        if row is None:
            raise missing_error(self._name, self._ids, self.env.uid)
        vals: dict[str, Any] = {}
        for fname, field in self._fields.items():
            if (
                fname in _MAGIC
                or not field.copy
                or (fname not in row and field.type != "many2many")
            ):
                continue
            value = row.get(fname, field.empty)
            vals[fname] = [(6, 0, list(value))] if field.type == "many2many" else value
        vals.update(default or {})
        return self.create(vals)


class _PerRecordDefaults(dict[str, Any]):
    """Defaults where callable ones are evaluated again for every record created."""

    def __init__(self, model: Model, fixed: dict[str, Any], per_record: list[str]) -> None:
        super().__init__(fixed)
        self._model = model
        for fname in per_record:
            self[fname] = None

    def __getitem__(self, key: str) -> Any:
        field = self._model._fields[key]
        if field.has_default() and callable(field.default) and dict.get(self, key) is None:
            return field.to_cache(field.default_value(self._model.env), self._model.env)
        return dict.__getitem__(self, key)
