"""Settings of a hub: defaults, then the YAML config file, then ``FORGELINE_*`` variables,
then command-line options (each overriding the one before)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from .exceptions import ConfigError
from .mapping.cache import compiled_mapping
from .ownership.registry import ENTITIES, OwnershipRegistry, OwnershipRule
from .route.flow import expand_flows
from .route.subscription import FileSink, MqttSink, OdooSink, SubscriptionSpec
from .systems import (
    SYSTEM_KINDS,
    FilesSystem,
    MqttSystem,
    OdooSystem,
    SystemSpec,
    system_spec,
)

__all__ = ["Settings", "unknown_system"]

MiB = 1024 * 1024


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path(".forgeline")
    host: str = "127.0.0.1"
    port: int = 8080
    log_url: str | None = None  # default: sqlite:///<data_dir>/events.db
    store_url: str | None = None  # default: sqlite:///<data_dir>/state.db
    max_body_bytes: int = MiB
    max_batch: int = 1000
    max_page: int = 1000
    retention_seconds: float = 7 * 86_400
    # api: HTTP only; worker: routing, delivery, sources, housekeeping; all: both (embedded).
    role: Literal["all", "api", "worker"] = "all"
    # The Odoo system the synchronous business APIs read and write; None: the only one.
    erp: str | None = None
    # Access tokens: their audience is the environment this hub serves; their issuer the
    # hub's public base URL (None: http://<host>:<port>), the same for every API process.
    environment: Literal["dev", "test", "prod"] = "dev"
    issuer: str | None = None
    token_ttl: float = 300.0
    # Per principal (or per client address before authentication): requests/s and burst.
    rate_limit: float = 1000.0
    rate_burst: int = 2000
    # redis://… shares the budgets between API processes; None: each process counts its own.
    ratelimit_url: str | None = None
    ratelimit_on_outage: Literal["local", "closed"] = "local"
    cors_origins: tuple[str, ...] = ()
    force_hsts: bool = False
    # The availability API: answers reused this long (s); how long a request waits on Odoo
    # before it gets the last known value; the oldest value still worth serving.
    availability_ttl: float = 5.0
    availability_deadline: float = 2.0
    availability_max_stale: float = 3600.0
    # Outbound webhooks: networks they may reach despite the SSRF rules (plus the CIDRs in
    # FORGELINE_EGRESS_ALLOW), https only, and how long an endpoint may fail before it is
    # disabled (seconds).
    egress_allow: tuple[str, ...] = ()
    egress_https_only: bool = False
    webhook_disable_after: float = 5 * 86_400.0
    # The config's subscriptions, then one per target of each of its flows.
    subscriptions: tuple[SubscriptionSpec, ...] = field(default_factory=tuple)
    systems: dict[str, SystemSpec] = field(default_factory=dict)
    ownership: tuple[OwnershipRule, ...] = field(default_factory=tuple)
    config_file: Path | None = None

    @property
    def log(self) -> str:
        return self.log_url or f"sqlite:///{self.data_dir / 'events.db'}"

    @property
    def store(self) -> str:
        return self.store_url or f"sqlite:///{self.data_dir / 'state.db'}"

    @property
    def public_url(self) -> str:
        """The issuer of access tokens: the hub's base URL as its callers reach it."""
        return (self.issuer or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def embedded(self) -> bool:
        """One process owns the state: a SQLite (or in-memory) log or store."""
        return any(url.startswith(("sqlite:", "memory:")) for url in (self.log, self.store))

    @classmethod
    def load(
        cls,
        *,
        config_file: Path | None = None,
        env: dict[str, str] | None = None,
        **overrides: Any,
    ) -> Settings:
        env = dict(os.environ) if env is None else env
        settings = cls()
        config_file = config_file or (
            Path(env["FORGELINE_CONFIG"]) if "FORGELINE_CONFIG" in env else None
        )
        if config_file is not None:
            settings = _apply_file(settings, config_file)
        from_env: dict[str, Any] = {}
        if "FORGELINE_DATA_DIR" in env:
            from_env["data_dir"] = Path(env["FORGELINE_DATA_DIR"])
        if "FORGELINE_PORT" in env:
            try:
                from_env["port"] = int(env["FORGELINE_PORT"])
            except ValueError as exc:
                raise ConfigError(
                    f"FORGELINE_PORT={env['FORGELINE_PORT']!r} is not a port"
                ) from exc
        for name, key in (
            ("log_url", "FORGELINE_LOG_URL"),
            ("store_url", "FORGELINE_STORE_URL"),
            ("role", "FORGELINE_ROLE"),
            ("environment", "FORGELINE_ENVIRONMENT"),
            ("issuer", "FORGELINE_ISSUER"),
            ("ratelimit_url", "FORGELINE_RATELIMIT_URL"),
        ):
            if key in env:
                from_env[name] = env[key]
        settings = replace(settings, **from_env)
        settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
        if settings.role not in ("all", "api", "worker"):
            raise ConfigError(f"role {settings.role!r} is not one of all, api, worker")
        if settings.environment not in ("dev", "test", "prod"):
            raise ConfigError(f"environment {settings.environment!r} is not dev, test or prod")
        if settings.ratelimit_on_outage not in ("local", "closed"):
            raise ConfigError("ratelimit_on_outage is local or closed")
        if settings.rate_limit <= 0 or settings.rate_burst < 1:
            raise ConfigError("rate_limit must be > 0 requests/s and rate_burst >= 1")
        if min(settings.availability_ttl, settings.availability_deadline) <= 0:
            raise ConfigError("availability_ttl and availability_deadline must be > 0 seconds")
        if settings.availability_max_stale < 0:
            raise ConfigError("availability_max_stale must be >= 0 seconds")
        if settings.role != "all" and settings.embedded:
            raise ConfigError(
                f"--role {settings.role} needs shared backends (a postgresql:// store and a "
                "postgresql:// or nats:// log): an embedded SQLite hub is one process"
            )
        return settings


_HUB_KEYS = {
    "data_dir": Path,
    "host": str,
    "port": int,
    "log_url": str,
    "store_url": str,
    "max_body_bytes": int,
    "max_batch": int,
    "max_page": int,
    "retention_seconds": float,
    "role": str,
    "erp": str,
    "environment": str,
    "issuer": str,
    "token_ttl": float,
    "rate_limit": float,
    "rate_burst": int,
    "ratelimit_url": str,
    "ratelimit_on_outage": str,
    "cors_origins": tuple,
    "force_hsts": bool,
    "availability_ttl": float,
    "availability_deadline": float,
    "availability_max_stale": float,
    "egress_allow": tuple,
    "egress_https_only": bool,
    "webhook_disable_after": float,
}


def _apply_file(settings: Settings, path: Path) -> Settings:
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: the config must be a mapping")
    unknown = set(document) - {"hub", "subscriptions", "systems", "flows", "mappings", "ownership"}
    if unknown:
        raise ConfigError(f"{path}: unknown top-level keys {sorted(unknown)}")
    hub = document.get("hub") or {}
    values: dict[str, Any] = {"config_file": path}
    for key, value in hub.items():
        kind = _HUB_KEYS.get(key)
        if kind is None:
            raise ConfigError(f"{path}: hub.{key} is not a setting ({', '.join(_HUB_KEYS)})")
        try:
            if kind in (tuple, bool) and not isinstance(value, list if kind is tuple else bool):
                raise TypeError(f"expected a {'list' if kind is tuple else 'boolean'}")
            values[key] = kind(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{path}: hub.{key}: {exc}") from exc
    values["subscriptions"] = tuple(
        _validated(path, f"subscriptions[{index}]", SubscriptionSpec, item)
        for index, item in enumerate(document.get("subscriptions") or [])
    ) + _flows(path, document)
    try:
        values["ownership"] = tuple(OwnershipRegistry.from_config(document.get("ownership")).rules)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc.detail}", errors=exc.errors) from exc
    systems = document.get("systems") or {}
    if not isinstance(systems, dict):
        raise ConfigError(f"{path}: systems must map a name to a system's settings")
    values["systems"] = {
        str(name): _validated_system(path, f"systems.{name}", item)
        for name, item in systems.items()
    }
    names: dict[str, int] = {}
    for spec in values["subscriptions"]:
        names[spec.name] = names.get(spec.name, 0) + 1
        where = f"flows.{spec.flow} ({spec.name})" if spec.flow else f"subscriptions.{spec.name}"
        problem = (
            unknown_system(spec, values["systems"])
            or _mapping_file_problem(spec)
            or _entity_problem(spec)
        )
        if problem:
            raise ConfigError(f"{path}: {where}.{problem}")
    twice = sorted(name for name, count in names.items() if count > 1)
    if twice:
        raise ConfigError(f"{path}: two subscriptions (or flow targets) are named {twice}")
    return replace(settings, **values)


def _flows(path: Path, document: dict[str, Any]) -> tuple[SubscriptionSpec, ...]:
    mappings = document.get("mappings") or {}
    if not isinstance(mappings, dict) or not all(
        isinstance(name, str) and isinstance(file, str) for name, file in mappings.items()
    ):
        raise ConfigError(f"{path}: mappings must map a name to a mapping file's path")
    base = path.parent
    files = {
        name: str(Path(file) if Path(file).is_absolute() else base / file)
        for name, file in mappings.items()
    }
    try:
        return tuple(expand_flows(document.get("flows"), mappings=files, base=base))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc.detail}", errors=exc.errors) from exc


