"""HTTP hygiene on a small FastAPI app built like the hub's: security headers on every answer
(200, 404, 413, 429, 500), CORS closed unless configured, rate limits and page caps."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from types import SimpleNamespace

import httpx
import orjson
import pytest
from fastapi import Depends, FastAPI, Request
from starlette.responses import Response

from forgeline.api.hygiene import RateLimitGuard, install_hygiene, page_size
from forgeline.api.problems import BodyLimit, install_problem_handlers
from forgeline.exceptions import ConfigError, InvalidInput
from forgeline.security.ratelimit import Limit, MemoryLimiter, RateRule, RateRules

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "content-security-policy": "frame-ancestors 'none'",
}
PLANT_UI = "https://console.plant.example"


def build_app(
    *,
    cors_origins: Iterable[str] = (),
    force_hsts: bool = False,
    guard: RateLimitGuard | None = None,
) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)

    async def authenticate(request: Request) -> None:
        # What the security layer will do: leave the principal on the request's state.
        name = request.headers.get("x-test-principal")
        if name:
            request.state.caller = SimpleNamespace(id=name, kind="service")

    guarded = [Depends(authenticate)] + ([Depends(guard)] if guard else [])

    @app.get("/v1/things", dependencies=guarded)
    async def things() -> Response:  # a Response of its own, like the hub's handlers
        return Response(orjson.dumps({"things": []}), media_type="application/json")

    @app.post("/v1/things")
    async def upload(request: Request) -> Response:
        body = await request.body()
        return Response(orjson.dumps({"size": len(body)}), 201, media_type="application/json")

    @app.get("/v1/cached")
    async def cached() -> Response:
        return Response("{}", headers={"Cache-Control": "max-age=60"})

    @app.get("/v1/boom")
    async def boom() -> Response:
        raise RuntimeError("asyncpg: password authentication failed for user plant")

    app.add_middleware(BodyLimit, limit=64)
    install_hygiene(app, cors_origins=cors_origins, force_hsts=force_hsts)
    return app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with _client(build_app()) as c:
        yield c


def _client(app: FastAPI, base_url: str = "http://hub.test") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url=base_url)


def assert_secured(response: httpx.Response) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get_list(name) == [value], name
    assert "strict-transport-security" not in response.headers  # plain http


async def _chunks(size: int) -> AsyncIterator[bytes]:
    for _ in range(size // 16):
        yield b"x" * 16


# --- security headers ---------------------------------------------------------------------


async def test_a_success_carries_the_security_headers(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/things")
    assert response.status_code == 200
    assert_secured(response)


async def test_a_404_problem_carries_them(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert_secured(response)


async def test_a_413_carries_them_whether_refused_by_length_or_while_streaming(
    client: httpx.AsyncClient,
) -> None:
    by_length = await client.post("/v1/things", content=b"x" * 65)
    streamed = await client.post("/v1/things", content=_chunks(128))  # chunked: no length
    for response in (by_length, streamed):
        assert response.status_code == 413
        assert response.json()["type"] == "urn:forgeline:problem:payload-too-large"
        assert_secured(response)
    small = await client.post("/v1/things", content=b"x" * 64)
    assert small.status_code == 201


async def test_a_500_is_a_problem_with_the_headers_and_without_the_driver_message(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/v1/boom")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "urn:forgeline:problem:internal-error"
    assert "password" not in response.text
    assert "Traceback" not in response.text
    assert_secured(response)


async def test_an_answer_keeps_its_own_cache_policy(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/cached")
    assert response.headers.get_list("cache-control") == ["max-age=60"]


async def test_hsts_only_over_https_unless_forced() -> None:
    async with _client(build_app(), base_url="https://hub.test") as https:
        secured = await https.get("/v1/things")
    assert secured.headers["strict-transport-security"] == "max-age=31536000"
    async with _client(build_app(force_hsts=True)) as behind_tls_terminator:
        forced = await behind_tls_terminator.get("/v1/nothing-here")
    assert forced.headers["strict-transport-security"] == "max-age=31536000"


# --- CORS ---------------------------------------------------------------------------------


def _preflight(origin: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }


async def test_cors_is_closed_by_default(client: httpx.AsyncClient) -> None:
    preflight = await client.options("/v1/things", headers=_preflight(PLANT_UI))
    assert preflight.status_code == 405
    assert not any(name.startswith("access-control-") for name in preflight.headers)
    simple = await client.get("/v1/things", headers={"Origin": PLANT_UI})
    assert "access-control-allow-origin" not in simple.headers


async def test_cors_allows_exactly_the_configured_origins_without_credentials() -> None:
    async with _client(build_app(cors_origins=[PLANT_UI])) as c:
        allowed = await c.options("/v1/things", headers=_preflight(PLANT_UI))
        other = await c.options("/v1/things", headers=_preflight("https://evil.example"))
        simple = await c.get("/v1/things", headers={"Origin": PLANT_UI})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == PLANT_UI
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in allowed.headers
    assert_secured(allowed)
    assert other.status_code == 400
    assert "access-control-allow-origin" not in other.headers
    assert simple.headers["access-control-allow-origin"] == PLANT_UI
    assert "retry-after" in simple.headers["access-control-expose-headers"].lower()


@pytest.mark.parametrize(
    "origin",
    ["*", "https://*.plant.example", "https://console.plant.example/app", "ftp://plant", "mes"],
)
def test_an_origin_that_is_not_exact_is_refused(origin: str) -> None:
    with pytest.raises(ConfigError):
        build_app(cors_origins=[origin])


# --- rate limits --------------------------------------------------------------------------


async def test_a_caller_over_its_budget_gets_429_with_retry_after() -> None:
    guard = RateLimitGuard(MemoryLimiter(), RateRules(Limit(rate=0.01, burst=2, name="api")))
    async with _client(build_app(guard=guard)) as c:
        mes = {"x-test-principal": "svc-mes"}
        first, second, third = [await c.get("/v1/things", headers=mes) for _ in range(3)]
        other = await c.get("/v1/things", headers={"x-test-principal": "svc-wms"})
    assert [first.status_code, second.status_code] == [200, 200]
    assert first.headers["ratelimit"] == '"api";r=1;t=100'
    assert first.headers["ratelimit-policy"] == '"api";q=2;w=200'
    assert "retry-after" not in first.headers
    assert third.status_code == 429
    assert third.headers["content-type"] == "application/problem+json"
    assert third.json()["type"] == "urn:forgeline:problem:rate-limited"
    assert third.json()["detail"] == "over the 'api' rate limit; retry in 100 s"
    assert third.headers["retry-after"] == "100"
    assert third.headers["ratelimit"] == '"api";r=0;t=100'
    assert_secured(third)
    assert other.status_code == 200  # another principal, another budget


async def test_before_authentication_a_route_rule_keys_by_client_address() -> None:
    rules = RateRules(
        Limit(rate=100, burst=100),
        [RateRule(Limit(rate=0.01, burst=1, name="things"), route="GET /v1/things", by="client")],
    )
    async with _client(build_app(guard=RateLimitGuard(MemoryLimiter(), rules))) as c:
        statuses = [
            (await c.get("/v1/things", headers={"x-test-principal": name})).status_code
            for name in ("a", "b")  # whoever they claim to be: one address, one budget
        ]
    assert statuses == [200, 429]


# --- page sizes ---------------------------------------------------------------------------


def test_page_sizes_are_clamped_to_the_cap() -> None:
    assert page_size(None, maximum=1000) == 100
    assert page_size(None, maximum=50) == 50
    assert page_size(20, maximum=1000) == 20
    assert page_size(1_000_000, maximum=1000) == 1000


@pytest.mark.parametrize("requested", [0, -5])
def test_a_page_size_below_one_is_refused(requested: int) -> None:
    with pytest.raises(InvalidInput) as refused:
        page_size(requested, maximum=1000)
    assert refused.value.status == 400
    assert refused.value.errors == [{"path": "limit", "message": "must be at least 1"}]
