"""Field types of the simulated ORM, declared on models as in Odoo (``fields.Char(...)``).

A field converts values three ways: what the ORM stores (``to_cache``: plain JSON-able values,
many2one as an int, many2many as a tuple of ids, empty as ``False`` or 0), what a record
attribute gives back (``to_record``: recordsets for relations), and what travels on the wire
(``to_read``). Fields exist only for the Odoo majors between ``since`` and ``until``.
"""

from __future__ import annotations

import base64
import copy as copy_module
import datetime as dt
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .recordset import BaseModel as Model
    from .registry import Environment

__all__ = [
    "Binary",
    "Boolean",
    "Char",
    "Date",
    "Datetime",
    "Field",
    "Float",
    "Integer",
    "Json",
    "Many2many",
    "Many2one",
    "Monetary",
    "One2many",
    "Selection",
    "Text",
]

DATE_FORMAT = "%Y-%m-%d"
DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"

_NO_DEFAULT: Any = object()

SelectionSpec = Sequence[tuple[str, str]] | Callable[[int], Sequence[tuple[str, str]]]


class Field:
    """Base field: a descriptor on model classes, with Odoo's declaration keywords."""

    type = "field"
    relational = False
    hashable = True  # stored values can key an index
    group_operator: str | None = None

    def __init__(
        self,
        string: str | None = None,
        *,
        required: bool = False,
        readonly: bool = False,
        default: Any = _NO_DEFAULT,
        compute: str | None = None,
        related: str | None = None,
        index: bool = False,
        since: int | None = None,
        until: int | None = None,
        help: str | None = None,
        copy: bool | None = None,
        store: bool | None = None,
        group_operator: str | None = None,
        aggregator: str | None = None,
    ) -> None:
        self.name = ""
        self.model_name = ""
        self.string = string
        self.required = required
        self.readonly = readonly or bool(compute) or bool(related)
        self.default = default
        self.compute = compute
        self.related = related
        self.index = index
        self.since = since
        self.until = until
        self.help = help
        self._copy = copy
        self.store = store if store is not None else not (compute or related)
        if group_operator or aggregator:
            self.group_operator = group_operator or aggregator

    # -- declaration ---------------------------------------------------------------------

    def __set_name__(self, owner: Any, name: str) -> None:
        self.name = name
        if self.string is None:
            label = name[:-3] if name.endswith(("_id", "_ids")) else name
            label = label[:-1] if name.endswith("_ids") else label
            self.string = label.replace("_", " ").strip().title() or name

    @property
    def copy(self) -> bool:
        return self._copy if self._copy is not None else self.store

    def active_for(self, version: int) -> bool:
        return (self.since is None or version >= self.since) and (
            self.until is None or version <= self.until
        )

    def has_default(self) -> bool:
        return self.default is not _NO_DEFAULT

    def default_value(self, env: Environment) -> Any:
        return self.default(env) if callable(self.default) else self.default

    # -- descriptor ----------------------------------------------------------------------

    def __get__(self, record: Model | None, owner: Any = None) -> Any:
        if record is None:
            return self
        return record._get_field_value(self.name)

    def __set__(self, record: Model, value: Any) -> None:
        record._set_field_value(self.name, value)

    # -- conversions ---------------------------------------------------------------------

    @property
    def empty(self) -> Any:
        return False

    def to_cache(self, value: Any, env: Environment) -> Any:
        return value if value is not None else self.empty

    def to_record(self, value: Any, env: Environment) -> Any:
        return value

    def to_read(self, value: Any, env: Environment, load: str | None) -> Any:
        return value

    def describe(self, version: int) -> dict[str, Any]:
        return {
            "type": self.type,
            "string": self.string,
            "required": self.required,
            "readonly": self.readonly,
            "help": self.help or False,
            "store": self.store,
            "searchable": self.store or bool(self.related),
            "sortable": self.store,
            "name": self.name,
        }

    def __repr__(self) -> str:
        return f"{self.model_name}.{self.name}"


