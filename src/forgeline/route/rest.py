"""The ``rest`` sink's spec: a templated request to a target API, with the body from the
event, a template or a mapping, and bearer, basic, API-key or OAuth2 client-credentials auth.
Everything is checked when the subscription is created; ``deliver/rest.py`` sends it."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from ..connectors.mqtt.topics import Template
from ..exceptions import ConfigError
from ._spec import PATH_RE as _PATH_RE
from ._spec import BasicAuth, BearerAuth, HeaderAuth
from ._spec import Strict as _Strict

__all__ = [
    "MappingBody",
    "OAuth2Auth",
    "RestSink",
    "RestTarget",
    "TemplateBody",
    "event_placeholder",
    "rest_template",
    "success_statuses",
]


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
