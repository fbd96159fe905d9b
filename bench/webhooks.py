"""Webhooks, out and in: ``python -m bench.webhooks``.

Three processes on 127.0.0.1, as ``bench.relay``: this load generator, the hub (this module
run as ``--hub``: uvicorn + uvloop + httptools, with the webhook endpoints wired) and a
receiver (``bench.receiver``: aiohttp answering 204). Loopback is allowed to the hub's
egress policy (``FORGELINE_EGRESS_ALLOW=127.0.0.0/8``), as an operator allows a plant network.

1. Outbound: one endpoint (the defaults: 32 deliveries in flight) receives N events published
   in batches of 500; signed deliveries/s at the receiver, first arrival to last. Raw limit:
   the fastest plain client measured (aiohttp and httpx; DESIGN.md §6) POSTing the same
   bodies, with the same Standard Webhooks headers made in advance, straight to the receiver
   with the same limit of 32 connections and requests in flight, counted at the receiver the
   same way (first arrival to last). Target: >= 0.5x. Every
   delivery is checked to have come once (no retries). Beside it, the same N events through
   a plain ``sink: {url}`` subscription with the same policy: what the delivery engine itself
   does on this machine, so the webhook's own cost (signing, the egress policy's checks, the
   endpoint's bookkeeping) is the difference between the two rows.

   The raw client, the plain sink and the endpoint take turns, ``--rounds`` times, every
   other round in the reverse order: the speed of the VMs this runs on drifts by a third
   within minutes, so a ratio is taken only between figures measured seconds apart, and the
   median of the rounds' ratios is reported.
   httpx, 20x slower than aiohttp here, is measured once on fewer requests.
2. Signing beside a busy thread (this process, no HTTP): ``Signer.headers`` calls/s while
   another thread runs Python, against CPython's one-shot ``hmac.digest``, which lets go of
   the GIL on every call and then waits to win it back - what the hub's event loop did per
   delivery while the store's threads were busy.
3. Inbound: ``POST /hooks/partner``, a ``kind: webhook`` system verified by ``standard`` (a
   ``whsec_`` secret): each request is verified, its event made durable in the log, then
   answered 202. Requests/s and p50/p99 of the answer, closed loop with 16 in flight; the
   requests are signed before the clock starts (their timestamps are well inside tolerance).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hmac
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson

from forgeline.webhooks.signing import Signer, new_symmetric_secret, signature_headers

from . import profile
from .events import make_event
from .relay import Proc, closed_loop, free_port, percentile, spawn, wait_delivered, wait_http

DELIVERY_CONCURRENCY = 32  # the endpoint's policy.concurrency (the default)
BATCH = 500
EVENT_TYPE = "production.completed.v1"
PLAIN_TYPE = "bench.plain.v1"
UNROUTED_TYPE = "bench.unrouted.v1"


@dataclass
class Config:
    events: int = 10_000
    rounds: int = 3
    inbound: int = 5_000
    inbound_concurrency: int = 16
    profile: Path | None = None  # py-spy folded stacks of the hub during the first endpoint round


# -- the hub process -------------------------------------------------------------------------


def serve_hub(data_dir: Path, port: int, config_file: Path) -> None:
    """The hub with its webhook endpoints: wired here only while ``Hub`` does not do it."""
    import uvicorn

    from forgeline.api import app as app_module
    from forgeline.api.webhooks import install_webhooks
    from forgeline.config import Settings
    from forgeline.hub import Hub
    from forgeline.webhooks.endpoints import Webhooks

    class WiredHub(Hub):
        def __init__(self, settings: Settings) -> None:
            super().__init__(settings)
            self._wiring = getattr(self, "webhooks", None) is None
            if self._wiring:
                self.webhooks = Webhooks.from_settings(
                    settings, head=self.log.head, publish=self.publish, changed=self._changed
                )
                self.dispatcher.webhooks = self.webhooks.sender

        async def _start(self) -> None:
            if self._wiring:
                await self.webhooks.open()
            await super()._start()

        async def stop(self) -> None:
            await super().stop()
            if self._wiring:
                await self.webhooks.aclose()

    app_module.Hub = WiredHub  # type: ignore[misc]
    settings = Settings.load(env={}, config_file=config_file, data_dir=data_dir, port=port)
    app = app_module.create_app(settings)
    install_webhooks(app)
    uvicorn.run(
        app, host="127.0.0.1", port=port, loop="uvloop", http="httptools", log_level="warning"
    )


# -- clients ---------------------------------------------------------------------------------


def signed_bodies(count: int, phase: str, secret: str) -> list[tuple[bytes, dict[str, str]]]:
    """What the engine sends: the CloudEvent as JSON, and its Standard Webhooks headers."""
    prepared = []
    for index in range(count):
        event = make_event(index, phase)
        body = orjson.dumps(event)
        headers = signature_headers(event["id"], body, [secret])
        headers |= {"Content-Type": "application/json", "User-Agent": "bench"}
        prepared.append((body, headers))
    return prepared


async def raw_aiohttp(url: str, prepared: list[tuple[bytes, dict[str, str]]]) -> float:
    connector = aiohttp.TCPConnector(limit=DELIVERY_CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def send(index: int) -> None:
            body, headers = prepared[index]
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                if response.status >= 300:
                    raise RuntimeError(f"raw aiohttp: HTTP {response.status}")

        seconds = await closed_loop(len(prepared), DELIVERY_CONCURRENCY, send)
    return len(prepared) / seconds


async def raw_httpx(url: str, prepared: list[tuple[bytes, dict[str, str]]]) -> float:
    limits = httpx.Limits(max_connections=DELIVERY_CONCURRENCY)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:

        async def send(index: int) -> None:
            body, headers = prepared[index]
            response = await client.post(url, content=body, headers=headers)
            if response.status_code >= 300:
                raise RuntimeError(f"raw httpx: HTTP {response.status_code}")

        seconds = await closed_loop(len(prepared), DELIVERY_CONCURRENCY, send)
    return len(prepared) / seconds


# -- the run ---------------------------------------------------------------------------------


async def run(config: Config, log: Callable[[str], None] = print) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="forgeline-bench-webhooks-"))
    inbound_secret = new_symmetric_secret()
    (workdir / "forgeline.yaml").write_text(
        "systems:\n"
        "  partner:\n"
        "    kind: webhook\n"
        "    type: partner.message.v1\n"
        f"    verify: {{standard: {{secret: '{inbound_secret}'}}}}\n"
    )
    os.environ["FORGELINE_EGRESS_ALLOW"] = "127.0.0.0/8"  # the children inherit it
    try:
        hub_port, receiver_port = free_port(), free_port()
        hub_args = (str(workdir / "data"), str(hub_port), str(workdir / "forgeline.yaml"))
        with (
            spawn("receiver", "bench.receiver", str(receiver_port), workdir=workdir) as receiver,
            spawn("hub", "bench.webhooks", "--hub", *hub_args, workdir=workdir) as hub,
        ):
            return await _measure(config, hub, receiver, hub_port, receiver_port, workdir, log,
                                  inbound_secret)  # fmt: skip
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


async def _measure(
    config: Config,
    hub: Proc,
    receiver: Proc,
    hub_port: int,
    receiver_port: int,
    workdir: Path,
    log: Callable[[str], None],
    inbound_secret: str,
) -> dict[str, Any]:
    hub_url = f"http://127.0.0.1:{hub_port}"
    sink = f"http://127.0.0.1:{receiver_port}"
    timeout = aiohttp.ClientTimeout(total=120)
    # Idle connections are dropped before uvicorn's own 5 s: a POST on one the hub is closing
    # at that moment fails ("Can not write request body"), and POSTs are not retried.
    connector = aiohttp.TCPConnector(keepalive_timeout=2.0)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        await wait_http(session, f"{sink}/stats", receiver, 30)
        await wait_http(session, f"{hub_url}/readyz", hub, 30)
        key = (workdir / "data" / "admin.key").read_text().strip()
        auth = {"Authorization": f"Bearer {key}"}

        # Raw limits with headers signed by a secret of our own (same sizes).
        secret = new_symmetric_secret()
        await raw_aiohttp(f"{sink}/raw", signed_bodies(500, "warmup-raw", secret))
        httpx_count = min(config.events, 2_000)
        httpx_rate = await raw_httpx(f"{sink}/raw", signed_bodies(httpx_count, "raw-x", secret))
        log(f"raw httpx: {httpx_rate:,.0f}/s ({httpx_count:,} POSTs)")

        endpoint = {"url": f"{sink}/engine", "types": [EVENT_TYPE]}
        async with session.post(
            f"{hub_url}/v1/webhooks/endpoints", json=endpoint, headers=auth
        ) as answer:
            if answer.status != 201:
                raise RuntimeError(f"endpoint refused: {answer.status} {await answer.text()}")

        plain = {"name": "plain", "types": [PLAIN_TYPE], "sink": {"url": f"{sink}/plain"}}
        async with session.post(f"{hub_url}/v1/subscriptions", json=plain, headers=auth) as answer:
            if answer.status != 201:
                raise RuntimeError(f"subscription refused: {answer.status} {await answer.text()}")

        async def publish(phase: str, count: int, type: str = EVENT_TYPE) -> None:
            batches = [
                orjson.dumps(
                    [make_event(n, phase) | {"type": type} for n in range(i, min(count, i + BATCH))]
                )
                for i in range(0, count, BATCH)
            ]
            headers = {**auth, "Content-Type": "application/cloudevents-batch+json"}

            async def post(index: int) -> None:
                url = f"{hub_url}/v1/events"
                async with session.post(url, data=batches[index], headers=headers) as response:
                    if response.status != 201:
                        raise RuntimeError(f"publish: {response.status} {await response.text()}")

            await closed_loop(len(batches), 4, post)

        await publish("warmup", 500)
        await publish("warmup-plain", 500, PLAIN_TYPE)
        await wait_delivered(session, sink, "warmup", 500, 60)
        await wait_delivered(session, sink, "warmup-plain", 500, 60)
        # Taking events in alone (published, logged, routed to no subscription): the part of
        # the hub's CPU per event below that is not delivering.
        cpu = hub.cpu_seconds()
        await publish("unrouted", config.events, UNROUTED_TYPE)
        await asyncio.sleep(1.0)  # the router reads them after the answers
        ingest_cpu = (hub.cpu_seconds() - cpu) / config.events
        log(f"ingest alone: hub CPU {ingest_cpu * 1e6:.0f} us/event")

        async def through_hub(phase: str, type: str) -> tuple[float, float, int]:
            """Deliveries/s at the receiver, hub CPU per event, and the requests it took."""
            cpu = hub.cpu_seconds()
            folded = config.profile if phase == "engine-0" else None
            sampling = profile.sampling(hub.popen.pid, folded, rate=250) if folded else None
            with sampling or nullcontext():
                await publish(phase, config.events, type)
                stats = await wait_delivered(session, sink, phase, config.events, 300)
            if stats["unique"] < config.events:
                raise RuntimeError(f"{phase}: {stats['unique']} of {config.events} delivered")
            rate = stats["unique"] / max(1e-9, stats["last"] - stats["first"])
            return rate, (hub.cpu_seconds() - cpu) / config.events, int(stats["requests"])

        async def raw_round(phase: str) -> float:
            """Counted at the receiver, first arrival to last, as the hub's deliveries are."""
            await raw_aiohttp(f"{sink}/raw", signed_bodies(config.events, phase, secret))
            stats = await wait_delivered(session, sink, phase, config.events, 60)
            return float(stats["unique"] / max(1e-9, stats["last"] - stats["first"]))

        rounds = []
        for turn in range(config.rounds):
            # Every other round in the reverse order: a drift through the round weighs on
            # the raw client and on the endpoint in turn, not always on the same one.
            if turn % 2 == 0:
                raw_rate = await raw_round(f"raw-{turn}")
                plain_rate, plain_cpu, _ = await through_hub(f"plain-{turn}", PLAIN_TYPE)
                engine_rate, engine_cpu, requests = await through_hub(f"engine-{turn}", EVENT_TYPE)
            else:
                engine_rate, engine_cpu, requests = await through_hub(f"engine-{turn}", EVENT_TYPE)
                plain_rate, plain_cpu, _ = await through_hub(f"plain-{turn}", PLAIN_TYPE)
                raw_rate = await raw_round(f"raw-{turn}")
            rounds.append(
                {
                    "raw_aiohttp_per_s": round(raw_rate, 1),
                    "plain_sink_per_s": round(plain_rate, 1),
                    "engine_per_s": round(engine_rate, 1),
                    "ratio": round(engine_rate / raw_rate, 3),
                    "plain_sink_ratio": round(plain_rate / raw_rate, 3),
                    # The hub's CPU time (all threads) per event, taking it in and delivering.
                    "hub_cpu_us_per_event": round(engine_cpu * 1e6, 1),
                    "plain_sink_hub_cpu_us_per_event": round(plain_cpu * 1e6, 1),
                    "retried": requests - config.events,
                }
            )
            log(
                f"round {turn + 1}: raw aiohttp {raw_rate:,.0f}/s, plain sink {plain_rate:,.0f}/s,"
                f" endpoint {engine_rate:,.0f}/s: {engine_rate / raw_rate:.2f}x"
            )

        log(f"inbound: {config.inbound:,} signed POST /hooks/partner")
        inbound = await _inbound(session, hub_url, inbound_secret, config)
        log(f"inbound: {inbound['rate']:,.0f}/s, p99 {inbound['p99_ms']:.1f} ms")

    def median(key: str) -> float:
        return statistics.median(turn[key] for turn in rounds)

    raw = {"aiohttp": median("raw_aiohttp_per_s"), "httpx": round(httpx_rate, 1)}
    if raw["httpx"] > raw["aiohttp"]:
        raise RuntimeError("httpx outran aiohttp: measure the rounds against httpx")
    ratio = median("ratio")
    signing = signing_beside_a_busy_thread()
    log(
        f"signing beside a busy thread: {signing['signer_per_s']:,.0f}/s"
        f" (hmac.digest: {signing['hmac_digest_per_s']:,.0f}/s)"
    )
    return {
        "outbound": {
            "engine_per_s": median("engine_per_s"),
            "raw_per_s": raw,
            "raw_client": "aiohttp",
            "ratio": ratio,
            "ratio_range": [min(t["ratio"] for t in rounds), max(t["ratio"] for t in rounds)],
            "hub_cpu_us_per_event": median("hub_cpu_us_per_event"),
            "plain_sink_hub_cpu_us_per_event": median("plain_sink_hub_cpu_us_per_event"),
            "ingest_hub_cpu_us_per_event": round(ingest_cpu * 1e6, 1),
            "plain_sink_per_s": median("plain_sink_per_s"),
            "plain_sink_ratio": median("plain_sink_ratio"),
            "target": ">= 0.5x (median of the rounds)",
            "ok": ratio >= 0.5,
            "retried": sum(t["retried"] for t in rounds),
            "rounds": rounds,
        },
        "signing_beside_a_busy_thread": signing,
        "inbound": inbound,
    }


