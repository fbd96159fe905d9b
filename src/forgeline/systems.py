"""The systems a hub talks to, as the config file declares them (``systems:``).

A system is a named peer with a connector, chosen by ``kind``: ``odoo`` (the default, so
configs written before there were kinds load unchanged), ``mqtt`` (a broker; its shape,
``MqttSystem``, lives with the MQTT connector) or ``files`` (a partner's folders; its shape,
``FilesSystem``, lives with the files connector). Its settings are validated when the
config loads, but secrets stay *references* (``env:NAME``, ``file:/path``) until the hub
opens the connector, so ``forgeline check`` never needs them and they never reach a log or an
API answer.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeAlias
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    field_validator,
)

from .connectors.files.config import FilesSystem
from .connectors.mqtt.config import MqttSystem
from .connectors.webhook.config import WebhookSystem
from .exceptions import ConfigError, ForgelineError

__all__ = [
    "SEALED",
    "SYSTEM_KINDS",
    "FilesSystem",
    "MqttSystem",
    "OdooPoll",
    "OdooSystem",
    "SystemSpec",
    "WebhookSystem",
    "resolve_secret",
    "set_unsealer",
    "system_spec",
]


#: What opens ``sealed:`` secrets: one opener per hub started in this process (each has its
#: master keys; tests run several hubs in one process), tried in turn.
_unsealers: list[Callable[[str], str]] = []

#: Subscriptions made over the API keep their sink credentials sealed at rest under this.
SEALED = "sealed:"


def set_unsealer(unseal: Callable[[str], str]) -> None:
    """Add a way this process opens ``sealed:`` secrets (a hub's master keys)."""
    if unseal not in _unsealers:
        _unsealers.append(unseal)


def _unsealed(sealed: str) -> str:
    for unseal in reversed(_unsealers):
        try:
            return unseal(sealed)
        except ForgelineError:
            continue  # sealed by another hub's keys (or tampered): try the next
    raise ConfigError("a sealed secret that none of this process's master keys opens")


def resolve_secret(reference: str, *, env: dict[str, str] | None = None) -> str:
    """The value behind ``env:NAME``, ``file:/path`` or ``sealed:…`` (a credential given over
    the API, sealed with the hub's master key before it was stored); any other text is the
    value itself.

    Inline values are accepted for local tries and tests; configs meant for production
    reference a variable or a file.
    """
    if reference.startswith(SEALED):
        return _unsealed(reference[len(SEALED) :])
    env = dict(os.environ) if env is None else env
    if reference.startswith("env:"):
        name = reference[4:]
        if name not in env:
            raise ConfigError(f"the secret {reference!r} is not set in the environment")
        return env[name]
    if reference.startswith("file:"):
        path = Path(reference[5:])
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read the secret {reference!r}: {exc.strerror}") from exc
    return reference


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OdooPoll(_Strict):
    """Watch one model for changes by ``write_date`` (the reconciliation path: it finds what
    a lost webhook missed)."""

    model: str = Field(pattern=r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")
    fields: list[str] = Field(default_factory=list)
    domain: list[Any] = Field(default_factory=list)
    every: float = Field(default=30.0, gt=0, le=86_400, description="seconds between polls")
    # Odoo stamps write_date with its transaction's start, and a transaction may commit up to
    # limit_time_real (120 s by default) later: the overlap must cover that, or a late commit
    # stamped behind the watermark is skipped. Re-reads are deduplicated.
    overlap: float = Field(
        default=150.0, ge=0, le=3600, description="seconds re-read behind the watermark"
    )


class OdooSystem(_Strict):
    kind: Literal["odoo"] = "odoo"
    url: str
    db: str = Field(min_length=1)
    login: str | None = None
    password: str | None = Field(default=None, description="a secret reference: env:/file:")
    api_key: str | None = Field(default=None, description="a secret reference: env:/file:")
    protocol: Literal["auto", "json2", "jsonrpc", "xmlrpc"] = "auto"
    max_concurrency: int = Field(default=4, ge=1, le=64)
    timeout: float = Field(default=30.0, gt=0, le=600)
    poll: list[OdooPoll] = Field(default_factory=list)
    webhook_token: str | None = Field(
        default=None,
        description="a secret reference; enables POST /hooks/odoo/<system>/<token> for "
        "Odoo's 'Send Webhook Notification' automations",
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("an Odoo url is http:// or https:// with a host")
        if parts.username is not None or parts.password is not None:
            # It would travel in every event's source and error: credentials go in login,
            # password or api_key, as references.
            raise ValueError("an Odoo url carries no user or password")
        return url.rstrip("/")

    @field_validator("poll")
    @classmethod
    def _one_poller_per_model(cls, polls: list[OdooPoll]) -> list[OdooPoll]:
        models = [poll.model for poll in polls]
        twice = sorted({model for model in models if models.count(model) > 1})
        if twice:
            # One watermark per model: two pollers would overwrite each other's.
            raise ValueError(f"{', '.join(twice)} polled twice: join the domains with '|'")
        return polls

    def poll_for(self, model: str) -> OdooPoll | None:
        return next((poll for poll in self.poll if poll.model == model), None)

    def credentials(
        self, env: dict[str, str] | None = None
    ) -> tuple[str | None, str | None, str | None]:
        """``(login, password, api_key)`` with the secrets resolved."""
        if self.api_key is None and self.password is None:
            raise ConfigError("an Odoo system needs a password or an api_key")
        return (
            self.login,
            resolve_secret(self.password, env=env) if self.password else None,
            resolve_secret(self.api_key, env=env) if self.api_key else None,
        )


SYSTEM_KINDS: dict[str, type[BaseModel]] = {
    "odoo": OdooSystem,
    "mqtt": MqttSystem,
    "files": FilesSystem,
    "webhook": WebhookSystem,
}


def _kind(value: Any) -> str:
    # A system without ``kind`` is Odoo: every config written before MQTT joined says so.
    if isinstance(value, dict):
        return str(value.get("kind", "odoo"))
    return str(getattr(value, "kind", "odoo"))


#: One system of the config, whichever kind: the models' own ``kind`` fields tell them apart.
SystemSpec: TypeAlias = Annotated[
    Annotated[OdooSystem, Tag("odoo")]
    | Annotated[MqttSystem, Tag("mqtt")]
    | Annotated[FilesSystem, Tag("files")]
    | Annotated[WebhookSystem, Tag("webhook")],
    Discriminator(
        _kind,
        custom_error_type="unknown_system_kind",
        custom_error_message=f"kind is one of {', '.join(SYSTEM_KINDS)}",
    ),
]

_ADAPTER: TypeAdapter[OdooSystem | MqttSystem | FilesSystem | WebhookSystem] = TypeAdapter(
    SystemSpec
)


def system_spec(value: Any) -> OdooSystem | MqttSystem | FilesSystem | WebhookSystem:
    """``value`` (a mapping from the config) validated as the system its ``kind`` names;
    pydantic's ``ValidationError`` otherwise, located under the kind's tag."""
    return _ADAPTER.validate_python(value)