class Char(Field):
    type = "char"

    def to_cache(self, value: Any, env: Environment) -> Any:
        if value is None or value is False:
            return False
        return str(value)


class Text(Char):
    type = "text"


class Integer(Field):
    type = "integer"
    group_operator = "sum"

    @property
    def empty(self) -> Any:
        return 0

    def to_cache(self, value: Any, env: Environment) -> Any:
        return int(value or 0)


class Float(Field):
    type = "float"
    group_operator = "sum"

    def __init__(self, string: str | None = None, *, digits: Any = None, **kwargs: Any) -> None:
        super().__init__(string, **kwargs)
        self.digits = digits

    @property
    def empty(self) -> Any:
        return 0.0

    def to_cache(self, value: Any, env: Environment) -> Any:
        return float(value or 0.0)


class Monetary(Float):
    type = "monetary"

    def __init__(
        self, string: str | None = None, *, currency_field: str = "currency_id", **kwargs: Any
    ) -> None:
        super().__init__(string, **kwargs)
        self.currency_field = currency_field


class Boolean(Field):
    type = "boolean"

    def to_cache(self, value: Any, env: Environment) -> Any:
        return bool(value)


class Date(Field):
    type = "date"

    def to_cache(self, value: Any, env: Environment) -> Any:
        if not value:
            return False
        if isinstance(value, dt.datetime):
            return value.strftime(DATE_FORMAT)
        if isinstance(value, dt.date):
            return value.strftime(DATE_FORMAT)
        text = str(value)
        # Odoo accepts a datetime string for a date and keeps the date part.
        return dt.datetime.strptime(text[:10], DATE_FORMAT).strftime(DATE_FORMAT)


class Datetime(Field):
    type = "datetime"

    def to_cache(self, value: Any, env: Environment) -> Any:
        if not value:
            return False
        if isinstance(value, dt.datetime):
            if value.tzinfo is not None:
                value = value.astimezone(dt.UTC).replace(tzinfo=None)
            return value.strftime(DATETIME_FORMAT)
        if isinstance(value, dt.date):
            return value.strftime(DATE_FORMAT) + " 00:00:00"
        text = str(value)
        if len(text) <= 10:
            return dt.datetime.strptime(text, DATE_FORMAT).strftime(DATETIME_FORMAT)
        # Like Odoo: the first 19 characters must be "YYYY-MM-DD HH:MM:SS" (no "T").
        return dt.datetime.strptime(text[:19], DATETIME_FORMAT).strftime(DATETIME_FORMAT)


