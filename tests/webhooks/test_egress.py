"""The SSRF policy: every blocked range and odd IP spelling refused, by the URL check and by
real aiohttp requests through the policy's resolver and connector; an allow-list opens a
network; a name with any blocked address is refused whole; redirects are not followed, and
a careless caller who follows one is still stopped at the blocked hop."""

from __future__ import annotations

import pickle
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from ipaddress import ip_network

import aiohttp
import pytest
from aiohttp import web

from forgeline.exceptions import ConfigError, InvalidInput
from forgeline.webhooks.egress import ALLOW_ENV, EgressPolicy, EgressRefused

LOOPBACK_ONLY = [ip_network("127.0.0.1/32")]


@dataclass
class Recorder:
    """A real HTTP server recording every request (any method), answering ``status``."""

    host: str = "127.0.0.1"
    status: int = 204
    headers: dict[str, str] = field(default_factory=dict)
    seen: list[tuple[str, str, str]] = field(default_factory=list)  # method, path, Host
    port: int = 0

    async def _handle(self, request: web.Request) -> web.Response:
        self.seen.append((request.method, request.path, request.headers.get("Host", "")))
        return web.Response(status=self.status, headers=self.headers)

    def url(self, path: str = "/hook", host: str | None = None) -> str:
        return f"http://{host or self.host}:{self.port}{path}"


@asynccontextmanager
async def serving(recorder: Recorder) -> AsyncIterator[Recorder]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recorder._handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, recorder.host, 0)
    await site.start()
    recorder.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield recorder
    finally:
        await runner.cleanup()


@pytest.fixture
async def sink() -> AsyncIterator[Recorder]:
    async with serving(Recorder()) as recorder:
        yield recorder


class FakeDns:
    """A lookup answering from a table, counting questions (a name it lacks: NXDOMAIN)."""

    def __init__(self, table: dict[str, Sequence[str]]) -> None:
        self.table = table
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int, family: int) -> Sequence[str]:
        self.asked.append(host)
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.table[host]


# --- the URL ---------------------------------------------------------------------------------

SPELLINGS = [
    "2130706433",  # decimal
    "0x7f000001",  # hex
    "0177.0.0.1",  # octal
    "127.1",  # short
    "0x7f.1",  # short hex
    "017700000001",  # octal, one number
    "127.0.0.1.",  # trailing dot
    "0",  # 0.0.0.0 in one digit
    "example.0x10",  # a name ending in a number
    "1.2.3.4.5",
]


@pytest.mark.parametrize("host", SPELLINGS)
def test_odd_ipv4_spellings_are_refused_outright(host: str) -> None:
    with pytest.raises(EgressRefused) as caught:
        EgressPolicy().check_url(f"http://{host}:8080/hook")
    assert caught.value.rule == "ip_spelling"
    # Even where the address would be allowed: the spelling itself is the problem.
    with pytest.raises(EgressRefused):
        EgressPolicy([ip_network("0.0.0.0/0")]).check_url(f"http://{host}/")


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("ftp://partner.example/in", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("gopher://partner.example/", "scheme"),
        ("//partner.example/in", "scheme"),
        ("http://user:pw@partner.example/in", "credentials"),
        ("http://user@partner.example/in", "credentials"),
        ("http://:pw@partner.example/in", "credentials"),
        ("http:///in", "host"),
        ("http://partner.example\\@127.0.0.1/", "syntax"),
        ("http://partner .example/", "syntax"),
        ("http://partner.example/\nHost: evil", "syntax"),
        ("http://partner.example/a b", "syntax"),
        ("http://[::1/", "syntax"),
        ("http://-partner.example/", "host"),
        ("http://partner.example:0/", "host"),
        ("http://127.0.0.1:8080/", "address"),
        ("http://[::1]/", "address"),
        ("http://[::ffff:127.0.0.1]/", "address"),
        ("http://[::ffff:7f00:1]/", "address"),
        ("http://[fe80::1%25eth0]/", "address"),
        ("http://169.254.169.254/latest/meta-data/", "address"),
        ("http://10.0.0.1/", "address"),
        ("http://0.0.0.0:8080/", "address"),
    ],
)
def test_urls_refused_by_their_text_name_the_rule(url: str, rule: str) -> None:
    with pytest.raises(EgressRefused) as caught:
        EgressPolicy().check_url(url)
    assert caught.value.rule == rule, caught.value.detail
    assert isinstance(caught.value, InvalidInput) and caught.value.status == 422


