"""MQTT ingest: Forgeline's MQTT source into the SQLite log vs a raw aiomqtt subscriber.

``python -m bench.mqtt_ingest [--messages 20000] [--runs 3] [--json PATH]``, against the
Mosquitto at 127.0.0.1:1883. Each run publishes the same burst of QoS 1 messages (~60-byte
JSON bodies) flat out from another process (``mosquitto_pub -l -M 1000``; paho when it is not
installed) to a topic with one subscriber, and times from the first publish to the last
message handled:

* **raw**: two subscribers storing nothing, MQTT 5, QoS 1, automatic PUBACK on receipt:
  ``aiomqtt.Client`` counting ``client.messages``, and paho-mqtt counting in ``on_message``
  on its own network thread (no event loop, no queue: the faster of the two here);
* **forgeline/sqlite**: ``MqttSource`` appending to ``SqliteLog`` (WAL, synchronous=FULL) in
  batches, each PUBACK sent only after its batch committed; the clock stops when the log
  holds every message;
* **forgeline/memory**: the same into the in-memory log (what the source costs without the
  disk).

Each reports how many messages arrived: a figure with losses would not be a rate. The ratio
is forgeline / the faster raw subscriber, best run of each.

Broker settings a plant should use (``mosquitto.conf``), and why:

* ``max_queued_messages``: Mosquitto queues at most this many QoS 1 messages per client
  beyond those in flight (1,000 by default) and *silently drops* the rest ("Outgoing messages
  are being dropped" in its log). While Forgeline restarts, its session receives everything
  published meanwhile into that queue: size it as peak rate x the longest outage to ride
  out (200 msg/s for 10 minutes is 120,000), or set it to 0 and bound memory with
  ``max_queued_bytes`` (e.g. 512 MB). The defaults lose messages after about 5 s of
  downtime at 200 msg/s.
* ``max_inflight_messages`` (default 20) applies to MQTT 3.1.1 clients only; Forgeline speaks
  MQTT 5 and asks for a Receive Maximum of 65,535, which is what lets it absorb a burst it
  cannot persist as fast as it arrives (with a window of 2,000, a 20,000-message burst lost
  13,000 here; over 3.1.1 with the default 20, 12,592). A plant that must use 3.1.1 raises
  ``max_inflight_messages`` (1,000) and ``max_queued_messages`` both.
* ``persistence true`` with a short ``autosave_interval`` (60) or ``autosave_on_changes
  true``: Mosquitto's persistence is a periodic snapshot (every 30 minutes by default), so a
  broker crash loses what arrived since the last one, sessions and queued messages included.
  It never fsyncs per message: a publisher that cannot lose a message keeps it in an outbox
  until its PUBACK (the simulated MES does), and Forgeline's side is durable once in its log.
* ``persistent_client_expiration 14d``: 3.1.1 sessions otherwise live for ever; a retired
  worker's session would queue (and then drop) messages no one reads. MQTT 5 sessions expire
  after Forgeline's ``session_expiry`` (7 days).
* ``max_packet_size`` at least the source's ``max_payload_bytes`` (256 KiB) plus headers;
  larger messages are quarantined by Forgeline, but the broker should refuse absurd ones.
* An ACL giving the Forgeline user ``read`` on the plant's topics (shared subscriptions are
  checked against the topic after ``$share/<group>/``) and ``write`` on what sinks publish.
* Watch the broker log at ``log_type warning`` for "Outgoing messages are being dropped":
  it is the only sign Mosquitto gives of a loss.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from forgeline.connectors.mqtt import BrokerOptions, MqttSource, TopicRule
from forgeline.log import EventLog, open_log

HOST, PORT = "127.0.0.1", 1883

_PAHO_PUBLISHER = """
import sys, paho.mqtt.client as mqtt
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
c.max_inflight_messages_set(1000)
c.connect(sys.argv[1], int(sys.argv[2]))
c.loop_start()
infos = [c.publish(sys.argv[3], line.rstrip("\\n"), qos=1) for line in sys.stdin]
for info in infos:
    info.wait_for_publish(60)
