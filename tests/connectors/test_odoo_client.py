"""OdooClient over real HTTP against the simulated Odoo: versions, protocols, logins, error
classes and the retry-safety rule (the simulator's request log proves what was retried)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
from aiohttp import web

from forgeline.connectors.odoo import (
    OdooAccessError,
    OdooAuthError,
    OdooBusinessError,
    OdooClient,
    OdooPermanentError,
    OdooProtocolError,
    OdooRateLimited,
    OdooRetry,
    OdooServerError,
    OdooSessionExpired,
    OdooTimeout,
    OdooUnavailable,
)
from forgeline.exceptions import BackendUnavailable, ConfigError, TransientDeliveryError

from .conftest import FAST, api_key, recorder, serving

Connect = Callable[..., Any]


@pytest.mark.parametrize(
    ("version", "credential", "requested", "expected"),
    [
        (17, "password", "auto", "jsonrpc"),
        (17, "password", "xmlrpc", "xmlrpc"),
        (19, "api_key", "auto", "json2"),
        (19, "password", "auto", "jsonrpc"),
        (19, "api_key", "xmlrpc", "xmlrpc"),
    ],
)
async def test_version_detection_and_protocol(
    version: int, credential: str, requested: Any, expected: str
) -> None:
    async with serving(version) as server:
        secret: dict[str, Any] = (
            {"api_key": api_key(server)} if credential == "api_key" else {"password": "admin"}
        )
        async with OdooClient(
            server.url, "demo", login="admin", protocol=requested, retry=FAST, **secret
        ) as client:
            assert (client.version, client.protocol, client.uid) == (version, expected, 2)
            partners = await client.search_read("res.partner", [], ["name"], limit=2)
            assert len(partners) == 2 and {"id", "name"} <= set(partners[0])
        paths = recorder(server).paths
        if expected == "json2":
            assert paths[:2] == ["/web/version", "/json/2/res.users/context_get"]
        elif expected == "xmlrpc":
            assert paths[:2] == ["/xmlrpc/2/common", "/xmlrpc/2/common"]
        else:
            probe = "/web/version" if version >= 18 else "/web/webclient/version_info"
            assert probe in paths and "/jsonrpc" in paths


async def test_json2_needs_19_and_rpc_needs_a_login(odoo17: Any, odoo19: Any) -> None:
    with pytest.raises(ConfigError):
        OdooClient(odoo19.url, "demo", password="admin", protocol="json2")
    client = OdooClient(odoo17.url, "demo", api_key="0" * 40, protocol="json2", retry=FAST)
    with pytest.raises(ConfigError, match="Odoo 19"):
        await client.open()
    await client.aclose()
    client = OdooClient(odoo17.url, "demo", password="admin", retry=FAST)
    with pytest.raises(ConfigError, match="login"):
        await client.open()
    await client.aclose()


@pytest.mark.parametrize("protocol", ["jsonrpc", "xmlrpc"])
async def test_bad_password_is_permanent_and_not_retried(odoo17: Any, protocol: Any) -> None:
    client = OdooClient(
        odoo17.url, "demo", login="admin", password="wrong", protocol=protocol, retry=FAST
    )
    with pytest.raises(OdooAuthError) as caught:
        await client.open()
    await client.aclose()
    assert caught.value.status == 401 and not isinstance(caught.value, TransientDeliveryError)
    assert recorder(odoo17).count("common") + recorder(odoo17).count("/jsonrpc") <= 2


async def test_bad_api_key_on_json2(odoo19: Any) -> None:
    client = OdooClient(odoo19.url, "demo", api_key="f" * 40, retry=FAST)
    with pytest.raises(OdooAuthError):
        await client.open()
    await client.aclose()
    assert recorder(odoo19).count("/json/2/") == 1


async def test_api_key_with_login_over_jsonrpc(odoo17: Any) -> None:
    key = api_key(odoo17)
    async with OdooClient(odoo17.url, "demo", login="admin", api_key=key, retry=FAST) as client:
        assert client.protocol == "jsonrpc" and client.uid == 2


@pytest.mark.parametrize("protocol", ["auto", "jsonrpc", "xmlrpc"])
async def test_business_errors_are_permanent_and_sent_once(
    odoo: Any, connect: Connect, protocol: str
) -> None:
    client = await connect(odoo, protocol=protocol) if protocol != "auto" else await connect(odoo)
    if protocol in ("jsonrpc", "xmlrpc") and odoo.version >= 19:
        await client.aclose()
        client = await connect(odoo, protocol=protocol, password="admin")
    plan = recorder(odoo)
    # JSON-RPC/XML-RPC: UserError "Object ... doesn't exist"; JSON-2: a 404 NotFound.
    with pytest.raises(OdooPermanentError) as missing_model:
        await client.search("no.such.model", [])
    assert plan.count("") == 1
    with pytest.raises(OdooBusinessError) as missing_record:
        await client.write("res.partner", [999_999], {"name": "ghost"})
    assert plan.count("") == 2
    assert "999999" in missing_record.value.detail or "exist" in missing_record.value.detail
    if client.protocol != "xmlrpc":  # XML-RPC's fault 2 does not say which UserError
        assert missing_record.value.odoo_name == "odoo.exceptions.MissingError"
    assert missing_model.value.odoo_message
    with pytest.raises(OdooServerError):
        await client.call("res.partner", "no_such_method", ids=[1])
    assert plan.count("") == 3


async def test_access_error_for_a_read_only_user(odoo17: Any, connect: Connect) -> None:
    client = await connect(odoo17, login="demo", password="demo")
    assert client.uid != 2
    with pytest.raises(OdooAccessError) as caught:
        await client.create("res.users", {"name": "Eve", "login": "eve"})
    assert "not allowed" in caught.value.detail.lower() or caught.value.odoo_message
    assert recorder(odoo17).count("") == 1


async def test_transient_errors_are_retried_then_succeed(odoo: Any, connect: Connect) -> None:
    client = await connect(odoo)
    plan = recorder(odoo)
    plan.fail_next(2, status=502)
    assert await client.search_count("res.partner", []) > 0
    assert plan.count("") == 3


async def test_retry_budget_then_transient_for_the_dispatcher(
    odoo17: Any, connect: Connect
) -> None:
    client = await connect(odoo17)
    plan = recorder(odoo17)
    plan.fail_next(10, status=504)
    with pytest.raises(OdooUnavailable) as caught:
        await client.search_count("res.partner", [])
    assert isinstance(caught.value, TransientDeliveryError) and caught.value.http_status == 504
    assert plan.count("") == FAST.attempts


async def test_ambiguous_failure_of_a_create_is_not_retried(odoo: Any, connect: Connect) -> None:
    client = await connect(odoo)
    plan = recorder(odoo)
    before = await client.search_count("res.partner", [])
    plan.paths.clear()
    plan.drop_next()  # committed, then the answer is lost
    with pytest.raises(OdooUnavailable) as caught:
        await client.create("res.partner", {"name": "Dropped once"})
    assert not caught.value.rolled_back
    assert plan.count("") == 1
    assert await client.search_count("res.partner", []) == before + 1  # exactly one, not two


async def test_refused_before_running_is_retried_even_for_a_create(
    odoo: Any, connect: Connect
) -> None:
    client = await connect(odoo)
    plan = recorder(odoo)
    plan.fail_next(1, status=503)  # a proxy refusing: nothing ran
    new_id = await client.create("res.partner", {"name": "After a 503"})
    assert plan.count("") == 2
    assert await client.search_count("res.partner", [("name", "=", "After a 503")]) == 1
    assert isinstance(new_id, int)


async def test_garbage_body(odoo: Any, connect: Connect) -> None:
    client = await connect(odoo)
    plan = recorder(odoo)
    plan.garbage_next()
    assert await client.read("res.partner", [1], ["name"])  # a read is simply retried
    assert plan.count("") == 2
    plan.garbage_next()
    with pytest.raises(OdooProtocolError) as caught:
        await client.create("res.partner", {"name": "Garbled"})
    assert "garbage" in (caught.value.response_excerpt or "")
    assert plan.count("") == 3


async def test_odoo_down(connect: Connect) -> None:
    async with serving(17) as server:
        client = await connect(server, retry=OdooRetry(attempts=2, initial_delay=0.01))
    with pytest.raises(OdooUnavailable) as caught:  # the server is gone now
        await client.search_count("res.partner", [])
    assert caught.value.rolled_back and isinstance(caught.value, BackendUnavailable)
    fresh = OdooClient(client.url, "demo", login="admin", password="admin", retry=FAST)
    with pytest.raises(OdooUnavailable):
        await fresh.open()
    await fresh.aclose()


async def test_slow_odoo_times_out(odoo17: Any, connect: Connect) -> None:
    client = await connect(odoo17, timeout=0.2, retry=OdooRetry(attempts=2, initial_delay=0.01))
    plan = recorder(odoo17)
    plan.slow_next(1.0)
    assert await client.search_count("res.partner", []) > 0  # a read: retried once, in time
    assert plan.count("") == 2
    plan.slow_next(1.0)
    started = time.perf_counter()
    with pytest.raises(OdooTimeout):
        await client.create("res.partner", {"name": "Slow"})
    assert time.perf_counter() - started < 0.9
    assert plan.count("") == 3


async def test_concurrency_cap(odoo17: Any, connect: Connect) -> None:
    client = await connect(odoo17, max_concurrency=3)
    plan = recorder(odoo17)
    plan.latency = 0.03
    counts = await asyncio.gather(*(client.search_count("res.partner", []) for _ in range(12)))
    assert len(set(counts)) == 1
    assert plan.peak == 3  # never more than the cap, and the cap was reached


async def test_json2_positional_arguments_by_name(odoo19: Any, connect: Connect) -> None:
    client = await connect(odoo19)
    assert client.protocol == "json2"
    ids = await client.call("res.partner", "search", [("name", "!=", False)], 0, 3)
    assert len(ids) == 3
    pair = await client.call("res.partner", "name_create", "Named by doc")
    again = await client.call("res.partner", "name_create", "Named twice")
    assert pair[1] == "Named by doc" and again[1] == "Named twice"
    assert recorder(odoo19).count("/doc-bearer/res.partner.json") == 1


async def test_typed_helpers(odoo: Any, connect: Connect) -> None:
    client = await connect(odoo)
    one = await client.create("res.partner", {"name": "Helper A", "email": None})
    many = await client.create("res.partner", [{"name": "Helper B"}, {"name": "Helper C"}])
    assert isinstance(one, int) and len(many) == 2
    assert await client.write("res.partner", many, {"city": "Lyon"})
    rows = await client.read("res.partner", [one, *many], ["name", "city"])
    assert sorted(r["name"] for r in rows) == ["Helper A", "Helper B", "Helper C"]
    assert await client.search_count("res.partner", [("city", "=", "Lyon")]) >= 2
    found = await client.name_search("res.partner", "Helper", limit=10)
    assert {name for _, name in found} >= {"Helper A", "Helper B", "Helper C"}
    fields = await client.fields_get("res.partner", attributes=["type"])
    assert fields["name"]["type"] == "char"
    assert await client.unlink("res.partner", [one])
    assert await client.search("res.partner", [("id", "=", one)]) == []


# --- a scripted peer for the shapes the simulator has no fault for -------------------------


@pytest.fixture
async def scripted() -> AsyncIterator[Callable[..., Any]]:
    runners: list[web.AppRunner] = []

    async def start(answers: list[tuple[int, dict[str, str], bytes]]) -> tuple[str, list[Any]]:
        seen: list[Any] = []

        async def handle(request: web.Request) -> web.Response:
            body = await request.read()
            payload = orjson.loads(body) if body else None
            seen.append((request.path, payload))
            method = (payload or {}).get("params", {}).get("method")
            if request.path == "/web/version":  # Odoo < 18 has no such route
                return web.Response(status=404, text="<html>Not Found</html>")
            if request.path == "/web/webclient/version_info":
                result: Any = {
                    "server_version": "17.0",
                    "server_version_info": [17, 0, 0, "final", 0, ""],
                }
            elif method == "authenticate":
                result = 2
            else:
                status, headers, raw = answers.pop(0)
                return web.Response(status=status, headers=headers, body=raw)
            return web.json_response({"jsonrpc": "2.0", "id": 1, "result": result})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}", seen

    yield start
    for runner in runners:
        await runner.cleanup()


def _rpc(result: Any = None, *, code: int | None = None) -> tuple[int, dict[str, str], bytes]:
    if code is None:
        return 200, {}, orjson.dumps({"jsonrpc": "2.0", "id": 1, "result": result})
    data = {"name": "odoo.http.SessionExpiredException", "message": "Session expired"}
    error = {"code": code, "message": "Odoo Session Expired", "data": data}
    return 200, {}, orjson.dumps({"jsonrpc": "2.0", "id": 1, "error": error})


async def test_session_expired_logs_in_again_once(scripted: Callable[..., Any]) -> None:
    url, seen = await scripted([_rpc(code=100), _rpc([7]), _rpc(code=100), _rpc(code=100)])
    async with OdooClient(url, "demo", login="admin", password="admin", retry=FAST) as client:
        assert await client.call("res.partner", "action_archive", ids=[7]) == [7]
        logins = [p for p in seen if (p[1] or {}).get("params", {}).get("method") == "authenticate"]
        assert len(logins) == 2
        with pytest.raises(OdooSessionExpired):
            await client.call("res.partner", "action_archive", ids=[7])


async def test_long_retry_after_goes_to_the_hub_schedule(scripted: Callable[..., Any]) -> None:
    answers = [(429, {"Retry-After": "120"}, b"slow down"), (429, {"Retry-After": "0"}, b"")]
    url, _ = await scripted([*answers, _rpc(5)])
    async with OdooClient(url, "demo", login="admin", password="admin", retry=FAST) as client:
        with pytest.raises(OdooRateLimited) as caught:
            await client.search_count("res.partner", [])
        assert caught.value.retry_after == 120.0
        assert await client.search_count("res.partner", []) == 5


async def test_a_method_answering_none_over_xmlrpc_succeeded(odoo17: Any, connect: Connect) -> None:
    # Odoo's XML-RPC cannot marshal None: a method that returns it (purchase.order's
    # button_cancel) ran and committed, then the answer became fault 1. That is a success.
    client = await connect(odoo17, protocol="xmlrpc")
    (order,) = await client.search("purchase.order", [("state", "=", "draft")], limit=1)
    assert await client.call("purchase.order", "button_cancel", ids=[order]) is None
    (row,) = await client.read("purchase.order", [order], ["state"])
    assert row["state"] == "cancel"