def _mapping_file_problem(spec: SubscriptionSpec) -> str | None:
    """Mapping files (a flow's ``map``, a REST sink's body) must exist and compile when the
    config is loaded, not when the first event needs them."""
    body = getattr(getattr(spec.sink, "rest", None), "body", None)
    for where, mapping in (
        ("map", spec.map),
        ("sink.rest.body.mapping", getattr(body, "mapping", None)),
    ):
        if not isinstance(mapping, str):
            continue
        try:
            compiled_mapping(mapping)
        except ConfigError as exc:
            problems = "; ".join(f"{e['path']}: {e['message']}" for e in exc.errors)
            return f"{where}: {problems or exc.detail}"
    return None


def _entity_problem(spec: SubscriptionSpec) -> str | None:
    if spec.entity is not None and spec.entity not in ENTITIES:
        return f"entity: {spec.entity!r} is not a canonical entity ({', '.join(sorted(ENTITIES))})"
    return None


def unknown_system(spec: SubscriptionSpec, systems: dict[str, SystemSpec]) -> str | None:
    """What is wrong when a subscription's sink names a system the config does not have, or
    one of another kind (an Odoo action sent to a broker could never work)."""
    key: str  # the sink's key in the config: ``file`` writes to a ``files`` system
    kind: str
    model: type[OdooSystem] | type[MqttSystem] | type[FilesSystem]
    if isinstance(spec.sink, OdooSink):
        key, kind, name, model = "odoo", "odoo", spec.sink.odoo.system, OdooSystem
    elif isinstance(spec.sink, MqttSink):
        key, kind, name, model = "mqtt", "mqtt", spec.sink.mqtt.system, MqttSystem
    elif isinstance(spec.sink, FileSink):
        key, kind, name, model = "file", "files", spec.sink.file.system, FilesSystem
    else:
        return None
    system = systems.get(name)
    if isinstance(system, model):
        return None
    fitting = sorted(other for other, found in systems.items() if isinstance(found, model))
    known = ", ".join(fitting) or "none is configured"
    if system is None:
        return f"sink.{key}.system: no system named {name!r} ({kind} systems: {known})"
    return (
        f"sink.{key}.system: {name!r} is an {system.kind} system, not an {kind} one "
        f"({kind} systems: {known})"
    )


_Model = TypeVar("_Model", bound=BaseModel)


def _validated_system(path: Path, where: str, item: Any) -> SystemSpec:
    try:
        return system_spec(item)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = tuple(error["loc"])
            if error["type"] == "unknown_system_kind":
                loc = ("kind",)
            elif loc and loc[0] in SYSTEM_KINDS:
                loc = loc[1:]  # the union's tag: the person wrote no such key
            problems.append(f"{where}.{'.'.join(map(str, loc))}: {error['msg']}")
        raise ConfigError(f"{path}: {'; '.join(problems)}") from exc


def _validated(path: Path, where: str, model: type[_Model], item: Any) -> _Model:
    try:
        return model.model_validate(item)
    except ValidationError as exc:
        problems = "; ".join(
            f"{where}.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from exc