c.disconnect()
c.loop_stop()
"""


def _lines(count: int) -> bytes:
    return b"".join(b'{"seq": %d, "line": "L1", "temp": 21.5}\n' % i for i in range(count))


async def _publish(topic: str, payload: bytes) -> float:
    """Publish every line of ``payload`` as one QoS 1 message, from another process."""
    if shutil.which("mosquitto_pub"):
        argv = ["mosquitto_pub", "-h", HOST, "-p", str(PORT), "-t", topic, "-q", "1", "-l"]
        argv += ["-M", "1000"]
    else:
        argv = [sys.executable, "-c", _PAHO_PUBLISHER, HOST, str(PORT), topic]
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(*argv, stdin=subprocess.PIPE)
    await process.communicate(payload)
    return time.perf_counter() - started


async def _until(done: Callable[[], Awaitable[bool]], timeout: float) -> bool:
    deadline = time.perf_counter() + timeout
    while not await done():
        if time.perf_counter() > deadline:
            return False
        await asyncio.sleep(0.005)
    return True


async def _forget(client_id: str) -> None:
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = 0
    async with aiomqtt.Client(
        HOST,
        PORT,
        identifier=client_id,
        protocol=aiomqtt.ProtocolVersion.V5,
        clean_start=True,
        properties=properties,
    ):
        pass


async def run_raw(count: int) -> dict[str, Any]:
    topic = f"bench/{uuid.uuid4().hex[:8]}/raw"
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.ReceiveMaximum = 65_535
    received = 0
    last = 0.0
    client = aiomqtt.Client(HOST, PORT, protocol=aiomqtt.ProtocolVersion.V5, properties=properties)
    async with client:
        await client.subscribe(topic, qos=1)

        async def count_messages() -> None:
            nonlocal received, last
            async for _ in client.messages:
                received += 1
                last = time.perf_counter()
                if received == count:
                    return

        counter = asyncio.create_task(count_messages())
        started = time.perf_counter()
        published = await _publish(topic, _lines(count))
        with contextlib.suppress(TimeoutError):  # reported as a loss below
            await asyncio.wait_for(counter, timeout=60)
    return _figures("raw aiomqtt subscriber", count, received, started, last, published)


async def run_paho(count: int) -> dict[str, Any]:
    """paho-mqtt's own network thread, counting in ``on_message``: the fastest Python MQTT
    subscriber measured here (no event loop, no queue), so the raw limit."""
    topic = f"bench/{uuid.uuid4().hex[:8]}/paho"
    subscribed, finished = threading.Event(), threading.Event()
    state = {"received": 0, "last": 0.0}

    def on_message(client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        state["received"] += 1
        if state["received"] == count:
            state["last"] = time.perf_counter()
            finished.set()

    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.ReceiveMaximum = 65_535
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.on_message = on_message
    client.on_subscribe = lambda *args: subscribed.set()
    client.connect(HOST, PORT, properties=properties)
    client.loop_start()
    try:
        client.subscribe(topic, qos=1)
        await asyncio.to_thread(subscribed.wait, 10)
        started = time.perf_counter()
        published = await _publish(topic, _lines(count))
        await asyncio.to_thread(finished.wait, 60)
    finally:
        client.disconnect()
        client.loop_stop()
    last = state["last"] or time.perf_counter()
    return _figures("raw paho subscriber", count, int(state["received"]), started, last, published)


async def run_forgeline(count: int, url: str, label: str) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    topic = f"bench/{tag}/forgeline"
    client_id = f"bench-{tag}"
    log: EventLog
    async with open_log(url) as log:
        options = BrokerOptions(host=HOST, port=PORT, client_id=client_id)
        source = MqttSource(options, [TopicRule(topic, "bench.reading.v1")], log.append)
        async with source:
            await source.ready(10)
            started = time.perf_counter()
            published = await _publish(topic, _lines(count))

            async def complete() -> bool:
                return await log.head() >= count

            await _until(complete, timeout=60)
            last = time.perf_counter()
            stored = await log.head()
        figures = _figures(label, count, stored, started, last, published)
        figures["batches"] = source.stats.batches
        figures["mean_batch"] = round(source.stats.received / max(1, source.stats.batches), 1)
    await _forget(client_id)
    return figures


def _figures(
    label: str, count: int, received: int, started: float, last: float, published: float
) -> dict[str, Any]:
    seconds = max(last - started, 1e-9)
    return {
        "name": label,
        "messages": count,
        "received": received,
        "lost": count - received,
        "seconds": round(seconds, 3),
        "per_second": round(received / seconds),
        "publish_seconds": round(published, 3),
    }


async def main(count: int, runs: int) -> dict[str, Any]:
    results: dict[str, list[dict[str, Any]]] = {"paho": [], "raw": [], "sqlite": [], "memory": []}
    with tempfile.TemporaryDirectory(prefix="forgeline-mqtt-bench-") as tmp:
        for run in range(runs):
            results["paho"].append(await run_paho(count))
            results["raw"].append(await run_raw(count))
            db = Path(tmp) / f"log-{run}.db"
            results["sqlite"].append(
                await run_forgeline(count, f"sqlite:///{db}", "forgeline -> sqlite log")
            )
            results["memory"].append(
                await run_forgeline(count, "memory://", "forgeline -> memory log")
            )
    best = {name: max(rows, key=lambda r: r["per_second"]) for name, rows in results.items()}
    limit = max(best["paho"]["per_second"], best["raw"]["per_second"])
    return {
        "messages": count,
        "runs": runs,
        "publisher": "mosquitto_pub" if shutil.which("mosquitto_pub") else "paho",
        "best": best,
        # Against the faster of the two raw subscribers (DESIGN.md §6: the raw limit is the
        # fastest client measured).
        "ratio_sqlite_vs_raw": round(best["sqlite"]["per_second"] / limit, 2),
        "ratio_memory_vs_raw": round(best["memory"]["per_second"] / limit, 2),
        "all": results,
    }


def _print(report: dict[str, Any]) -> None:
    print(
        f"MQTT ingest, {report['messages']} QoS 1 messages flat out "
        f"({report['publisher']}), best of {report['runs']}:"
    )
    for row in report["best"].values():
        extra = f"  batches {row['batches']} (mean {row['mean_batch']})" if "batches" in row else ""
        print(
            f"  {row['name']:<26} {row['per_second']:>7} msg/s  {row['seconds']:>6.2f} s  "
            f"lost {row['lost']}  (publish took {row['publish_seconds']:.2f} s){extra}"
        )
    sqlite, memory = report["ratio_sqlite_vs_raw"], report["ratio_memory_vs_raw"]
    print(f"  ratio sqlite/raw {sqlite}x, memory/raw {memory}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    report = asyncio.run(main(args.messages, args.runs))
    _print(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
