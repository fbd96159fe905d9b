"""``OdooSimulator``: what the simulated Odoo server calls — databases, authentication, RPC
dispatch with Odoo's semantics, and automation rules (webhooks after commit).

Every RPC call runs in one transaction (``Database.transaction``): undone entirely if it
raises, flushed to the SQLite file when it commits. Automations triggered by the call run
last inside it ("Update Record" actions) or right after its commit (webhooks), so a rolled
back call never sends one. The server layer maps our ``errors`` to faults and statuses.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from . import base_models
from .api import available, is_model_method
from .errors import AccessDenied, AccessError, UserError
from .fields import Field
from .orm import Model, missing_error
from .registry import SUPERUSER_ID, Clock, Database, Environment, Registry, utc_now
from .storage import SqliteFile, Storage

__all__ = ["OdooSimulator"]

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

# Public names of the recordset API that Odoo does not expose over RPC.
_NOT_RPC = frozenset(
    {
        "browse",
        "with_context",
        "with_user",
        "sudo",
        "ensure_one",
        "mapped",
        "filtered",
        "sorted",
        "ids",
        "env",
        "has_group",
    }
)
_WEBHOOK_TRIGGERS = ("on_create", "on_write", "on_create_or_write")


def _import_optional(module: str) -> Any:
    """Import a module of the business layer if it exists yet."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module.startswith(exc.name):
            return None
        raise


def to_wire(value: Any) -> Any:
    """Recordsets become id lists, tuples lists, as Odoo's RPC layer marshals them."""
    if isinstance(value, Model):
        return list(value._ids)
    if isinstance(value, (list, tuple)):
        return [to_wire(v) for v in value]
    if isinstance(value, dict):
        return {str(k) if not isinstance(k, str) else k: to_wire(v) for k, v in value.items()}
    return value


