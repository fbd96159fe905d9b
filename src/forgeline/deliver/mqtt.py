"""The MQTT sink on the deliver stage: one event becomes one publish to a system's broker.

The dispatcher hands over an event and the subscription's :class:`MqttPublishTarget`; the
system's shared ``MqttSink`` (held in ``Connections``) renders the topic, publishes at the
target's QoS and waits for the PUBACK. Failures arrive classified by the connector: a broker
that is down or slow, or a PUBACK that never came, is transient; a PUBACK refusing the
publish, or an event that cannot fill the topic template, is permanent. So the dispatcher's
retry schedule applies unchanged.

At-least-once, like every sink: a publish whose PUBACK was lost is published again, so a
subscriber sees the same event id twice and should dedupe on it (``payload: event`` carries
it in the body, ``payload: data`` in the ``id`` User Property on MQTT 5).
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from ..connections import Connections
from ..envelope import Event

if TYPE_CHECKING:
    from ..connectors.mqtt import MqttPublishTarget, MqttTarget

__all__ = ["deliver_to_mqtt"]


@lru_cache(maxsize=1024)
def _target(spec: MqttPublishTarget) -> MqttTarget:
    # The topic template is compiled once per subscription target, not once per event.
    return spec.target()


async def deliver_to_mqtt(
    connections: Connections, spec: MqttPublishTarget, event: Event, timeout: float
) -> None:
    from ..connectors.mqtt import MqttAuthError

    sink = await connections.mqtt_sink(spec.system)
    try:
        await sink.publish(event, _target(spec), timeout=timeout)
    except MqttAuthError:
        # Rotated credentials or a changed ACL: the next delivery connects with what the
        # secret reference holds then, without a restart.
        await connections.forget(spec.system)
        raise
