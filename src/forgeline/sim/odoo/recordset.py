"""Recordsets of the simulated ORM: the part of a model that holds no CRUD.

``BaseModel`` is an environment plus a tuple of ids. It gives field access (``rec.field``:
stored values from ``storage.Table`` rows, computed and related fields evaluated on read),
the recordset operations of Odoo (iteration, ``mapped``, ``filtered``, set operators...) and
the ``_access`` check. ``search.py``, ``grouping.py``, ``importing.py`` and ``orm.py`` build
``Model`` on top of it, one concern per module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from . import fields
from .api import model_method, versioned
from .errors import AccessError, MissingError

if TYPE_CHECKING:
    from .registry import Environment
    from .storage import Table

__all__ = ["BaseModel", "missing_error"]

M = TypeVar("M", bound="BaseModel")

_OPERATION_VERBS = {"read": "access", "write": "modify", "create": "create", "unlink": "delete"}


def missing_error(model: str, ids: Iterable[int], uid: int) -> MissingError:
    # Odoo shows the recordset's repr: "sale.order(99,)", "sale.order(4, 5)".
    return MissingError(
        f"Record does not exist or has been deleted.\n(Record: {model}{tuple(ids)!r}, User: {uid})"
    )


class BaseModel:
    """A recordset: an environment and a tuple of ids, with field access and access rules."""

    _name: ClassVar[str] = ""
    _inherit: ClassVar[str | Sequence[str] | None] = None
    _description: ClassVar[str | None] = None
    _order: ClassVar[str] = "id"
    _rec_name: ClassVar[str] = ""
    _parent_name: ClassVar[str] = "parent_id"
    _access: ClassVar[Mapping[str, Sequence[str]]] = {}
    _unique: ClassVar[Sequence[tuple[str, ...]]] = ()
    _abstract: ClassVar[bool] = False

    # Set per class by __init_subclass__ and per registry class by Registry.
    _own_fields: ClassVar[dict[str, fields.Field]] = {}
    _fields: ClassVar[dict[str, fields.Field]] = {}
    _model_name: ClassVar[str] = ""
    _parents: ClassVar[tuple[str, ...]] = ()

    id = fields.Id(string="ID")
    display_name = fields.Char(string="Display Name", compute="_compute_display_name")
    create_date = fields.Datetime(string="Created on", readonly=True)
    create_uid = fields.Many2one("res.users", string="Created by", readonly=True, index=False)
    write_date = fields.Datetime(string="Last Updated on", readonly=True)
    write_uid = fields.Many2one("res.users", string="Last Updated by", readonly=True, index=False)

    if TYPE_CHECKING:
        # Fields are declared per model: to the type checker, any attribute may be one.
        def __getattr__(self, name: str) -> Any: ...

    def __init__(self, env: Environment, ids: Sequence[int] = ()) -> None:
        self.env = env
        self._ids: tuple[int, ...] = tuple(ids)

    # -- recordset protocol --------------------------------------------------------------

    @property
    def ids(self) -> list[int]:
        return list(self._ids)

    def __iter__(self: M) -> Iterator[M]:
        cls = type(self)
        for rid in self._ids:
            yield cls(self.env, (rid,))

    def __len__(self) -> int:
        return len(self._ids)

    def __bool__(self) -> bool:
        return bool(self._ids)

    def __repr__(self) -> str:
        return f"{self._name}{self._ids!r}"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BaseModel):
            return NotImplemented
        return self._name == other._name and set(self._ids) == set(other._ids)

    def __hash__(self) -> int:
        return hash((self._name, frozenset(self._ids)))

    def __contains__(self, item: object) -> bool:
        return isinstance(item, BaseModel) and item._name == self._name and item.id in self._ids

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return self._get_field_value(key)
        if isinstance(key, slice):
            return self.browse(self._ids[key])
        return self.browse((self._ids[key],))

    def __add__(self: M, other: M) -> M:
        return self.browse(self._ids + other._ids)

    def __or__(self: M, other: M) -> M:
        return self.browse(dict.fromkeys(self._ids + other._ids))

    def __and__(self: M, other: M) -> M:
        keep = set(other._ids)
        return self.browse(dict.fromkeys(i for i in self._ids if i in keep))

    def __sub__(self: M, other: M) -> M:
        drop = set(other._ids)
        return self.browse(i for i in self._ids if i not in drop)

    def browse(self: M, ids: Any = ()) -> M:
        if isinstance(ids, int) and not isinstance(ids, bool):
            ids = (ids,)
        elif isinstance(ids, BaseModel):
            ids = ids._ids
        elif not ids:
            ids = ()
        return type(self)(self.env, tuple(ids))

    def ensure_one(self: M) -> M:
        if len(self._ids) != 1:
            raise ValueError(f"Expected singleton: {self!r}")
        return self

    def exists(self: M) -> M:
        rows = self._table().rows
        return self.browse(i for i in self._ids if i in rows)

    def with_context(self: M, *args: Mapping[str, Any], **kwargs: Any) -> M:
        context = dict(args[0]) if args else dict(self.env.context)
        context.update(kwargs)
        return type(self)(self.env(context=context), self._ids)

    def sudo(self: M, flag: bool = True) -> M:
        return type(self)(self.env(su=flag), self._ids)

    def with_user(self: M, uid: int) -> M:
        return type(self)(self.env(user=uid), self._ids)

    def mapped(self, path: str | Callable[[Any], Any]) -> Any:
        if callable(path):
            return [path(rec) for rec in self]
        records: Any = self
        for name in path.split("."):
            field = records._fields[name]
            if field.relational:
                ids: dict[int, None] = {}
                for rec in records:
                    ids.update(dict.fromkeys(rec._get_field_value(name)._ids))
                records = records.env[field.comodel_name].browse(ids)
            else:
                return [rec._get_field_value(name) for rec in records]
        return records

    def filtered(self: M, func: str | Callable[[M], Any]) -> M:
        if isinstance(func, str):
            name = func
            return self.browse(r.id for r in self if r.mapped(name))
        return self.browse(r.id for r in self if func(r))

    def sorted(self: M, key: Callable[[M], Any] | str | None = None, reverse: bool = False) -> M:
        if key is None:
            ordered: list[int] = self._search_ids([("id", "in", self._ids)])
            return self.browse(ordered[::-1] if reverse else ordered)
        getter: Callable[[Any], Any]
        if isinstance(key, str):
            name = key
            getter = lambda record: record._get_field_value(name)  # noqa: E731
        else:
            getter = key
        records = [self.browse((rid,)) for rid in self._ids]
        records.sort(key=getter, reverse=reverse)
        return self.browse(r.id for r in records)

    # -- metadata ------------------------------------------------------------------------

    def _table(self, model: str | None = None) -> Table:
        return self.env.storage.table(model or self._name)

    @classmethod
    def _rec_name_field(cls) -> str | None:
        if cls._rec_name:
            return cls._rec_name
        return "name" if "name" in cls._fields else None

    def _check_access(self, operation: str) -> None:
        env = self.env
        if env.su:
            return
        allowed = self._access.get(operation)
        if allowed is None and operation in ("create", "unlink"):
            allowed = self._access.get("write")
        if allowed is None:
            return
        groups = env.user_groups
        if "base.group_system" in groups or groups.intersection(allowed):
            return
        verb = _OPERATION_VERBS.get(operation, operation)
        names = []
        for xmlid in allowed:
            group = env(su=True).ref(xmlid, raise_if_not_found=False)
            names.append(f"\t- {group.display_name if group is not None else xmlid}")
        raise AccessError(
            f"You are not allowed to {verb} '{self._description}' ({self._name}) records.\n\n"
            "This operation is allowed for the following groups:\n"
            + "\n".join(names)
            + "\n\nContact your administrator to request access if necessary."
        )

    @versioned(until=17)
    @model_method
    def check_access_rights(self, operation: str, raise_exception: bool = True) -> bool:
        try:
            self._check_access(operation)
        except AccessError:
            if raise_exception:
                raise
            return False
        return True

    @versioned(since=18)
    def check_access(self, operation: str) -> None:
        self._check_access(operation)

    # -- field values --------------------------------------------------------------------

    def _get_field_value(self, name: str) -> Any:
        field = self._fields.get(name)
        if field is None:
            raise AttributeError(f"'{self._name}' object has no attribute '{name}'")
        env = self.env
        ids = self._ids
        if len(ids) != 1:
            if ids:
                raise ValueError(f"Expected singleton: {self!r}")
            return field.to_record(field.empty if field.type != "one2many" else (), env)
        rid = ids[0]
        if field.store:
            row = env.storage.table(self._name).rows.get(rid)
            if row is None:
                raise missing_error(self._name, ids, env.uid)
            return field.to_record(row.get(name, field.empty), env)
        return field.to_record(self._compute_values(field, ids)[rid], env)

    def _set_field_value(self, name: str, value: Any) -> None:
        field = self._fields[name]
        if field.store:
            self.write({name: value})
            return
        computed = self.env.database.computed
        cached = field.to_cache(value, self.env) if field.type != "one2many" else value
        if field.type == "one2many" and hasattr(value, "_ids"):
            cached = value._ids
        for rid in self._ids:
            computed[(self._name, name, rid)] = cached

    def _compute_values(self, field: fields.Field, ids: Sequence[int]) -> dict[int, Any]:
        """Values of a non-stored field for ``ids``, in storage form."""
        env = self.env
        if field.related:
            return self._related_values(field, ids)
        if field.type == "one2many" and not field.compute:
            return self._one2many_ids(field, ids)
        if field.name == "display_name" and type(self)._compute_display_name is (
            BaseModel._compute_display_name
        ):
            return self._default_display_names(ids)
        computed = env.database.computed
        key = (self._name, field.name)
        records = self.browse(ids)
        getattr(records, str(field.compute))()
        return {rid: computed.pop((*key, rid), field.empty) for rid in ids}

    def _one2many_ids(self, field: fields.Field, ids: Sequence[int]) -> dict[int, Any]:
        comodel = self.env[field.comodel_name]  # type: ignore[attr-defined]
        inverse = field.inverse_name  # type: ignore[attr-defined]
        table = comodel._table()
        index = table.ensure_index(inverse)
        result: dict[int, Any] = {}
        for rid in ids:
            children = index.get(rid)
            if not children:
                result[rid] = ()
            elif comodel._order == "id" or len(children) == 1:
                result[rid] = tuple(sorted(children))
            else:
                result[rid] = tuple(comodel._search_ids([("id", "in", list(children))]))
        return result

    def _related_values(self, field: fields.Field, ids: Sequence[int]) -> dict[int, Any]:
        path = str(field.related).split(".")
        result: dict[int, Any] = {}
        for rec in self.browse(ids).sudo():
            value: Any = rec
            for name in path:
                value = value[0] if len(value) > 1 else value
                value = value._get_field_value(name) if value else False
            if hasattr(value, "_ids"):
                value = value._ids[0] if field.type == "many2one" and value else value._ids
            result[rec._ids[0]] = value if value is not None else field.empty
        return result

    def _default_display_names(self, ids: Sequence[int]) -> dict[int, Any]:
        rec_name = self._rec_name_field()
        rows = self._table().rows
        if rec_name is None:
            return {rid: f"{self._name},{rid}" for rid in ids}
        field = self._fields[rec_name]
        if field.store and field.type != "many2one":
            return {rid: rows[rid].get(rec_name) or False if rid in rows else False for rid in ids}
        names = {}
        for rec in self.browse(ids):
            value = rec._get_field_value(rec_name)
            names[rec._ids[0]] = value.display_name if hasattr(value, "_ids") else value
        return names

    def _compute_display_name(self) -> None:
        for rid, name in self._default_display_names(self._ids).items():
            self.env.database.computed[(self._name, "display_name", rid)] = name


BaseModel._own_fields = {k: v for k, v in vars(BaseModel).items() if isinstance(v, fields.Field)}