def _locked(method: F) -> F:
    @functools.wraps(method)
    def locked(self: OdooSimulator, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return locked  # type: ignore[return-value]


class OdooSimulator:
    """A set of simulated Odoo databases of one version, and their RPC entry points."""

    def __init__(
        self,
        version: int = 17,
        *,
        path: str | Path | None = None,
        databases: Sequence[str] = ("demo",),
        demo: bool = True,
        clock: Clock | None = None,
    ) -> None:
        if version not in (16, 17, 18, 19):
            raise ValueError(f"unsupported Odoo version {version}; 16 to 19 are simulated")
        self.version = version
        self.clock = clock or utc_now
        self.webhook_sender: Callable[[str, bytes], None] | None = None
        # The ORM is single-threaded: calls from several threads (a server thread and a test,
        # say) take turns. Re-entrant, because a call may run inside another's transaction.
        self._lock = threading.RLock()
        self._addons = _import_optional("forgeline.sim.odoo.addons")
        self.registry = Registry(version)
        self._file = SqliteFile(path) if path is not None else None
        self._databases: dict[str, Database] = {}
        if self._file is not None:
            for name, stored_version in self._file.databases().items():
                if stored_version != version:
                    raise ValueError(
                        f"database {name!r} in {path} was made by Odoo {stored_version}, "
                        f"not {version}"
                    )
                self._open(name)
        for name in databases:
            if name not in self._databases:
                self.create_database(name, demo=demo)

    # -- databases -----------------------------------------------------------------------

    def _open(self, name: str) -> Database:
        storage = Storage(name, self._file)
        m2m = {
            model: {
                n for n, field in cls._fields.items() if field.type == "many2many" and field.store
            }
            for model, cls in self.registry.models.items()
        }
        empty_rows = {
            model: {
                f: field.empty
                for f, field in cls._fields.items()
                if field.store and field.type != "many2many" and f != "id"
            }
            for model, cls in self.registry.models.items()
        }
        storage.load(empty_rows, m2m)
        database = Database(name, self.registry, storage, self.clock)
        database.precommit = self._precommit
        self._databases[name] = database
        with self.transaction(name) as env:
            self._sync_models(env)
        return database

    def create_database(self, name: str, *, demo: bool = True) -> None:
        if name in self._databases:
            raise UserError(f"Database {name!r} already exists")
        storage = Storage(name, self._file)
        storage.register_version = self.version
        database = Database(name, self.registry, storage, self.clock)
        database.precommit = self._precommit
        self._databases[name] = database
        try:
            with self.transaction(name) as env:
                base_models.seed_base(env, demo=demo)
                self._sync_models(env)
                install = getattr(self._addons, "install", None)
                if install is not None:
                    install(env)  # what installing the addons creates (warehouse, routes...)
                if demo:
                    demo_data = _import_optional("forgeline.sim.odoo.demo_data")
                    if demo_data is not None:
                        demo_data.seed(env)
        except BaseException:
            del self._databases[name]
            raise

    def list_databases(self) -> list[str]:
        return sorted(self._databases)

    def database(self, name: str) -> Database:
        try:
            return self._databases[name]
        except KeyError:
            raise AccessDenied() from None

    def _sync_models(self, env: Environment) -> None:
        """``ir.model``/``ir.model.fields`` list every registered model (odoorpc checks)."""
        models = env["ir.model"]
        known = {r["model"]: r["id"] for r in models.search_read([], ["model"])}
        for name, cls in sorted(self.registry.models.items()):
            if name in known:
                continue
            model_id = models.create({"name": cls._description or name, "model": name}).id
            env["ir.model.fields"].create(
                [
                    {
                        "name": fname,
                        "model": name,
                        "model_id": model_id,
                        "field_description": field.string,
                        "ttype": field.type,
                        "relation": getattr(field, "comodel_name", False),
                        "required": field.required,
                        "readonly": field.readonly,
                        "store": field.store,
                    }
                    for fname, field in cls._fields.items()
                ]
            )

    @contextmanager
    def transaction(
        self, db: str, uid: int = SUPERUSER_ID, context: Mapping[str, Any] | None = None
    ) -> Iterator[Environment]:
        """One unit of work on ``db``: committed on success, undone entirely on error."""
        database = self.database(db)
        with self._lock, database.transaction():
            yield Environment(database, uid, context)

    def env(
        self, db: str, uid: int = SUPERUSER_ID, context: Mapping[str, Any] | None = None
    ) -> Environment:
        """An environment outside any transaction (reads, or tests that manage their own)."""
        return Environment(self.database(db), uid, context)

    # -- authentication ------------------------------------------------------------------

    def version_info(self) -> dict[str, Any]:
        serie = f"{self.version}.0"
        return {
            "server_version": serie,
            "server_version_info": [self.version, 0, 0, "final", 0, ""],
            "server_serie": serie,
            "protocol_version": 1,
        }

    def _user_row(self, db: str, uid: int) -> dict[str, Any] | None:
        database = self._databases.get(db)
        if database is None:
            return None
        row = database.storage.table("res.users").rows.get(uid)
        return row if row is not None and row.get("active") else None

    @_locked
    def authenticate(self, db: str, login: str, password: str) -> int | None:
        database = self._databases.get(db)
        if database is None or not login or not password:
            return None
        users = database.storage.table("res.users")
        for uid in users.ensure_index("login").get(login, ()):
            row = users.rows[uid]
            if not row.get("active"):
                continue
            if base_models.verify_secret(password, row.get("password_hash", False)):
                return uid
            if self.uid_for_api_key(db, password) == uid:
                return uid
        return None

    @_locked
    def uid_for_api_key(self, db: str, key: str) -> int | None:
        database = self._databases.get(db)
        if database is None or not isinstance(key, str) or len(key) != 40:
            return None
        keys = database.storage.table("res.users.apikeys")
        now = database.now().strftime("%Y-%m-%d %H:%M:%S")
        for rid in keys.ensure_index("index").get(key[:8], ()):
            row = keys.rows[rid]
            expiry = row.get("expiration_date")
            if expiry and expiry < now:
                continue
            if base_models.verify_secret(key, row.get("key", False)):
                uid = int(row["user_id"])
                return uid if self._user_row(db, uid) is not None else None
        return None

    @_locked
    def check_credentials(self, db: str, uid: int, password: str) -> None:
        row = self._user_row(db, uid) if isinstance(uid, int) else None
        if row is None or not password:
            raise AccessDenied()
        if base_models.verify_secret(password, row.get("password_hash", False)):
            return
        if self.uid_for_api_key(db, password) == uid:
            return
        raise AccessDenied()

    def create_api_key(
        self, db: str, uid: int, name: str, *, expiration_date: str | None = None
    ) -> str:
        key, index, hashed = base_models.new_api_key()
        with self.transaction(db) as env:
            env["res.users.apikeys"].create(
                {
                    "name": name,
                    "user_id": uid,
                    "index": index,
                    "key": hashed,
                    "scope": "rpc",
                    "expiration_date": expiration_date or False,
                }
            )
        return key

    @_locked
    def session_info(self, db: str, uid: int) -> dict[str, Any]:
        env = self.env(db, SUPERUSER_ID)
        user = env["res.users"].browse((uid,))
        context = user.with_user(uid).context_get()
        groups = env(user=uid).user_groups
        company = user.company_id
        info = self.version_info()
        return {
            "uid": uid,
            "is_system": "base.group_system" in groups,
            "is_admin": "base.group_erp_manager" in groups,
            "user_context": context,
            "db": db,
            "server_version": info["server_version"],
            "server_version_info": info["server_version_info"],
            "name": user.name,
            "username": user.login,
            "partner_display_name": user.partner_id.display_name,
            "partner_id": user.partner_id.id,
            "company_id": company.id or False,
            "user_companies": {
                "current_company": company.id or False,
                "allowed_companies": {
                    str(c.id): {"id": c.id, "name": c.name} for c in user.company_ids
                },
            },
        }

    # -- RPC -----------------------------------------------------------------------------

    def _method(self, database: Database, model: str, method: str) -> Callable[..., Any]:
        """The method RPC may call, or Odoo's error, in Odoo's order of checks.

        16/17 (odoo/service/model.py ``check_method_name``, before the model is looked up):
        ``^(_.*|init)$`` is private, AccessError "Private methods (such as _x) cannot be called
        remotely.". 18+ (``get_public_method``, after the model): an unknown method is an
        AttributeError "The method 'res.partner.foo' does not exist" (JSON-2: 404), a private
        one an AccessError "Private methods (such as 'res.partner._x') cannot be called
        remotely." (JSON-2: 403); 18 looks the method up first (a missing ``_x`` does not
        exist), 19 rejects a ``_`` name before looking it up."""
        version = self.version
        if version <= 17 and (method.startswith("_") or method == "init"):
            raise AccessError(f"Private methods (such as {method}) cannot be called remotely.")
        if model not in database.registry:
            raise UserError(f"Object {model} doesn't exist")
        private = (
            AccessError(f"Private methods (such as {method}) cannot be called remotely.")
            if version <= 17
            else AccessError(
                f"Private methods (such as '{model}.{method}') cannot be called remotely."
            )
        )
        if version >= 19 and method.startswith("_"):
            raise private
        missing = (
            AttributeError(f"The method '{method}' does not exist on the model '{model}'")
            if version <= 17
            else AttributeError(f"The method '{model}.{method}' does not exist")
        )
        cls = database.registry[model]
        func = getattr(cls, method, None)
        if func is None or isinstance(func, (Field, property)) or not callable(func):
            raise missing
        if method.startswith("_") or method in _NOT_RPC:
            raise private  # 18+: private names and @api.private helpers (sudo, browse...)
        if not available(func, version):
            raise missing
        return func  # type: ignore[no-any-return]

    def _check_uid(self, db: str, uid: int) -> None:
        if not isinstance(uid, int) or self._user_row(db, uid) is None:
            raise AccessDenied()

    @_locked
    def execute_kw(
        self, db: str, uid: int, model: str, method: str, args: list[Any], kwargs: dict[str, Any]
    ) -> Any:
        """Odoo's ``object.execute_kw`` after authentication: one call, one transaction."""
        database = self.database(db)
        self._check_uid(db, uid)
        self._method(database, model, method)
        kwargs = dict(kwargs or {})
        context = kwargs.pop("context", None) or {}
        args = list(args or [])
        with self.transaction(db, uid, context) as env:
            records = env[model]
            if is_model_method(type(records), method):
                result = getattr(records, method)(*args, **kwargs)
                if method == "create" and args and isinstance(args[0], Mapping):
                    return result.id
            else:
                if not args:
                    raise TypeError(f"{model}.{method}() missing the record ids (args[0])")
                ids, args = args[0], args[1:]
                result = getattr(records.browse(_ids(ids)), method)(*args, **kwargs)
            return to_wire(_downgrade(env, method, result))

    @_locked
    def call_json2(self, db: str, uid: int, model: str, method: str, body: dict[str, Any]) -> Any:
        """Odoo 19's ``/json/2/<model>/<method>``: named arguments, ``ids`` and ``context``."""
        database = self.database(db)
        self._check_uid(db, uid)
        self._method(database, model, method)
        params = dict(body or {})
        ids = params.pop("ids", None)
        context = params.pop("context", None) or {}
        with self.transaction(db, uid, context) as env:
            records = env[model]
            if not is_model_method(type(records), method):
                records = records.browse(_ids(ids or []))
            result = getattr(records, method)(**params)
            return to_wire(_downgrade(env, method, result))

    @_locked
    def describe_model(self, db: str, uid: int, model: str) -> dict[str, Any]:
        """What ``/doc-bearer/<model>.json`` serves: fields, and methods with parameters."""
        database = self.database(db)
        self._check_uid(db, uid)
        if model not in database.registry:
            raise UserError(f"Object {model} doesn't exist")
        env = Environment(database, uid)
        records = env[model]
        cls = type(records)
        methods: dict[str, Any] = {}
        for name in sorted(dir(cls)):
            if name.startswith("_") or name in _NOT_RPC:
                continue
            func = getattr(cls, name, None)
            if not inspect.isfunction(func) or not available(func, self.version):
                continue
            params = list(inspect.signature(func).parameters.values())[1:]
            methods[name] = {
                "api": ["model"] if is_model_method(cls, name) else [],
                "signature": f"({', '.join(str(p) for p in params)})",
                "parameters": {
                    p.name: {"default": repr(p.default)} if p.default is not p.empty else {}
                    for p in params
                    if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
                },
                "doc": inspect.getdoc(func) or "",
            }
        return {
            "model": model,
            "name": cls._description or model,
            "fields": records.sudo().fields_get(),
            "methods": methods,
        }

    # -- automations ---------------------------------------------------------------------

    def _precommit(self, database: Database) -> list[Callable[[], None]]:
        """Run the automation rules the transaction's changes triggered; webhooks after commit."""
        if not database.events:
            return []
        env = Environment(database, SUPERUSER_ID, {"active_test": True})
        automations = env["base.automation"]
        rules = automations.browse(automations._search_ids([("trigger", "in", _WEBHOOK_TRIGGERS)]))
        if not rules:
            return []
        by_model: dict[str, list[Model]] = {}
        for rule in rules:
            by_model.setdefault(rule.model_name, []).append(rule)
        sends: dict[tuple[int, int], tuple[str, bytes]] = {}
        done: set[tuple[int, int, str]] = set()
        position = 0
        for _round in range(10):  # "Update Record" actions can trigger further rules
            events = database.events[position:]
            position = len(database.events)
            if not events:
                break
            for kind, model, rid, changed in events:
                for rule in by_model.get(model, ()):
                    if not _triggered(rule, kind, changed):
                        continue
                    record = env[model].browse((rid,))
                    if not record.exists():
                        continue
                    if rule.filter_domain and not record._search_ids(
                        [("id", "=", rid), *rule.filter_domain]
                    ):
                        continue
                    if rule.action == "webhook":
                        sends[(rule.id, rid)] = (rule.url, self._webhook_body(rule, record))
                    elif (rule.id, rid, kind) not in done:
                        done.add((rule.id, rid, kind))
                        _apply_action(rule, record)
        # Bodies reflect the state about to be committed, not the state of each event.
        for (rule_id, rid), (url, _body) in list(sends.items()):
            rule = automations.browse((rule_id,))
            record = env[rule.model_name].browse((rid,))
            if record.exists():
                sends[(rule_id, rid)] = (url, self._webhook_body(rule, record))
            else:
                del sends[(rule_id, rid)]
        return [functools.partial(self._send, url, body) for url, body in sends.values()]

    def _webhook_body(self, rule: Model, record: Model) -> bytes:
        names = [n for n in (rule.webhook_field_ids or []) if n in record._fields]
        values = record.sudo().read(names, load="_classic_write")[0] if names else {}
        payload = {
            **values,
            "_model": record._name,
            "_id": record.id,
            "_action": f"{rule.name}(#{rule.id})",
            "id": record.id,
        }
        return json.dumps(payload, sort_keys=True, default=str).encode()

    def _send(self, url: str, body: bytes) -> None:
        sender = self.webhook_sender
        if sender is None or not url:
            return
        try:
            sender(url, body)
        except Exception:  # Odoo logs a failed webhook and moves on: no retry.
            log.warning("webhook to %s failed", url, exc_info=True)

    @_locked
    def run_incoming_webhook(
        self, db_or_none: str | None, uuid: str, payload: dict[str, Any]
    ) -> None:
        """``/web/hook/<uuid>``: apply the rule's action to the record named by the payload."""
        names = [db_or_none] if db_or_none else self.list_databases()
        for db in names:
            if db not in self._databases:
                continue
            env = self.env(db, SUPERUSER_ID)
            automations = env["base.automation"]
            found = automations._search_ids(
                [("webhook_uuid", "=", uuid), ("trigger", "=", "on_webhook")]
            )
            if not found:
                continue
            with self.transaction(db, SUPERUSER_ID) as tx_env:
                rule = tx_env["base.automation"].browse(found[:1])
                model = payload.get("_model") or rule.model_name
                if model not in tx_env:
                    raise UserError(f"Object {model} doesn't exist")
                rid = payload.get("_id") or payload.get("id")
                record = tx_env[model].browse(_ids(rid) if rid else ())
                if rid and not record.exists():
                    raise missing_error(model, [rid], SUPERUSER_ID)
                _apply_action(rule, record)
            return
        raise KeyError(uuid)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _downgrade(env: Environment, method: str, result: Any) -> Any:
    """What ``@api.returns('self', lambda value: value.id)`` gives an RPC caller: ``copy``
    answers the new id on 16/17 (18 dropped the decorator: a list of ids)."""
    if method == "copy" and env.version <= 17 and isinstance(result, Model):
        return result.id
    return result


def _ids(value: Any) -> list[int]:
    if isinstance(value, bool):
        raise TypeError(f"invalid record ids: {value!r}")
    if isinstance(value, int):
        return [value]
    return [int(v) for v in value]


def _triggered(rule: Model, kind: str, changed: frozenset[str]) -> bool:
    trigger = rule.trigger
    if kind == "create":
        return trigger in ("on_create", "on_create_or_write")
    if trigger not in ("on_write", "on_create_or_write"):
        return False
    watched = rule.trigger_field_ids or []
    return not watched or not changed.isdisjoint(watched)


def _apply_action(rule: Model, record: Model) -> None:
    if not record:
        return
    if rule.action == "write":
        record.with_context(automation_rule=rule.id).write(dict(rule.write_values or {}))
    elif rule.action == "method":
        getattr(record, rule.method_name)()