@pytest.mark.parametrize(
    "url",
    [
        "https://partner.example/in?x=1",
        "http://partner.example:8443/in",
        "HTTPS://Partner.Example/in",
        "https://exämple.com/",  # IDNA: yarl hands over xn--exmple-cua.com
        "https://8.8.8.8/",
        "https://[2606:4700:4700::1111]/",
        "https://_service.partner.example/",
    ],
)
def test_ordinary_urls_pass(url: str) -> None:
    EgressPolicy().check_url(url)


def test_https_only_refuses_plain_http() -> None:
    policy = EgressPolicy(https_only=True)
    policy.check_url("https://partner.example/")
    with pytest.raises(EgressRefused) as caught:
        policy.check_url("http://partner.example/")
    assert caught.value.rule == "https_only"


def test_a_refusal_survives_pickling() -> None:
    restored = pickle.loads(pickle.dumps(EgressRefused("no", rule="scheme")))
    assert (restored.detail, restored.rule) == ("no", "scheme")


# --- the address ranges ------------------------------------------------------------------------

BLOCKED = {
    "0.0.0.0": "unspecified",
    "0.1.2.3": "'this network'",
    "10.0.0.1": "private 10/8",
    "10.255.255.255": "private 10/8",
    "100.64.0.1": "CGNAT",
    "100.127.255.254": "CGNAT",
    "127.0.0.1": "loopback",
    "127.255.255.254": "loopback",
    "169.254.169.254": "cloud metadata",
    "169.254.0.1": "link-local",
    "172.16.0.1": "private 172.16/12",
    "172.31.255.255": "private 172.16/12",
    "192.0.0.1": "IETF protocol assignments",
    "192.0.2.1": "TEST-NET-1",
    "192.88.99.1": "6to4 relay",
    "192.168.1.1": "private 192.168/16",
    "198.18.0.1": "benchmarking",
    "198.19.255.254": "benchmarking",
    "198.51.100.1": "TEST-NET-2",
    "203.0.113.1": "TEST-NET-3",
    "224.0.0.1": "multicast",
    "239.255.255.250": "multicast (SSDP)",
    "240.0.0.1": "reserved",
    "255.255.255.255": "broadcast",
    "::": "unspecified",
    "::1": "loopback",
    "::ffff:127.0.0.1": "IPv4-mapped loopback",
    "::ffff:10.0.0.1": "IPv4-mapped private",
    "::ffff:169.254.169.254": "IPv4-mapped metadata",
    "::127.0.0.1": "IPv4-compatible",
    "::8.8.8.8": "IPv4-compatible, even of a public address",
    "::ffff:0:7f00:1": "IPv4-translated",
    "fe80::1": "link-local",
    "fe80::1%eth0": "link-local with a zone",
    "fc00::1": "unique-local",
    "fd12:3456:789a::1": "unique-local",
    "fec0::1": "site-local",
    "ff02::1": "multicast",
    "ff0e::1": "global multicast",
    "2001:db8::1": "documentation",
    "3fff::1": "documentation (RFC 9637)",
    "100::1": "discard-only",
    "5f00::1": "SRv6",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2": "Teredo",
    "2001:2::1": "benchmarking",
    "2002:7f00:1::1": "6to4 of loopback",
    "2002:a00:1::1": "6to4 of 10.0.0.1",
    "2002:a9fe:a9fe::": "6to4 of the metadata address",
    "64:ff9b::7f00:1": "NAT64 of loopback",
    "64:ff9b::a9fe:a9fe": "NAT64 of the metadata address",
    "64:ff9b:1::1": "local-use NAT64",
    "not-an-address": "not an address",
    "": "nothing",
}

ALLOWED = [
    "8.8.8.8",
    "1.1.1.1",
    "11.0.0.1",  # just past 10/8
    "100.63.255.255",  # just before CGNAT
    "100.128.0.1",  # just past CGNAT
    "172.15.255.255",  # just before 172.16/12
    "172.32.0.1",  # just past it
    "192.169.0.1",  # just past 192.168/16
    "223.255.255.254",  # just below multicast
    "2606:4700:4700::1111",
    "2a00:1450:4001::1",
    "::ffff:8.8.8.8",  # mapped public: judged as 8.8.8.8
    "2002:808:808::1",  # 6to4 of a public address
    "64:ff9b::808:808",  # NAT64 of a public address (DNS64 networks)
]


@pytest.mark.parametrize("address", BLOCKED, ids=[f"{a} {w}" for a, w in BLOCKED.items()])
def test_every_blocked_range_is_refused(address: str) -> None:
    assert not EgressPolicy().allowed(address)


