"""Subscriptions: which events go where, and how hard to try (the ``route`` stage).

A subscription is a filter (type patterns, source, subject, an expression over the event), a
sink (an HTTP endpoint, a templated REST call, "publish a new event", an action in an Odoo
system, a publish to an MQTT system's broker, files in a files system's outbox, or a signed
webhook endpoint) and a delivery policy. Everything is checked when the subscription is
created, so a bad one is refused then, not when it first fires.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from ..connectors.files.config import FileOutbox
from ..connectors.mqtt.config import MqttPublishTarget
from ..envelope import _SOURCE_RE, _TYPE_RE, Event
from ..exceptions import ConfigError
from ._spec import PATH_RE as _PATH_RE
from ._spec import BasicAuth, BearerAuth, HeaderAuth
from ._spec import Strict as _Strict
from .expression import ExpressionError, compile_expression
from .rest import (
    MappingBody,
    OAuth2Auth,
    RestSink,
    RestTarget,
    TemplateBody,
    event_placeholder,
    rest_template,
    success_statuses,
)

__all__ = [
    "BasicAuth",
    "BearerAuth",
    "DeliveryPolicy",
    "FileSink",
    "HeaderAuth",
    "HttpSink",
    "MappingBody",
    "Matcher",
    "MqttSink",
    "OAuth2Auth",
    "OdooSink",
    "OdooTarget",
    "PublishSink",
    "RestSink",
    "RestTarget",
    "RetryPolicy",
    "SubscriptionSpec",
    "TemplateBody",
    "WebhookSink",
    "WebhookTarget",
    "XrefBinding",
    "compile_glob",
    "event_placeholder",
    "rest_template",
    "success_statuses",
]

# Receivers rely on these being the hub's own: the body's type and the dedup key.
_RESERVED_HEADERS = frozenset(
    {"content-type", "idempotency-key", "authorization", "content-length"}
)
# A type or subject pattern: dotted segments where ``*`` matches any run of characters.
_PATTERN_RE = re.compile(r"[A-Za-z0-9_*-]+(?:\.[A-Za-z0-9_*-]+)*")


def compile_glob(patterns: list[str]) -> re.Pattern[str]:
    """One regex for a list of globs: ``production.*`` matches ``production.completed.v1``."""
    parts = ["(?:" + ".*".join(re.escape(part) for part in p.split("*")) + ")" for p in patterns]
    return re.compile("|".join(parts), re.DOTALL)


Auth = Annotated[BearerAuth | BasicAuth | HeaderAuth, Field(discriminator="type")]


class HttpSink(_Strict):
    """POST the event (CloudEvents structured JSON) to ``url``."""

    url: str = Field(max_length=2048)
    headers: dict[str, str] = Field(default_factory=dict)
    auth: Auth | None = None

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("sink url must be an absolute http:// or https:// URL")
        return url

    @field_validator("headers")
    @classmethod
    def _no_protocol_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        for name in headers:
            if name.lower() in _RESERVED_HEADERS:
                raise ValueError(
                    f"header {name!r} is set by the hub on every attempt"
                    + (" (use sink.auth)" if name.lower() == "authorization" else "")
                )
        return headers

    def redacted(self) -> dict[str, Any]:
        """The sink as shown to users: credentials never leave the hub."""
        shown = self.model_dump(exclude_none=True)
        if self.auth is not None:
            shown["auth"] = {"type": self.auth.type, "configured": True}
        return shown


class PublishTarget(_Strict):
    type: str
    source: str = "forgeline/route"
    subject: str | None = Field(
        default=None,
        description="an event path (after the mapping) for the new event's subject; "
        "default: the original's",
    )
    tenant: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$",
        description="the tenant the new event belongs to (a partner's subscriptions and "
        "endpoints see only their tenant's events); default: the original's",
    )

    @field_validator("subject")
    @classmethod
    def _subject_path(cls, value: str | None) -> str | None:
        if value is not None and not _PATH_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not an event path such as 'data.order'")
        return value

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        if not _TYPE_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not a dotted event type such as 'lot.released.v1'")
        return value

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        if not _SOURCE_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not a valid source")
        return value


class PublishSink(_Strict):
    """Append a new event (the data, mapped if the subscription maps; the subject, unless
    ``subject`` names another path; a new type) that names the original as cause."""

    publish: PublishTarget

    def redacted(self) -> dict[str, Any]:
        return self.model_dump()


# An event path: ``subject``, ``id``, ``data.quantity``, ``data.lines.0.sku``.
_MODEL_RE = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)+")


def _paths(values: dict[str, Any], where: str) -> dict[str, Any]:
    for field, value in values.items():
        if isinstance(value, str) and not _PATH_RE.fullmatch(value):
            raise ValueError(
                f"{where}.{field}: {value!r} is not an event path such as 'data.quantity' "
                "(write a literal as {'const': value})"
            )
        if isinstance(value, dict) and set(value) != {"const"}:
            raise ValueError(f"{where}.{field}: a literal is written {{'const': value}}")
    return values


class XrefBinding(_Strict):
    """After an upsert, bind (this Odoo system, ``entity``, the record's id) to the canonical
    id at ``canonical`` (an event path): mappings then turn Odoo's ids into canonical ones."""

    entity: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)
    canonical: str = Field(default="subject", description="an event path")

    @field_validator("canonical")
    @classmethod
    def _canonical_path(cls, value: str) -> str:
        if not _PATH_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not an event path such as 'subject'")
        return value