class Selection(Field):
    type = "selection"

    def __init__(
        self,
        selection: SelectionSpec | None = None,
        string: str | None = None,
        *,
        selection_add: SelectionSpec | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(string, **kwargs)
        self.selection = selection or []
        # In an ``_inherit`` extension: values added to the inherited field's selection.
        self.selection_add = selection_add

    def get_selection(self, version: int) -> list[tuple[str, str]]:
        sel = self.selection
        return list(sel(version) if callable(sel) else sel)

    def extend(self, inherited: Selection) -> Selection:
        """The inherited field with this field's ``selection_add`` appended (as Odoo)."""
        merged = copy_module.copy(inherited)
        base, added = inherited.selection, self.selection_add

        def selection(version: int) -> list[tuple[str, str]]:
            values = list(base(version) if callable(base) else base)
            extra = list((added(version) if callable(added) else added) or ())
            keys = {key for key, _label in values}
            return values + [pair for pair in extra if pair[0] not in keys]

        merged.selection = selection
        if self.has_default():
            merged.default = self.default
        return merged

    def to_cache(self, value: Any, env: Environment) -> Any:
        if value is None or value is False:
            return False
        if value not in {key for key, _label in self.get_selection(env.version)}:
            raise ValueError(f"Wrong value for {self}: {value!r}")
        return value

    def describe(self, version: int) -> dict[str, Any]:
        desc = super().describe(version)
        desc["selection"] = [list(pair) for pair in self.get_selection(version)]
        return desc


class Json(Field):
    type = "json"
    hashable = False

    def to_cache(self, value: Any, env: Environment) -> Any:
        if value is None:
            return False
        return copy_module.deepcopy(value)

    def to_record(self, value: Any, env: Environment) -> Any:
        return copy_module.deepcopy(value)

    def to_read(self, value: Any, env: Environment, load: str | None) -> Any:
        return copy_module.deepcopy(value)


class Binary(Field):
    type = "binary"
    hashable = False

    def to_cache(self, value: Any, env: Environment) -> Any:
        if not value:
            return False
        if isinstance(value, bytes):
            return base64.b64encode(value).decode()
        return str(value)


class _Relational(Field):
    relational = True

    def __init__(self, comodel_name: str, string: str | None = None, **kwargs: Any) -> None:
        super().__init__(string, **kwargs)
        self.comodel_name = comodel_name

    def describe(self, version: int) -> dict[str, Any]:
        desc = super().describe(version)
        desc["relation"] = self.comodel_name
        return desc


class Many2one(_Relational):
    type = "many2one"

    def __init__(
        self,
        comodel_name: str,
        string: str | None = None,
        *,
        ondelete: str = "set null",
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("index", True)  # one2many reads and unlink cascades look it up
        super().__init__(comodel_name, string, **kwargs)
        # As in Odoo: a required many2one cannot be nulled by a deletion, so it restricts.
        if ondelete == "set null" and self.required:
            ondelete = "restrict"
        self.ondelete = ondelete

    def to_cache(self, value: Any, env: Environment) -> Any:
        if isinstance(value, (tuple, list)):
            value = value[0] if value else False
        if hasattr(value, "_ids"):
            value = value.id
        if not value:
            return False
        return int(value)

    def to_record(self, value: Any, env: Environment) -> Any:
        return env[self.comodel_name].browse((value,) if value else ())

    def to_read(self, value: Any, env: Environment, load: str | None) -> Any:
        if not value:
            return False
        if load != "_classic_read":
            return value
        record = env[self.comodel_name].sudo().browse((value,))
        return [value, record.display_name if record.exists() else False]


class One2many(_Relational):
    type = "one2many"
    hashable = False

    def __init__(
        self, comodel_name: str, inverse_name: str = "", string: str | None = None, **kwargs: Any
    ) -> None:
        # inverse_name may only be left out by a related one2many.
        kwargs.setdefault("copy", False)
        super().__init__(comodel_name, string, **kwargs)
        self.inverse_name = inverse_name
        self.store = False  # lives in the comodel's many2one, but searchable through it

    def describe(self, version: int) -> dict[str, Any]:
        desc = super().describe(version)
        desc.update(relation_field=self.inverse_name, searchable=True, sortable=False)
        return desc

    def to_record(self, value: Any, env: Environment) -> Any:
        return env[self.comodel_name].browse(value)

    def to_read(self, value: Any, env: Environment, load: str | None) -> Any:
        return list(value)


class Many2many(_Relational):
    type = "many2many"
    hashable = False

    @property
    def empty(self) -> Any:
        return ()

    def to_cache(self, value: Any, env: Environment) -> Any:
        if hasattr(value, "_ids"):
            return tuple(value._ids)
        return tuple(int(v) for v in value or ())

    def to_record(self, value: Any, env: Environment) -> Any:
        return env[self.comodel_name].browse(value)

    def to_read(self, value: Any, env: Environment, load: str | None) -> Any:
        return list(value)


class Id(Field):
    """The ``id`` column: ``rec.id`` is the id of a singleton, False on an empty recordset."""

    type = "integer"

    def __get__(self, record: Model | None, owner: Any = None) -> Any:
        if record is None:
            return self
        ids = record._ids
        if not ids:
            return False
        if len(ids) > 1:
            raise ValueError(f"Expected singleton: {record!r}")
        return ids[0]

    def __set__(self, record: Model, value: Any) -> None:
        raise TypeError("field 'id' cannot be assigned")