@pytest.mark.parametrize("address", ALLOWED)
def test_global_unicast_addresses_are_allowed(address: str) -> None:
    assert EgressPolicy().allowed(address)


def test_an_allowed_network_opens_exactly_that_network() -> None:
    policy = EgressPolicy([ip_network("10.20.0.0/16"), ip_network("fd00:1::/32")])
    assert policy.allowed("10.20.3.4") and policy.allowed("::ffff:10.20.3.4")
    assert policy.allowed("64:ff9b::a14:304")  # NAT64 of 10.20.3.4, judged as it
    assert policy.allowed("fd00:1::7")
    assert not policy.allowed("10.21.0.1") and not policy.allowed("fd00:2::7")
    assert not policy.allowed("127.0.0.1") and not policy.allowed("169.254.169.254")


def test_no_allow_list_makes_a_non_host_a_destination() -> None:
    everything = EgressPolicy([ip_network("0.0.0.0/0"), ip_network("::/0")])
    assert everything.allowed("127.0.0.1") and everything.allowed("fe80::1")
    for address in ("0.0.0.0", "0.1.2.3", "::", "224.0.0.1", "ff02::1", "255.255.255.255"):
        assert not everything.allowed(address), address


def test_the_deployment_allow_list_comes_from_the_environment() -> None:
    env = {ALLOW_ENV: " 10.20.0.0/16, fd00::/8,,192.168.7.5 "}
    policy = EgressPolicy.from_settings(["172.16.5.0/24"], env=env, https_only=True)
    assert policy.https_only
    for address in ("10.20.1.1", "fd00::1", "192.168.7.5", "172.16.5.9"):
        assert policy.allowed(address), address
    assert not policy.allowed("192.168.7.6") and not policy.allowed("172.16.6.1")
    assert EgressPolicy.from_settings(env={}).allow == ()


@pytest.mark.parametrize(
    ("allow", "env", "where"),
    [
        ([], {ALLOW_ENV: "10.0.0.0/8,10.1.2.3/8"}, ALLOW_ENV),
        ([], {ALLOW_ENV: "intranet"}, ALLOW_ENV),
        (["10.0.0.0/33"], {}, "egress allow"),
    ],
)
def test_a_cidr_that_is_not_one_is_a_config_error_naming_it(
    allow: list[str], env: dict[str, str], where: str
) -> None:
    with pytest.raises(ConfigError, match=where):
        EgressPolicy.from_settings(allow, env=env)


# --- resolution --------------------------------------------------------------------------------


async def test_every_resolved_address_is_validated_and_one_bad_one_refuses_the_name() -> None:
    dns = FakeDns(
        {
            "partner.example": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
            "rebind.example": ["93.184.215.14", "127.0.0.1"],
            "metadata.example": ["169.254.169.254"],
        }
    )
    policy = EgressPolicy(lookup=dns)
    assert await policy.check_host("partner.example", 443) == dns.table["partner.example"]
    for name in ("rebind.example", "metadata.example"):
        with pytest.raises(EgressRefused) as caught:
            await policy.check_host(name, 443)
        assert caught.value.rule == "resolved"
        # Never what it resolved to: the hub is no DNS oracle for the networks behind it.
        assert "127.0.0.1" not in caught.value.detail and "169.254" not in caught.value.detail


async def test_literal_addresses_and_odd_spellings_are_judged_without_dns() -> None:
    dns = FakeDns({})
    policy = EgressPolicy(lookup=dns)
    assert await policy.check_host("8.8.8.8", 80) == ["8.8.8.8"]
    assert await policy.check_host("::ffff:8.8.8.8", 80) == ["::ffff:808:808"]
    for host in ("127.0.0.1", "::1", "2130706433", "0x7f000001"):
        with pytest.raises(EgressRefused):
            await policy.check_host(host, 80)
    assert dns.asked == []


async def test_a_name_that_does_not_resolve_is_not_a_refusal() -> None:
    policy = EgressPolicy(lookup=FakeDns({}))
    with pytest.raises(socket.gaierror):
        await policy.check_host("nowhere.example", 80)


async def test_localhost_through_the_system_resolver_is_refused() -> None:
    with pytest.raises(EgressRefused):
        await EgressPolicy().check_host("localhost", 80)


# --- real requests -------------------------------------------------------------------------------