class OdooTarget(_Strict):
    """What to do in Odoo with an event; values come from event paths (``data.quantity``) or
    literals (``{"const": 1}``). The shapes are the target's: mapping between vocabularies
    is a flow's job, upstream of this sink.

    * ``upsert``: create or update the record whose external id is ``external_id`` (idempotent:
      a retried create never makes a second record);
    * ``call``: call ``method`` with ``kwargs`` on the records ``find`` selects (or on the model);
    * ``action``: write ``values`` to the records ``find`` selects, then run the business
      ``method`` (e.g. ``button_mark_done``), completing a wizard as ``backorder`` says.
      Records already in one of ``done_states`` count as done: a redelivery after a lost
      answer succeeds instead of failing on the second call.
    """

    system: str = Field(min_length=1, description="a name under systems: in the config")
    model: str
    action: Literal["upsert", "call", "action"]
    method: str | None = Field(default=None, pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    external_id: str | None = Field(default=None, description="an event path")
    find: dict[str, Any] = Field(
        default_factory=dict, description="field -> event path: equality domain"
    )
    values: dict[str, Any] = Field(default_factory=dict, description="field -> event path")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="name -> event path")
    backorder: Literal["no", "yes", "fail"] = "no"
    done_states: list[str] = Field(default_factory=lambda: ["done"])
    xref: XrefBinding | None = None

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        if not _MODEL_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not an Odoo model name such as 'mrp.production'")
        return value

    @field_validator("find", "values", "kwargs")
    @classmethod
    def _event_paths(cls, values: dict[str, Any]) -> dict[str, Any]:
        return _paths(values, "odoo")

    @model_validator(mode="after")
    def _complete(self) -> OdooTarget:
        if self.action == "upsert" and not self.external_id:
            raise ValueError("an upsert needs external_id (an event path such as 'subject')")
        if self.external_id is not None and not _PATH_RE.fullmatch(self.external_id):
            raise ValueError(f"external_id: {self.external_id!r} is not an event path")
        if self.action in ("call", "action") and not self.method:
            raise ValueError(f"action {self.action!r} needs a method")
        if self.action == "action" and not self.find:
            raise ValueError("an action needs find: the records it acts on")
        if self.method is not None and self.method.startswith("_"):
            raise ValueError("private methods cannot be called over RPC")
        if self.xref is not None and self.action != "upsert":
            raise ValueError("xref binds the record an upsert made: only with action upsert")
        return self


class OdooSink(_Strict):
    """Act in an Odoo system through its connector."""

    odoo: OdooTarget

    def redacted(self) -> dict[str, Any]:
        return self.model_dump()


class MqttSink(_Strict):
    """Publish to an MQTT system's broker (``mqtt: {system, topic, payload, qos, retain}``;
    the topic is a template over the event, checked here: see ``MqttPublishTarget``)."""

    mqtt: MqttPublishTarget

    def redacted(self) -> dict[str, Any]:
        return self.model_dump()


class FileSink(_Strict):
    """Write events into a files system's outbox, in batches, each file appearing whole
    (``file: {system, name, format, payload, columns}``: see ``FileOutbox``)."""

    file: FileOutbox

    def redacted(self) -> dict[str, Any]:
        return self.model_dump()


class WebhookTarget(_Strict):
    endpoint: str = Field(
        pattern=r"^ep_[0-9A-HJKMNP-TV-Z]{26}$", description="a webhook endpoint's id (ep_…)"
    )


class WebhookSink(_Strict):
    """POST to a webhook endpoint (``webhook: {endpoint: ep_…}``), signed the Standard
    Webhooks way with the endpoint's secrets. The endpoint (``forgeline.webhooks``) holds the
    URL and the secrets; the subscription holds what every sink has: filter, map, policy."""

    webhook: WebhookTarget

    def redacted(self) -> dict[str, Any]:
        return self.model_dump()


# One retry's delay in an explicit schedule: up to a week.
_Delay = Annotated[float, Field(ge=0, le=7 * 86_400)]


class RetryPolicy(_Strict):
    """Capped exponential backoff with jitter: delay n = min(max_delay, initial * factor^n);
    or, with ``schedule``, the delays written out (the webhook endpoints' default)."""

    initial_delay: float = Field(default=1.0, ge=0, le=86_400)
    multiplier: float = Field(default=2.0, ge=1, le=10)
    max_delay: float = Field(default=300.0, ge=0, le=86_400)
    # Each delay is drawn uniformly from [delay * (1 - jitter), delay]: spreads retry storms.
    jitter: float = Field(default=0.2, ge=0, le=1)
    max_attempts: int = Field(default=10, ge=1, le=1000)
    max_age: float = Field(
        default=86_400.0, gt=0, description="seconds after which a delivery is dead"
    )
    schedule: list[_Delay] | None = Field(
        default=None,
        max_length=100,
        description="explicit delays (s): the n-th failed attempt waits schedule[n-1], and "
        "the one after the last is dead (max_attempts still caps). Replaces the backoff; "
        "jitter still applies and max_delay caps only a Retry-After",
    )


