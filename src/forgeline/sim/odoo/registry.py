"""Model classes per Odoo version, and the environment a call runs in.

Model definitions (``class X(Model)``) register themselves when their module is imported. A
``Registry`` merges, for one Odoo major, every definition of a model (``_name``) and its
extensions (``_inherit``) into one class whose MRO puts extensions first, so ``super()``
chains like in Odoo; fields outside their ``since``/``until`` bounds are left out. A
``Database`` is a registry plus its storage and clock; an ``Environment`` is a database seen
by one user with one context, as ``self.env`` in Odoo.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

from .api import model_method
from .fields import DATE_FORMAT, DATETIME_FORMAT, Field, Selection
from .storage import Storage

if TYPE_CHECKING:
    from .orm import Model

__all__ = ["SUPERUSER_ID", "Database", "Environment", "Registry"]

SUPERUSER_ID = 1

Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Registry:
    """Every model class of one Odoo major, built from the imported definitions."""

    def __init__(self, version: int) -> None:
        from .orm import definitions

        self.version = version
        self.models: dict[str, type[Model]] = {}
        self._definitions = definitions()
        # comodel -> [(model, field)] of many2one/many2many fields pointing at it (unlink).
        self.references: dict[str, list[tuple[str, Field]]] = {}
        for cls in self._definitions:
            self._build(cls._model_name)
        for name, model in self.models.items():
            for field in model._fields.values():
                if field.type in ("many2one", "many2many") and field.store:
                    comodel = field.comodel_name  # type: ignore[attr-defined]
                    self.references.setdefault(comodel, []).append((name, field))

    def __getitem__(self, name: str) -> type[Model]:
        return self.models[name]

    def __contains__(self, name: object) -> bool:
        return name in self.models

    def _build(self, name: str) -> type[Model]:
        built = self.models.get(name)
        if built is not None:
            return built
        defs = [c for c in self._definitions if c._model_name == name]
        if not defs:
            raise KeyError(f"model {name!r} is inherited but never defined")
        parents: list[str] = []
        for cls in defs:
            for parent in cls._parents:
                if parent != name and parent not in parents:
                    parents.append(parent)
        bases = (*reversed(defs), *(self._build(p) for p in parents))
        namespace: dict[str, Any] = {"_name": name, "_registry_class": True, "_fields": {}}
        model = cast("type[Model]", type(name.replace(".", "_"), bases, namespace))
        fields: dict[str, Field] = {}
        for klass in reversed(model.__mro__):
            for fname, field in vars(klass).get("_own_fields", {}).items():
                if field.active_for(self.version):
                    inherited = fields.get(fname)
                    if isinstance(field, Selection) and field.selection_add is not None:
                        if not isinstance(inherited, Selection):
                            raise TypeError(f"{name}.{fname}: selection_add needs a selection")
                        field = field.extend(inherited)
                    own = copy.copy(field)
                    own.model_name = name
                    fields[fname] = own
                else:
                    fields.pop(fname, None)
        model._fields = fields
        model.create = _normalizing_create(model)  # type: ignore[method-assign]
        if self.version <= 17:
            # 18 renamed name_search's domain keyword ``args`` to ``domain``.
            model.name_search = _args_name_search(model)  # type: ignore[method-assign]
        order = getattr(model, "_order_by_version", None)
        if order is not None:
            model._order = order(self.version)
        self.models[name] = model
        return model


def _normalizing_create(model: type[Model]) -> Callable[..., Any]:
    """``create`` overrides always receive a list of dicts (Odoo's ``model_create_multi``)."""

    def create(self: Any, vals_list: Any) -> Any:
        if isinstance(vals_list, Mapping):
            vals_list = [vals_list]
        return super(model, self).create([dict(vals) for vals in vals_list])

    create.__doc__ = "Create records from a dict or a list of dicts; returns the new recordset."
    return model_method(create)


def _args_name_search(model: type[Model]) -> Callable[..., Any]:
    """Odoo 16/17's ``name_search(name='', args=None, operator='ilike', limit=100)``."""

    def name_search(
        self: Any,
        name: str = "",
        args: Any = None,
        operator: str = "ilike",
        limit: int | None = 100,
    ) -> Any:
        return super(model, self).name_search(name, args, operator, limit)

    name_search.__doc__ = "Records whose display name matches ``name``, within ``args``."
    name_search.__qualname__ = "BaseModel.name_search"  # how Odoo's TypeErrors name it
    return model_method(name_search)


class Database:
    """One simulated database: its registry, its rows, its clock, and per-call bookkeeping."""

    def __init__(self, name: str, registry: Registry, storage: Storage, clock: Clock) -> None:
        self.name = name
        self.registry = registry
        self.storage = storage
        self.clock = clock
        self._last_now: dt.datetime | None = None
        # The running transaction's timestamp (PostgreSQL's now(), Odoo's cr.now()).
        self._tx_stamp: str | None = None
        # (kind, model, id, changed field names) of the running transaction, for automations.
        self.events: list[tuple[str, str, int, frozenset[str]]] = []
        # Values assigned by compute methods, read back by the ORM: (model, field, id) -> value.
        self.computed: dict[tuple[str, str, int], Any] = {}
        self.depth = 0
        # Set by the service: runs last inside the transaction (automations) and returns what
        # to do once it committed (webhooks).
        self.precommit: Callable[[Database], list[Callable[[], None]]] | None = None

    @property
    def version(self) -> int:
        return self.registry.version

    def _precise_now(self) -> dt.datetime:
        now = self.clock()
        if now.tzinfo is not None:
            now = now.astimezone(dt.UTC).replace(tzinfo=None)
        # Never earlier than what was handed out: write_date is a sync watermark.
        if self._last_now is not None and now < self._last_now:
            now = self._last_now
        self._last_now = now
        return now

    def now(self) -> dt.datetime:
        """The current UTC time to the second (what datetime fields hold)."""
        return self._precise_now().replace(microsecond=0)

    def stamp(self) -> str:
        """``create_date``/``write_date`` of what the running transaction writes: its start
        time to the microsecond, like PostgreSQL's ``now()`` behind Odoo's ``cr.now()``. Stored
        as "YYYY-MM-DD HH:MM:SS.ffffff" (no fraction on a whole second, so it still compares
        like PostgreSQL with a wire value of that second); ``read`` sends the second only."""
        if self._tx_stamp is not None:
            return self._tx_stamp
        now = self._precise_now()
        text = now.strftime(DATETIME_FORMAT)
        if now.microsecond:
            text += f".{now.microsecond:06d}"
        if self.depth:
            self._tx_stamp = text
        return text

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Run a unit of work: undone entirely if it raises; nested calls use a savepoint."""
        storage = self.storage
        if self.depth:
            mark = storage.savepoint()
            events = len(self.events)
            self.depth += 1
            try:
                yield
            except BaseException:
                storage.rollback(mark)
                del self.events[events:]
                raise
            finally:
                self.depth -= 1
            return
        self.depth = 1
        after_commit: list[Callable[[], None]] = []
        try:
            yield
            if self.precommit is not None:
                after_commit = self.precommit(self)
            storage.commit()
        except BaseException:
            storage.rollback()
            raise
        finally:
            self.depth = 0
            self._tx_stamp = None
            self.events.clear()
            self.computed.clear()
        for callback in after_commit:
            callback()


class Environment(Mapping[str, "Model"]):
    """A database seen by one user with one context: ``self.env`` of model code."""

    def __init__(
        self,
        database: Database,
        uid: int,
        context: Mapping[str, Any] | None = None,
        su: bool = False,
    ) -> None:
        self.database = database
        self.registry = database.registry
        self.storage = database.storage
        self.uid = uid
        self.context: dict[str, Any] = dict(context or {})
        self.su = su or uid == SUPERUSER_ID
        self._groups: frozenset[str] | None = None

    @property
    def version(self) -> int:
        return self.registry.version

    def __getitem__(self, name: str) -> Model:
        return self.registry.models[name](self, ())

    def __iter__(self) -> Iterator[str]:
        return iter(self.registry.models)

    def __len__(self) -> int:
        return len(self.registry.models)

    def __contains__(self, name: object) -> bool:
        return name in self.registry.models

    def __call__(
        self,
        user: int | None = None,
        context: Mapping[str, Any] | None = None,
        su: bool | None = None,
    ) -> Environment:
        uid = self.uid if user is None else user
        return Environment(
            self.database,
            uid,
            self.context if context is None else context,
            (self.su if user is None else False) if su is None else su,
        )

    @property
    def user(self) -> Model:
        return self["res.users"].browse((self.uid,))

    @property
    def company(self) -> Model:
        company = self.user.sudo().company_id
        return company if company else self["res.company"].browse((1,))

    @property
    def lang(self) -> str:
        return str(self.context.get("lang") or "en_US")

    @property
    def user_groups(self) -> frozenset[str]:
        """External ids of the user's groups (for ``_access`` checks)."""
        if self._groups is None:
            users = self.storage.table("res.users").rows
            group_ids = users.get(self.uid, {}).get("groups_id", ())
            self._groups = frozenset(
                xmlid for gid in group_ids if (xmlid := self.xmlid_of("res.groups", gid))
            )
        return self._groups

    def xmlid_of(self, model: str, res_id: int) -> str | None:
        table = self.storage.table("ir.model.data")
        for rid in table.ensure_index("res_id").get(res_id, ()):
            row = table.rows[rid]
            if row.get("model") == model:
                return f"{row['module']}.{row['name']}"
        return None

    def xmlid_lookup(self, xmlid: str) -> tuple[str, int] | None:
        """``module.name`` -> (model, res_id) from ``ir.model.data``, or None."""
        module, _, name = xmlid.rpartition(".")
        table = self.storage.table("ir.model.data")
        for rid in table.ensure_index("name").get(name, ()):
            row = table.rows[rid]
            if row.get("module") == module:
                return str(row["model"]), int(row["res_id"])
        return None

    def ref(self, xmlid: str, raise_if_not_found: bool = True) -> Model | None:
        found = self.xmlid_lookup(xmlid)
        if found is not None:
            record = self[found[0]].browse((found[1],))
            if record.exists():
                return record
        if raise_if_not_found:
            raise ValueError(f"External ID not found in the system: {xmlid}")
        return None

    def now(self) -> str:
        """The current UTC time as Odoo's wire string; never earlier than a previous one."""
        return self.database.now().strftime(DATETIME_FORMAT)

    def today(self) -> str:
        return self.database.now().strftime(DATE_FORMAT)

    def next_sequence(self, code: str, prefix: str = "", padding: int = 5) -> str:
        """The next number of sequence ``code`` (transactional, persisted), e.g. "S00001"."""
        value = self.storage.next_sequence(code)
        return f"{prefix}{value:0{padding}d}"
