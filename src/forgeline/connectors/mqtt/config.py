"""The config shape of an MQTT system (``systems: <name>: {kind: mqtt, …}``) and of an MQTT
publish target in a subscription's sink, validated on load like every other system.

These are the models ``forgeline.systems`` and ``forgeline.route.subscription`` put in their
unions; everything a config can get wrong (a filter with ``#`` in the middle, a template
naming a capture the filter does not have) is refused here, with the path, before the hub
starts. Secrets stay references (``env:NAME``, ``file:/path``) until the source is built.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ...exceptions import ConfigError
from .ingest import Publish
from .options import BrokerOptions
from .topics import MqttTarget, TopicRule

if TYPE_CHECKING:
    from .source import MqttSource

__all__ = ["MqttBatch", "MqttPublishTarget", "MqttSubscription", "MqttSystem"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MqttSubscription(_Strict):
    """One topic filter and the events its messages become (see ``TopicRule``)."""

    topic: str = Field(min_length=1, description="an MQTT filter: plant/+/mes/+/production")
    type: str = Field(min_length=3, description="the event type: production.completed.v1")
    source: str = Field(default="mqtt://{topic}", description="template: mes://{1}")
    subject: str | None = Field(default=None, description="template: {data.woNumber}")
    id_field: str | None = Field(default=None, description="payload field of the message id")
    time_field: str | None = Field(default=None, description="payload field: RFC 3339 time")

    @model_validator(mode="after")
    def _compiles(self) -> MqttSubscription:
        self.rule()
        return self

    def rule(self) -> TopicRule:
        try:
            return TopicRule(
                self.topic, self.type, self.source, self.subject, self.id_field, self.time_field
            )
        except ConfigError as exc:
            raise ValueError(exc.detail) from None


class MqttBatch(_Strict):
    max_messages: int = Field(default=1000, ge=1, le=65_535)
    max_delay_ms: float = Field(default=2.0, ge=0, le=1000)


class MqttSystem(_Strict):
    """A broker the hub subscribes to (``subscribe``) and may publish to (a sink's
    ``mqtt: {system: <name>, …}``)::

        plant-broker:
          kind: mqtt
          url: mqtt://mosquitto.plant.local:1883
          username: forgeline
          password: env:MQTT_PASSWORD
          client_id: forgeline-{hostname}
          group: forgeline
          subscribe:
            - topic: plant/+/mes/+/production
              type: production.completed.v1
              source: mes://{1}
              subject: "{data.woNumber}"
              id_field: msgId
              time_field: ts
    """

    kind: Literal["mqtt"] = "mqtt"
    url: str = Field(description="mqtt://host[:port] or mqtts://host[:port]")
    username: str | None = None
    password: str | None = Field(default=None, description="a secret reference: env:/file:")
    client_id: str = Field(
        default="forgeline-{hostname}",
        min_length=1,
        max_length=200,
        description="stable across restarts, unique per worker; {hostname} is replaced",
    )
    protocol: Literal["5", "3.1.1"] = "5"
    group: str | None = Field(
        default=None, pattern=r"^[^/+#]+$", description="shared subscription group"
    )
    session_expiry: int = Field(default=7 * 24 * 3600, ge=0, le=2**32 - 1)
    receive_maximum: int = Field(default=65_535, ge=1, le=65_535)
    keepalive: int = Field(default=30, ge=5, le=3600)
    timeout: float = Field(default=10.0, gt=0, le=300)
    max_payload_bytes: int = Field(default=256 * 1024, ge=1024, le=256 * 1024 * 1024)
    batch: MqttBatch = Field(default_factory=MqttBatch)
    subscribe: list[MqttSubscription] = Field(default_factory=list)

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        try:
            options = BrokerOptions.from_url(url)
        except (ConfigError, ValueError) as exc:
            raise ValueError(str(exc)) from None
        if options.username or options.password:
            # It would travel in logs and errors: credentials go in username/password.
            raise ValueError("an MQTT url carries no user or password")
        return url

    def broker(
        self, env: dict[str, str] | None = None, *, worker: str | None = None
    ) -> BrokerOptions:
        """Connection options with secrets resolved; ``worker`` distinguishes several workers
        of one host (each needs its own session in the shared group)."""
        from ...systems import resolve_secret

        client_id = self.client_id.replace("{hostname}", socket.gethostname())
        if worker:
            client_id = f"{client_id}-{worker}"
        return BrokerOptions.from_url(
            self.url,
            username=self.username,
            password=resolve_secret(self.password, env=env) if self.password else None,
            client_id=client_id,
            protocol=self.protocol,
            session_expiry=self.session_expiry,
            receive_maximum=self.receive_maximum,
            keepalive=self.keepalive,
            timeout=self.timeout,
        )

    def source(
        self, publish: Publish, env: dict[str, str] | None = None, *, worker: str | None = None
    ) -> MqttSource:
        """The source of this system's ``subscribe`` list (not yet opened)."""
        from . import MqttSource  # the driver (with its install hint) only when needed

        if not self.subscribe:
            raise ConfigError("this MQTT system subscribes to nothing")
        return MqttSource(
            self.broker(env, worker=worker),
            [subscription.rule() for subscription in self.subscribe],
            publish,
            group=self.group,
            max_batch=self.batch.max_messages,
            max_delay=self.batch.max_delay_ms / 1000,
            max_payload=self.max_payload_bytes,
        )


class MqttPublishTarget(_Strict):
    """A subscription's sink that publishes to an MQTT system: ``sink: {mqtt: {…}}``."""

    system: str = Field(min_length=1, description="a name under systems: in the config")
    topic: str = Field(min_length=1, description="template: forgeline/{type}/{subject}")
    payload: Literal["event", "data"] = "event"
    qos: Literal[0, 1] = 1
    retain: bool = False

    @model_validator(mode="after")
    def _compiles(self) -> MqttPublishTarget:
        self.target()
        return self

    def target(self) -> MqttTarget:
        try:
            return MqttTarget(self.topic, self.payload, self.qos, self.retain)
        except ConfigError as exc:
            raise ValueError(exc.detail) from None