class DeliveryPolicy(_Strict):
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    timeout: float = Field(default=10.0, gt=0, le=300, description="seconds per attempt")
    ordering: Literal["none", "key"] = "none"
    concurrency: int = Field(default=32, ge=1, le=1024)
    rate_limit: float | None = Field(
        default=None,
        gt=0,
        le=100_000,
        description="attempts per second at most (per worker process, as concurrency is)",
    )
    on_dead: Literal["skip", "block"] = Field(
        "skip", description="with ordering 'key': 'block' holds the key's later events"
    )


class SubscriptionSpec(_Strict):
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    types: list[str] = Field(min_length=1, max_length=64)
    source: str | None = Field(default=None, description="exact source, or a glob with '*'")
    subject: str | None = Field(default=None, description="exact subject, or a glob with '*'")
    filter: str | None = Field(
        default=None, max_length=1000, description="expression over the event"
    )
    sink: HttpSink | RestSink | PublishSink | OdooSink | MqttSink | FileSink | WebhookSink
    policy: DeliveryPolicy = Field(default_factory=DeliveryPolicy)
    enabled: bool = True
    map: dict[str, Any] | str | None = Field(
        default=None,
        description="a mapping (inline, or a file path in a config) whose result is the "
        "data the sink sees",
    )
    entity: str | None = Field(
        default=None,
        pattern=r"^[a-z][a-z0-9_]*$",
        max_length=64,
        description="the entity this subscription changes downstream (ownership); default: "
        "the catalog's for the event type",
    )
    flow: str | None = Field(default=None, description="the config flow it belongs to")
    tenant: str | None = Field(
        default=None,
        max_length=128,
        description="set by the hub: a tenant's subscription sees only that tenant's events",
    )

    @field_validator("map")
    @classmethod
    def _map_compiles(cls, mapping: dict[str, Any] | str | None) -> dict[str, Any] | str | None:
        if isinstance(mapping, dict):
            from ..mapping import load_mapping

            try:
                load_mapping(mapping)
            except ConfigError as exc:  # MappingSpecError: every problem, with its path
                problems = "; ".join(f"map.{e['path']}: {e['message']}" for e in exc.errors)
                raise ValueError(problems or exc.detail) from None
        # A path is read on the hub's host: checked where config files are loaded, never
        # while validating a request (the API refuses paths).
        return mapping

    @field_validator("types")
    @classmethod
    def _types(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            if not _PATTERN_RE.fullmatch(pattern) or len(pattern) > 255:
                raise ValueError(
                    f"{pattern!r} is not a type pattern: dotted names, '*' matches any run "
                    "of characters (e.g. 'production.*')"
                )
        return patterns

    @field_validator("filter")
    @classmethod
    def _filter(cls, text: str | None) -> str | None:
        if text is not None:
            try:
                compile_expression(text)
            except ExpressionError as exc:
                raise ValueError(str(exc)) from exc
        return text

    @model_validator(mode="after")
    def _publish_loop(self) -> SubscriptionSpec:
        if isinstance(self.sink, PublishSink):
            target = self.sink.publish.type
            source = self.sink.publish.source
            # Not a loop when the new event's source is one this subscription never takes.
            takes_source = self.source is None or compile_glob([self.source]).fullmatch(source)
            if takes_source and compile_glob(self.types).fullmatch(target):
                raise ValueError(
                    f"publishing {target!r} would match this subscription's own types: a loop"
                )
        return self

    def redacted(self) -> dict[str, Any]:
        shown = self.model_dump(exclude_none=True)
        shown["sink"] = self.sink.redacted()
        return shown


class Matcher:
    """A subscription's filter compiled once; ``matches`` runs for every event routed."""

    __slots__ = ("_expression", "_source", "_subject", "_tenant", "_types")

    def __init__(self, spec: SubscriptionSpec) -> None:
        self._tenant = spec.tenant
        self._types = compile_glob(spec.types).fullmatch
        self._source = compile_glob([spec.source]).fullmatch if spec.source else None
        self._subject = compile_glob([spec.subject]).fullmatch if spec.subject else None
        self._expression: Callable[[Any], bool] | None = (
            compile_expression(spec.filter) if spec.filter else None
        )

    def matches(self, event: Event) -> bool:
        if not self._types(event.type):
            return False
        if self._tenant is not None and event.extensions.get("tenant") != self._tenant:
            return False
        if self._source is not None and not self._source(event.source):
            return False
        if self._subject is not None and not (event.subject and self._subject(event.subject)):
            return False
        return self._expression is None or self._expression(event.to_dict())