async def _post(policy: EgressPolicy, url: str, *, proxy: str | None = None) -> int:
    async with (
        aiohttp.ClientSession(connector=policy.connector()) as http,
        http.post(url, json={"id": "evt-1"}, allow_redirects=False, proxy=proxy) as answer,
    ):
        return answer.status


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "localhost",
        "[::ffff:127.0.0.1]",
        "2130706433",
        "0x7f000001",
        "0177.0.0.1",
        "127.1",
        "017700000001",
        "127.0.0.1.",
    ],
)
async def test_every_way_to_spell_loopback_is_refused_on_a_real_request(
    sink: Recorder, host: str
) -> None:
    with pytest.raises(EgressRefused):
        await _post(EgressPolicy(), f"http://{host}:{sink.port}/hook")
    assert sink.seen == []


async def test_the_resolver_alone_refuses_a_name_that_resolves_to_loopback(
    sink: Recorder,
) -> None:
    # What a plain TCPConnector gets from resolver(): names are checked at every connection.
    connector = aiohttp.TCPConnector(resolver=EgressPolicy().resolver())
    async with aiohttp.ClientSession(connector=connector) as http:
        with pytest.raises(EgressRefused):
            await http.post(f"http://localhost:{sink.port}/hook", json={})
    assert sink.seen == []


async def test_aiohttp_never_asks_a_resolver_about_an_ip_literal(sink: Recorder) -> None:
    # Why connector() exists: the resolver alone would let http://127.0.0.1 through.
    connector = aiohttp.TCPConnector(resolver=EgressPolicy().resolver())
    async with (
        aiohttp.ClientSession(connector=connector) as http,
        http.post(sink.url(), json={}) as answer,
    ):
        assert answer.status == 204
    assert len(sink.seen) == 1


async def test_an_allowed_name_reaches_exactly_the_validated_address_keeping_its_host(
    sink: Recorder,
) -> None:
    dns = FakeDns({"partner.test": ["127.0.0.1"]})
    policy = EgressPolicy(LOOPBACK_ONLY, lookup=dns)
    assert await _post(policy, f"http://partner.test:{sink.port}/in") == 204
    assert sink.seen == [("POST", "/in", f"partner.test:{sink.port}")]
    assert dns.asked == ["partner.test"]


async def test_a_name_answering_one_blocked_address_is_never_connected(sink: Recorder) -> None:
    # 127.0.0.1 is allowed (the sink listens there); the name also answers a private address.
    dns = FakeDns({"rebind.test": ["127.0.0.1", "10.0.0.7"]})
    policy = EgressPolicy(LOOPBACK_ONLY, lookup=dns)
    with pytest.raises(EgressRefused) as caught:
        await _post(policy, f"http://rebind.test:{sink.port}/in")
    assert caught.value.rule == "resolved"
    assert sink.seen == []


async def test_an_allow_list_lets_an_internal_receiver_through(sink: Recorder) -> None:
    policy = EgressPolicy.from_settings(env={ALLOW_ENV: "127.0.0.0/8"})
    assert await _post(policy, sink.url()) == 204
    assert await _post(policy, f"http://localhost:{sink.port}/hook") == 204


async def test_a_redirect_to_loopback_is_not_followed() -> None:
    async with (
        serving(Recorder(host="127.0.0.2")) as inside,
        serving(Recorder(status=302)) as partner,
    ):
        partner.headers["Location"] = inside.url("/admin")
        policy = EgressPolicy(LOOPBACK_ONLY)  # the partner (127.0.0.1) only
        assert await _post(policy, partner.url()) == 302
        assert inside.seen == [] and len(partner.seen) == 1
        # A careless caller who follows redirects is still stopped at the blocked hop.
        async with aiohttp.ClientSession(connector=policy.connector()) as http:
            with pytest.raises(EgressRefused):
                await http.post(partner.url(), json={}, allow_redirects=True)
            partner.headers["Location"] = f"http://2130706433:{inside.port}/admin"
            with pytest.raises(EgressRefused):
                await http.get(partner.url(), allow_redirects=True)
        assert inside.seen == []


async def test_a_proxy_is_refused(sink: Recorder) -> None:
    policy = EgressPolicy(LOOPBACK_ONLY)
    with pytest.raises(EgressRefused) as caught:
        await _post(policy, sink.url(), proxy=f"http://127.0.0.1:{sink.port}")
    assert caught.value.rule == "proxy"
    assert sink.seen == []


async def test_https_only_is_enforced_on_the_request_too(sink: Recorder) -> None:
    with pytest.raises(EgressRefused) as caught:
        await _post(EgressPolicy(LOOPBACK_ONLY, https_only=True), sink.url())
    assert caught.value.rule == "https_only"


async def test_the_connector_keeps_its_own_resolver() -> None:
    with pytest.raises(TypeError):
        EgressPolicy().connector(resolver=EgressPolicy().resolver())