def signing_beside_a_busy_thread(seconds: float = 0.3) -> dict[str, float]:
    """Calls/s of the delivery's signing, and of the same HMAC through ``hmac.digest``, while
    a second thread keeps the interpreter busy."""
    secret = new_symmetric_secret()
    signer = Signer([secret])
    key = base64.b64decode(secret.removeprefix("whsec_"))
    body = orjson.dumps(make_event(0, "signing"))
    content = b"msg_0." + body
    busy = True

    def spin() -> None:
        while busy:
            pass

    def rate(call: Callable[[], object]) -> float:
        calls, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            call()
            calls += 1
        return round(calls / (time.perf_counter() - start), 1)

    thread = threading.Thread(target=spin)
    thread.start()
    try:
        return {
            "signer_per_s": rate(lambda: signer.headers("msg_0", body)),
            "hmac_digest_per_s": rate(lambda: hmac.digest(key, content, "sha256")),
        }
    finally:
        busy = False
        thread.join()


async def _inbound(
    session: aiohttp.ClientSession, hub_url: str, secret: str, config: Config
) -> dict[str, Any]:
    url = f"{hub_url}/hooks/partner"
    prepared = []
    for index in range(config.inbound):
        body = orjson.dumps({"order": f"SO-{index:06d}", "status": "shipped", "qty": index % 50})
        headers = signature_headers(f"msg-{index:06d}-{os.getpid()}", body, [secret])
        prepared.append((body, {**headers, "Content-Type": "application/json"}))
    latencies: list[float] = []
    failures: list[int] = []

    async def send(index: int) -> None:
        body, headers = prepared[index]
        start = time.perf_counter()
        async with session.post(url, data=body, headers=headers) as response:
            await response.read()
            if response.status != 202:
                failures.append(response.status)
        latencies.append(time.perf_counter() - start)

    seconds = await closed_loop(config.inbound, config.inbound_concurrency, send)
    if failures:
        raise RuntimeError(f"inbound: {len(failures)} refused, e.g. HTTP {failures[0]}")
    return {
        "rate": round(config.inbound / seconds, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(percentile(latencies, 99) * 1000, 2),
        "concurrency": config.inbound_concurrency,
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--hub":
        data_dir, port, config_file = sys.argv[2:5]
        serve_hub(Path(data_dir), int(port), Path(config_file))
        return
    parser = argparse.ArgumentParser(prog="python -m bench.webhooks", description=__doc__)
    parser.add_argument("--events", type=int, default=Config.events)
    parser.add_argument("--rounds", type=int, default=Config.rounds, help="at least 1")
    parser.add_argument("--inbound", type=int, default=Config.inbound)
    parser.add_argument("--inbound-concurrency", type=int, default=Config.inbound_concurrency)
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample the hub with py-spy (installed apart) during the first endpoint round",
    )
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    folded = profile.RESULTS / "webhooks-hub-profile.folded" if args.profile else None
    config = Config(args.events, args.rounds, args.inbound, args.inbound_concurrency, folded)
    result = asyncio.run(run(config))
    if folded is not None:
        for kind, items in profile.top(folded).items():
            print(f"hub profile, top {kind} (% of samples):")
            for frame, share in items:
                print(f"{share:5.1f}%  {frame}")
    out = result["outbound"]
    print()
    low, high = out["ratio_range"]
    print(
        f"medians of {len(out['rounds'])} rounds: the ratio is the median of each round's own"
        " ratio, not the quotient of the two medians beside it"
    )
    print(f"{'measurement':<44}{'figure':>12}{'raw limit':>14}{'ratio':>8}  target")
    print(
        f"{'signed webhook deliveries (one endpoint)':<44}{out['engine_per_s']:>10,.0f}/s"
        f"{out['raw_per_s'][out['raw_client']]:>12,.0f}/s{out['ratio']:>7.2f}x  >= 0.5x"
        f" ({out['raw_client']}; rounds {low:.2f}-{high:.2f}x;"
        f" hub CPU {out['hub_cpu_us_per_event']:.0f} us/event)"
    )
    print(
        f"{'  the same engine, plain HTTP sink':<44}{out['plain_sink_per_s']:>10,.0f}/s"
        f"{out['raw_per_s'][out['raw_client']]:>12,.0f}/s{out['plain_sink_ratio']:>7.2f}x"
        f"  (hub CPU {out['plain_sink_hub_cpu_us_per_event']:.0f} us/event)"
    )
    signing = result["signing_beside_a_busy_thread"]
    print(
        f"{'signing beside a busy thread (Signer)':<44}{signing['signer_per_s']:>10,.0f}/s"
        f"{signing['hmac_digest_per_s']:>12,.0f}/s  (hmac.digest, which drops the GIL)"
    )
    inbound = result["inbound"]
    print(
        f"{'inbound verify + persist (/hooks, standard)':<44}{inbound['rate']:>10,.0f}/s"
        f"{'':>14}{'':>8}  p50 {inbound['p50_ms']} ms, p99 {inbound['p99_ms']} ms"
    )
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
