"""Subscriptions: which events go where, and how hard to try (the ``route`` stage).

A subscription is a filter (type patterns, source, subject, an expression over the event), a
sink (an HTTP endpoint, a templated REST call, "publish a new event", an action in an Odoo
system, a publish to an MQTT system's broker, or files in a files system's outbox) and a
delivery policy. Everything is checked when the subscription is created, so a bad one is
refused then, not when it first fires.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from ..connectors.files.config import FileOutbox
from ..connectors.mqtt.config import MqttPublishTarget
from ..connectors.mqtt.topics import Template
from ..envelope import _SOURCE_RE, _TYPE_RE, Event
from ..exceptions import ConfigError
from .expression import ExpressionError, compile_expression

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


class _Strict(BaseModel):
    # Unknown fields are refused: a typo in a policy must not silently become a default.
    model_config = ConfigDict(extra="forbid", frozen=True)


class BearerAuth(_Strict):
    type: Literal["bearer"]
    token: str = Field(min_length=1)


class BasicAuth(_Strict):
    type: Literal["basic"]
    username: str
    password: str


class HeaderAuth(_Strict):
    type: Literal["header"]
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9-]+$")
    value: str


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
    """Append a new event (same data and subject, new type) that names the original as cause."""

    publish: PublishTarget

    def redacted(self) -> dict[str, Any]:
        return self.model_dump()


# An event path: ``subject``, ``id``, ``data.quantity``, ``data.lines.0.sku``.
_PATH_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.(?:[A-Za-z_][A-Za-z0-9_]*|[0-9]+))*")
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


class OAuth2Auth(_Strict):
    """OAuth2 client credentials (RFC 6749 §4.4): the hub fetches a token from ``token_url``
    and sends it as a bearer token. ``client_secret`` is a secret reference (``env:NAME``,
    ``file:/path``), read at each token fetch so it rotates without a restart."""

    type: Literal["oauth2"]
    token_url: str = Field(max_length=2048)
    client_id: str = Field(min_length=1, max_length=1024)
    client_secret: str = Field(min_length=1, description="a secret reference: env:/file:")
    scope: str | None = Field(default=None, max_length=4096)
    audience: str | None = Field(default=None, max_length=2048)
    client_auth: Literal["client_secret_basic", "client_secret_post"] = "client_secret_basic"

    @field_validator("token_url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("token_url must be an absolute http:// or https:// URL")
        if parts.username is not None or parts.password is not None:
            raise ValueError("token_url carries no user or password (use client_id/secret)")
        return url


RestAuth = Annotated[BearerAuth | BasicAuth | HeaderAuth | OAuth2Auth, Field(discriminator="type")]

# Set by the hub, the transport or ``auth`` on every request, never by a template.
_REST_RESERVED = frozenset(
    {"authorization", "content-length", "host", "transfer-encoding", "connection"}
)
_HEADER_NAME_RE = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")
_EVENT_ATTRIBUTES = frozenset(
    {"id", "source", "type", "subject", "time", "dataschema", "datacontenttype"}
)
_EXTENSION_RE = re.compile(r"[a-z0-9]{1,20}")
_STATUS_RANGE_RE = re.compile(r"([1-5])xx|([1-5][0-9][0-9])-([1-5][0-9][0-9])")


def event_placeholder(name: str) -> bool:
    """Whether ``{name}`` can name something in an event: an attribute (``subject``), an
    extension (``tenant``) or a path into the data (``data.lines.0.sku``)."""
    if name.startswith("data."):
        return _PATH_RE.fullmatch(name) is not None
    if name in ("data", "specversion"):
        return False  # an object, or a constant: never part of a URL or a header
    return name in _EVENT_ATTRIBUTES or _EXTENSION_RE.fullmatch(name) is not None


def rest_template(text: str, what: str) -> Template:
    """``text`` compiled as a template over the event; ``ValueError`` when it never could render."""
    try:
        return Template.compile(text, event_placeholder, what=what)
    except ConfigError as exc:
        raise ValueError(exc.detail) from None


@lru_cache(maxsize=256)
def success_statuses(success: tuple[int | str, ...] | None) -> frozenset[int]:
    """The statuses a ``success`` list accepts: codes, ``"2xx"`` classes, ``"200-204"`` ranges."""
    if success is None:
        return frozenset(range(200, 300))
    codes: set[int] = set()
    for item in success:
        if isinstance(item, int):
            codes.add(item)
            continue
        found = _STATUS_RANGE_RE.fullmatch(item)
        if found is None:
            raise ValueError(f"{item!r} is not a status, a class ('2xx') or a range ('200-204')")
        if found.group(1):
            low = int(found.group(1)) * 100
            codes.update(range(low, low + 100))
        else:
            low, high = int(found.group(2)), int(found.group(3))
            if low > high:
                raise ValueError(f"{item!r}: the range is empty")
            codes.update(range(low, high + 1))
    return frozenset(codes)


class MappingBody(_Strict):
    """The body is a mapping's result: an inline mapping document, or the path of a YAML or
    JSON file holding one (re-read when the file changes)."""

    mapping: dict[str, Any] | str

    @field_validator("mapping")
    @classmethod
    def _compiles(cls, mapping: dict[str, Any] | str) -> dict[str, Any] | str:
        from ..mapping import load_mapping

        if isinstance(mapping, str):
            # A path is read on the hub's host: checked where config files are loaded
            # (config.py), never while validating a request (the API refuses paths).
            return mapping
        try:
            load_mapping(mapping)
        except ConfigError as exc:  # MappingSpecError too: every problem, with its path
            problems = "; ".join(f"{e['path']}: {e['message']}" for e in exc.errors)
            raise ValueError(problems or exc.detail) from None
        return mapping


class TemplateBody(_Strict):
    """The body is this JSON with ``{path}`` placeholders in its strings. A string that is one
    placeholder alone (``"{data.qty}"``) becomes the value with its JSON type; placeholders
    inside longer strings are written into the text."""

    template: dict[str, Any] | list[Any]

    @field_validator("template")
    @classmethod
    def _compiles(cls, template: dict[str, Any] | list[Any]) -> dict[str, Any] | list[Any]:
        def walk(value: Any, where: str) -> None:
            if isinstance(value, str):
                rest_template(value, f"body.template{where}")
            elif isinstance(value, dict):
                for key, item in value.items():
                    walk(item, f"{where}.{key}")
            elif isinstance(value, list):
                for index, item in enumerate(value):
                    walk(item, f"{where}[{index}]")

        walk(template, "")
        return template


def _body_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "template" if "template" in value else "mapping"
    if isinstance(value, TemplateBody | MappingBody):
        return "template" if isinstance(value, TemplateBody) else "mapping"
    return "word"


# Tagged, so a bad body is reported against the form it was meant as, not against all three.
RestBody = Annotated[
    Annotated[Literal["event", "data", "none"], Tag("word")]
    | Annotated[MappingBody, Tag("mapping")]
    | Annotated[TemplateBody, Tag("template")],
    Discriminator(_body_kind),
]


class RestTarget(_Strict):
    """One templated request per event: ``method url`` with ``headers`` and ``body``.

    ``url`` and header values are templates over the event (``{subject}``, ``{data.task}``);
    values put into the URL are percent-encoded, and the scheme and host are fixed (no
    placeholder can choose where the request goes). ``body``: ``event`` (CloudEvents
    structured JSON), ``data`` (the event's data; the default except for DELETE), ``none``,
    ``{"mapping": …}`` or ``{"template": …}``. ``idempotency_header`` carries the event id
    (``null`` leaves it out). ``success`` lists what counts as delivered (default 2xx, e.g.
    ``["2xx", 404]`` for a DELETE that may find the record gone); other statuses are
    classified as for every HTTP sink. In ``auth``, the bearer ``token``, the basic
    ``password``, the header ``value`` and the OAuth2 ``client_secret`` are secret references
    (``env:NAME``, ``file:/path``), read when used. A mapping path is read relative to the
    hub's working directory: prefer an absolute one.
    """

    method: Literal["POST", "PUT", "PATCH", "DELETE"] = "POST"
    url: str = Field(max_length=2048)
    headers: dict[str, str] = Field(default_factory=dict, description="name -> template")
    body: RestBody | None = None
    auth: RestAuth | None = None
    idempotency_header: str | None = Field(default="Idempotency-Key", max_length=128)
    success: tuple[int | str, ...] | None = Field(default=None, min_length=1, max_length=64)
    timeout: float | None = Field(
        default=None, gt=0, le=300, description="seconds, capped by the policy's timeout"
    )

    @field_validator("idempotency_header", mode="before")
    @classmethod
    def _off(cls, value: Any) -> Any:
        return None if value is False else value

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        scheme, separator, rest = url.partition("://")
        if scheme.lower() not in ("http", "https") or not separator:
            raise ValueError("the url must be an absolute http:// or https:// URL")
        authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
        if "{" in authority or "}" in authority:
            raise ValueError("the url's host is fixed: placeholders go in the path or query")
        if "#" in url or not url.isascii() or any(c.isspace() or ord(c) < 32 for c in url):
            # Sent as written (only the values are encoded): it must already be a valid URL.
            raise ValueError(
                "the url has no fragment, spaces, control or non-ASCII characters "
                "(percent-encode them)"
            )
        template = rest_template(url, "url")
        parts = urlsplit(template.render(lambda name: "x"))
        if not parts.hostname:
            raise ValueError("the url must name a host")
        if parts.username is not None or parts.password is not None:
            raise ValueError("the url carries no user or password (use auth)")
        return url

    @field_validator("headers")
    @classmethod
    def _headers(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if not _HEADER_NAME_RE.fullmatch(name):
                raise ValueError(f"{name!r} is not a header name")
            if name.lower() in _REST_RESERVED:
                raise ValueError(
                    f"header {name!r} is set by the hub"
                    + (" (use auth)" if name.lower() == "authorization" else "")
                )
            if any(c in value for c in "\r\n\0"):
                raise ValueError(f"header {name!r}: no line breaks in a header value")
            rest_template(value, f"header {name!r}")
        return headers

    @field_validator("success")
    @classmethod
    def _success(cls, success: tuple[int | str, ...] | None) -> tuple[int | str, ...] | None:
        for item in success or ():
            if isinstance(item, int) and not 100 <= item <= 599:
                raise ValueError(f"{item} is not an HTTP status")
        success_statuses(success)  # raises ValueError naming a bad item
        return success

    @model_validator(mode="after")
    def _consistent(self) -> RestTarget:
        names = {name.lower() for name in self.headers}
        key = self.idempotency_header
        if key is not None:
            if not _HEADER_NAME_RE.fullmatch(key) or key.lower() in _REST_RESERVED:
                raise ValueError(f"idempotency_header: {key!r} is not a header the hub can set")
            if key.lower() in names:
                raise ValueError(
                    f"header {key!r} is the idempotency_header: the hub sets it to the "
                    "event id (set idempotency_header to null to template it yourself)"
                )
        if isinstance(self.auth, HeaderAuth) and self.auth.name.lower() in names:
            raise ValueError(f"header {self.auth.name!r} is set by auth")
        return self

    @property
    def body_kind(self) -> Literal["event", "data", "none"] | MappingBody | TemplateBody:
        """``body`` with its default filled in: a DELETE sends nothing, the others the data."""
        if self.body is None:
            return "none" if self.method == "DELETE" else "data"
        return self.body


class RestSink(_Strict):
    """Call a REST API: ``rest: {method, url, headers, body, auth, …}`` (see ``RestTarget``)."""

    rest: RestTarget

    def redacted(self) -> dict[str, Any]:
        """Shown to users: no credential, and no reference to one, leaves the hub."""
        shown = self.model_dump(exclude_none=True)
        auth = self.rest.auth
        if isinstance(auth, OAuth2Auth):
            shown["rest"]["auth"] = {
                **auth.model_dump(exclude_none=True, exclude={"client_secret"}),
                "configured": True,
            }
        elif auth is not None:
            shown["rest"]["auth"] = {"type": auth.type, "configured": True}
        return shown


class FileSink(_Strict):
    """Write events into a files system's outbox, in batches, each file appearing whole
    (``file: {system, name, format, payload, columns}``: see ``FileOutbox``)."""

    file: FileOutbox

    def redacted(self) -> dict[str, Any]:
        return self.model_dump()


class RetryPolicy(_Strict):
    """Capped exponential backoff with jitter: delay n = min(max_delay, initial * factor^n)."""

    initial_delay: float = Field(default=1.0, ge=0, le=86_400)
    multiplier: float = Field(default=2.0, ge=1, le=10)
    max_delay: float = Field(default=300.0, ge=0, le=86_400)
    # Each delay is drawn uniformly from [delay * (1 - jitter), delay]: spreads retry storms.
    jitter: float = Field(default=0.2, ge=0, le=1)
    max_attempts: int = Field(default=10, ge=1, le=1000)
    max_age: float = Field(
        default=86_400.0, gt=0, description="seconds after which a delivery is dead"
    )


class DeliveryPolicy(_Strict):
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    timeout: float = Field(default=10.0, gt=0, le=300, description="seconds per attempt")
    ordering: Literal["none", "key"] = "none"
    concurrency: int = Field(default=32, ge=1, le=1024)
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
    sink: HttpSink | RestSink | PublishSink | OdooSink | MqttSink | FileSink
    policy: DeliveryPolicy = Field(default_factory=DeliveryPolicy)
    enabled: bool = True

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
            if compile_glob(self.types).fullmatch(target):
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

    __slots__ = ("_expression", "_source", "_subject", "_types")

    def __init__(self, spec: SubscriptionSpec) -> None:
        self._types = compile_glob(spec.types).fullmatch
        self._source = compile_glob([spec.source]).fullmatch if spec.source else None
        self._subject = compile_glob([spec.subject]).fullmatch if spec.subject else None
        self._expression: Callable[[Any], bool] | None = (
            compile_expression(spec.filter) if spec.filter else None
        )

    def matches(self, event: Event) -> bool:
        if not self._types(event.type):
            return False
        if self._source is not None and not self._source(event.source):
            return False
        if self._subject is not None and not (event.subject and self._subject(event.subject)):
            return False
        return self._expression is None or self._expression(event.to_dict())
