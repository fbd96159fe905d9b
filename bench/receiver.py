"""A minimal, fast HTTP sink run as its own process: ``python -m bench.receiver PORT``.

Every POST is answered 204. Per ``data.phase`` of the event it keeps the distinct event ids,
the first and last arrival time and, per event, arrival minus ``data.sent`` (the client's send
time; both are ``time.time()`` on the same machine). ``GET /stats`` answers the counts,
``GET /latencies?phase=P`` the latencies of one phase, in seconds.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import orjson
import uvloop
from aiohttp import web


class Phase:
    __slots__ = ("first", "ids", "last", "latencies", "requests")

    def __init__(self, now: float) -> None:
        self.first = now
        self.last = now
        self.requests = 0
        self.ids: set[str] = set()
        self.latencies: list[float] = []


class Recorder:
    def __init__(self) -> None:
        self.phases: dict[str, Phase] = {}

    async def sink(self, request: web.Request) -> web.Response:
        arrival = time.time()
        body = await request.read()
        try:
            event = orjson.loads(body)
            data = event.get("data") or {}
            name = str(data.get("phase", "?"))
            sent = data.get("sent")
        except (orjson.JSONDecodeError, AttributeError):
            return web.Response(status=400)
        phase = self.phases.get(name)
        if phase is None:
            phase = self.phases[name] = Phase(arrival)
        phase.last = arrival
        phase.requests += 1
        event_id = event.get("id")
        if event_id not in phase.ids:
            phase.ids.add(event_id)
            if isinstance(sent, int | float):
                phase.latencies.append(arrival - sent)
        return web.Response(status=204)

    async def stats(self, request: web.Request) -> web.Response:
        body: dict[str, Any] = {
            name: {
                "unique": len(p.ids),
                "requests": p.requests,
                "first": p.first,
                "last": p.last,
            }
            for name, p in self.phases.items()
        }
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    async def latencies(self, request: web.Request) -> web.Response:
        phase = self.phases.get(request.query.get("phase", ""))
        values = phase.latencies if phase is not None else []
        return web.Response(body=orjson.dumps(values), content_type="application/json")


def main() -> None:
    port = int(sys.argv[1])
    recorder = Recorder()
    app = web.Application()
    app.router.add_get("/stats", recorder.stats)
    app.router.add_get("/latencies", recorder.latencies)
    app.router.add_post("/{tail:.*}", recorder.sink)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
