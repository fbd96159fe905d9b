"""Where the hub may send requests: the SSRF policy for URLs that tenants and partners give
it (webhook endpoints), checked when a URL is accepted and again at every connection.

A URL is refused for its shape (:meth:`EgressPolicy.check_url`: http or https only, or https
only; no credentials; a host; no backslashes, spaces or control characters; IPv4 only in its
dotted-quad spelling - ``2130706433``, ``0x7f000001``, ``0177.0.0.1`` and ``127.1`` all mean
127.0.0.1 to ``inet_aton`` and are refused outright, as is a host name ending in a number)
and for where it leads (:meth:`EgressPolicy.allowed`). Blocked, unless an operator allows
the network: loopback, "this network" 0/8, private 10/8 172.16/12 192.168/16, CGNAT
100.64/10, link-local 169.254/16 (cloud metadata at 169.254.169.254) and fe80::/10,
unique-local fc00::/7, site-local fec0::/10, multicast, reserved 240/4, broadcast, the
documentation, benchmarking and IETF-assignment ranges, discard-only 100::/64, SRv6 5f00::/16,
Teredo 2001::/32, IPv4-compatible ::/96 and IPv4-translated ::ffff:0:0:0/96, local-use NAT64
64:ff9b:1::/48 - the explicit list below, and anything ``ipaddress`` does not call global,
whatever the Python version's list. IPv4-mapped addresses (``::ffff:127.0.0.1``) are judged as
their IPv4; 6to4 (2002::/16) and well-known NAT64 (64:ff9b::/96) as the IPv4 they embed, so
a DNS64 network still reaches public hosts. The unspecified addresses, multicast and the
limited broadcast are refused even inside an allowed network: none of them names one host
(connecting to 0.0.0.0 reaches this host's own services).

The name is resolved once per connection and EVERY address is validated: one blocked address
refuses the whole name (a name that answers both a public and an internal address is a
rebinding attempt, not a partial success), and the connection goes to exactly the addresses
validated - :meth:`EgressPolicy.resolver` hands them to aiohttp, which keeps the URL's host as
the ``Host`` header and the TLS server name. aiohttp never asks a resolver about a URL whose
host is an IP literal, so :meth:`EgressPolicy.connector` also checks each request's URL
(every hop of a redirect too, although webhook deliveries never follow one) and refuses
proxies (a proxy would resolve the name itself, beyond our checks).

Refusals are :class:`EgressRefused` (422) naming the rule; a refused resolution never says
what the name resolved to, so the hub is not a DNS oracle for the networks behind it.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_address,
    ip_network,
)
from typing import Any, TypeAlias

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.client_reqrep import ClientRequest
from aiohttp.connector import Connection
from aiohttp.tracing import Trace
from yarl import URL

from ..exceptions import ConfigError, InvalidInput

__all__ = ["ALLOW_ENV", "EgressPolicy", "EgressRefused", "Lookup"]

#: Comma-separated CIDRs every endpoint of the deployment may reach (``10.20.0.0/16,fd00::/8``).
ALLOW_ENV = "FORGELINE_EGRESS_ALLOW"

Network: TypeAlias = IPv4Network | IPv6Network
Address: TypeAlias = IPv4Address | IPv6Address
#: ``(host, port, family) -> addresses`` as text: the DNS step, replaceable in tests.
Lookup: TypeAlias = Callable[[str, int, int], Awaitable[Sequence[str]]]


class EgressRefused(InvalidInput):
    """The hub will not send a request there. ``rule`` names the rule (``syntax``,
    ``scheme``, ``https_only``, ``credentials``, ``host``, ``ip_spelling``, ``address``,
    ``resolved``, ``proxy``); the message says it in words, never what a name resolved to."""

    status = 422
    problem = "egress-refused"
    title = "Destination refused"

    def __init__(
        self, detail: str, *, rule: str = "", errors: list[dict[str, str]] | None = None
    ) -> None:
        super().__init__(detail, errors=errors)
        self.rule = rule

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_refused, (self.detail, self.rule))


def _rebuild_refused(detail: str, rule: str) -> EgressRefused:
    return EgressRefused(detail, rule=rule)


# --- address ranges -------------------------------------------------------------------------

# Most specific first, so a refusal names the narrowest range (broadcast, not "reserved").
_BLOCKED: list[tuple[Network, str]] = sorted(
    (
        (ip_network(cidr), label)
        for cidr, label in [
            ("0.0.0.0/8", "'this network' (0.0.0.0/8)"),
            ("10.0.0.0/8", "private"),
            ("100.64.0.0/10", "shared address space (CGNAT)"),
            ("127.0.0.0/8", "loopback"),
            ("169.254.0.0/16", "link-local (cloud metadata lives here)"),
            ("172.16.0.0/12", "private"),
            ("192.0.0.0/24", "IETF protocol assignments"),
            ("192.0.2.0/24", "documentation"),
            ("192.88.99.0/24", "6to4 relay anycast"),
            ("192.168.0.0/16", "private"),
            ("198.18.0.0/15", "benchmarking"),
            ("198.51.100.0/24", "documentation"),
            ("203.0.113.0/24", "documentation"),
            ("224.0.0.0/4", "multicast"),
            ("240.0.0.0/4", "reserved"),
            ("255.255.255.255/32", "broadcast"),
            ("::/128", "unspecified"),
            ("::1/128", "loopback"),
            ("::/96", "IPv4-compatible (deprecated)"),
            ("::ffff:0:0:0/96", "IPv4-translated"),
            ("64:ff9b:1::/48", "local-use NAT64"),
            ("100::/64", "discard-only"),
            ("2001::/23", "IETF protocol assignments"),
            ("2001::/32", "Teredo"),
            ("2001:db8::/32", "documentation"),
            ("3fff::/20", "documentation"),
            ("5f00::/16", "SRv6 segment identifiers"),
            ("fc00::/7", "unique-local"),
            ("fe80::/10", "link-local"),
            ("fec0::/10", "site-local (deprecated)"),
            ("ff00::/8", "multicast"),
        ]
    ),
    key=lambda item: -item[0].prefixlen,
)
_NAT64 = IPv6Network("64:ff9b::/96")
_THIS_NETWORK = IPv4Network("0.0.0.0/8")


def _never(address: Address) -> str | None:
    """Why no allow-list can make ``address`` a destination: it names no single host."""
    if address.is_unspecified or address in _THIS_NETWORK:
        return "unspecified"
    if address.is_multicast:
        return "multicast"
    if address == IPv4Address("255.255.255.255"):
        return "broadcast"
    return None


def _range(address: Address) -> str | None:
    """The blocked range ``address`` is in (None: a global unicast address)."""
    for network, label in _BLOCKED:
        if address in network:
            return label
    # The explicit list is the contract; the properties catch what a later registry adds.
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_private:
        return "private"
    if address.is_reserved:
        return "reserved"
    if not address.is_global:
        return "not globally routable"
    return None


def _embedded(address: IPv6Address) -> list[tuple[IPv4Address, str]]:
    """The IPv4 addresses an IPv6 address carries to (6to4, NAT64, Teredo)."""
    if address.sixtofour is not None:
        return [(address.sixtofour, "6to4")]
    if address in _NAT64:
        return [(IPv4Address(int(address) & 0xFFFFFFFF), "NAT64")]
    if address.teredo is not None:
        server, client = address.teredo
        return [(server, "Teredo"), (client, "Teredo")]
    return []


def _parse_address(text: str) -> Address | None:
    try:
        address = ip_address(text)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.scope_id is not None:
        # The zone says which interface, not which host: judge the address itself.
        address = IPv6Address(text.split("%", 1)[0])
    return address


# --- host spellings ---------------------------------------------------------------------------

# Labels of an IPv4 address as inet_aton reads them: decimal, 0-prefixed octal, 0x hex.
_NUMERIC_LABEL = re.compile(r"(0x[0-9a-f]*|[0-9]+)", re.IGNORECASE)
# A host name after IDNA (yarl hands us the ASCII form): letters, digits, '-' and '_'.
_NAME_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?", re.IGNORECASE)
_URL_JUNK = re.compile(r"[\x00-\x20\x7f\\]")


class EgressPolicy:
    """Which destinations outbound requests may reach: every global unicast address, plus the
    networks in ``allow`` (an operator's choice: factories do call internal systems).

    ``lookup`` replaces the system resolver (tests: a name that answers what they need)."""

    def __init__(
        self,
        allow: Sequence[IPv4Network | IPv6Network] = (),
        *,
        https_only: bool = False,
        lookup: Lookup | None = None,
    ) -> None:
        self.allow: tuple[Network, ...] = tuple(allow)
        self.https_only = https_only
        self._lookup = lookup or _system_lookup

    @classmethod
    def from_settings(
        cls,
        allow: Sequence[str] = (),
        *,
        env: Mapping[str, str] | None = None,
        https_only: bool = False,
    ) -> EgressPolicy:
        """A policy allowing the CIDRs in ``allow`` (a tenant's config) and in
        ``FORGELINE_EGRESS_ALLOW`` (the whole deployment). :class:`ConfigError` names a
        CIDR that is not one (``10.1.2.3/8`` has host bits set: a typo for 10.0.0.0/8 or for
        10.1.2.3/32, and which is not ours to guess)."""
        environ = os.environ if env is None else env
        deployment = environ.get(ALLOW_ENV, "").split(",")
        return cls(
            [*_networks(allow, "egress allow"), *_networks(deployment, ALLOW_ENV)],
            https_only=https_only,
        )

    # --- the rules ---------------------------------------------------------------------------

    def allowed(self, address: str) -> bool:
        """Whether a connection to ``address`` (an IP address as text) may be made."""
        return self._verdict(address) is None

    def _verdict(self, text: str) -> str | None:
        """Why ``text`` is not a destination (None: it is)."""
        address = _parse_address(text)
        if address is None:
            return "not an IP address"
        return self._judge(address)

    def _judge(self, address: Address) -> str | None:
        if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
            return self._judge(address.ipv4_mapped)  # a dual-stack socket's way to say IPv4
        never = _never(address)
        if never is not None:
            return never
        if any(address in network for network in self.allow):
            return None
        if isinstance(address, IPv6Address):
            for inner, via in _embedded(address):
                verdict = self._judge(inner)
                if verdict is not None:
                    return f"{verdict} (inside {via})"
            if address.sixtofour is not None or address in _NAT64:
                return None  # judged by the IPv4 it reaches
        return _range(address)

    def check_url(self, url: str) -> None:
        """Refuse a URL the hub must not call, by its text alone (no DNS): see the module
        docstring for the rules. A host given as an IP address is judged here too."""
        if _URL_JUNK.search(url):
            raise EgressRefused(
                "the URL contains spaces, control characters or backslashes", rule="syntax"
            )
        try:
            parsed = URL(url)
        except (ValueError, TypeError):
            raise EgressRefused("not a URL", rule="syntax") from None
        if parsed.scheme not in ("http", "https"):
            raise EgressRefused("only http and https URLs are called", rule="scheme")
        if self.https_only and parsed.scheme != "https":
            raise EgressRefused("only https URLs are called here", rule="https_only")
        if parsed.raw_user is not None or parsed.raw_password is not None:
            raise EgressRefused(
                "credentials do not belong in the URL (they end up in logs): use the "
                "endpoint's headers or auth",
                rule="credentials",
            )
        host = parsed.raw_host
        if not host:
            raise EgressRefused("the URL has no host", rule="host")
        try:
            port = parsed.port
        except ValueError:
            raise EgressRefused("the URL's port is not a port", rule="host") from None
        if not port:
            raise EgressRefused("the URL's port is not a port", rule="host")
        self._check_host_text(host)

    def _check_host_text(self, host: str) -> str | None:
        """Refuse a host spelled as an odd IP or an impossible name; answer the canonical IP
        text when the host is an IP address (None: a name, still to resolve)."""
        literal = _parse_address(host.replace("%25", "%"))
        if literal is not None and (":" in host or _canonical_ipv4(host)):
            verdict = self._judge(literal)
            if verdict is not None:
                raise EgressRefused(
                    f"the address is {verdict}: not allowed for outbound requests",
                    rule="address",
                )
            return str(literal)
        labels = host.removesuffix(".").split(".")
        # inet_aton reads "127.1", "2130706433", "0x7f.1" as addresses; WHATWG URL parsers
        # read any host ending in a number as one: neither is a name we would resolve.
        if _NUMERIC_LABEL.fullmatch(labels[-1]):
            raise EgressRefused(
                "an IPv4 address is written as four decimal numbers (a.b.c.d); other "
                "spellings and names ending in a number are refused",
                rule="ip_spelling",
            )
        if len(host) > 253 or not all(_NAME_LABEL.fullmatch(label) for label in labels):
            raise EgressRefused("the host is not a valid host name", rule="host")
        return None

    # --- resolution --------------------------------------------------------------------------

    async def check_host(self, host: str, port: int, *, family: int = 0) -> list[str]:
        """The addresses ``host`` (a URL's ASCII host: IDNA-encoded, IPv6 without brackets)
        resolves to, every one validated; :class:`EgressRefused` if any one is blocked
        (nothing is dropped quietly), or if ``host`` is spelled as an odd IP. A name that
        does not resolve raises the resolver's ``OSError`` (``socket.gaierror``): not a
        refusal, it may resolve later."""
        literal = self._check_host_text(host)
        if literal is not None:
            return [literal]
        addresses = list(dict.fromkeys(await self._lookup(host, port, family)))
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, "no address for the host")
        if any(self._verdict(address) is not None for address in addresses):
            raise EgressRefused(
                "the host resolves to an address outside the networks outbound requests may "
                f"reach (an operator can allow a network with {ALLOW_ENV})",
                rule="resolved",
            )
        return addresses

    def resolver(self) -> AbstractResolver:
        """An aiohttp resolver that answers only validated addresses and refuses a name with
        any blocked one. For literal-IP URLs (which aiohttp does not resolve) and redirects,
        use :meth:`connector`, which installs it and checks each request's URL too."""
        return _PolicyResolver(self)

    def connector(self, **options: Any) -> aiohttp.TCPConnector:
        """A ``TCPConnector`` (``options`` as aiohttp's, but ``resolver``) that connects only
        where this policy allows: each request's URL checked, its name resolved through
        :meth:`resolver`, no proxy. Use it with ``allow_redirects=False``: a webhook that
        redirects has failed, and is not followed."""
        if "resolver" in options:
            raise TypeError("the policy supplies the resolver")
        return _GuardedConnector(self, resolver=self.resolver(), **options)


def _networks(texts: Iterable[str], where: str) -> list[Network]:
    found: list[Network] = []
    for item in texts:
        text = item.strip()
        if not text:
            continue  # "a,b," and an unset variable: nothing more to allow
        try:
            found.append(ip_network(text, strict=True))
        except ValueError as exc:
            raise ConfigError(f"{where}: {text!r} is not a network: {exc}") from None
    return found


def _canonical_ipv4(host: str) -> bool:
    parts = host.split(".")
    return len(parts) == 4 and all(
        part.isascii() and part.isdigit() and len(part) <= 3 and (part == "0" or part[0] != "0")
        for part in parts
    )


async def _system_lookup(host: str, port: int, family: int) -> list[str]:
    # aiohttp's own flags (AI_ADDRCONFIG): the same answers it would have connected to.
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, family=family, type=socket.SOCK_STREAM, flags=socket.AI_ADDRCONFIG
    )
    return [str(sockaddr[0]) for _family, _type, _proto, _name, sockaddr in infos]


class _PolicyResolver(AbstractResolver):
    def __init__(self, policy: EgressPolicy) -> None:
        self._policy = policy

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = await self._policy.check_host(host, port, family=family)
        return [_result(host, address, port) for address in addresses]

    async def close(self) -> None:
        pass


def _result(hostname: str, address: str, port: int) -> ResolveResult:
    return ResolveResult(
        hostname=hostname,
        host=address,
        port=port,
        family=socket.AF_INET6 if ":" in address else socket.AF_INET,
        proto=0,
        flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
    )


#: URLs a connector remembers as having passed ``check_url``.
_PASSED = 1024


class _GuardedConnector(aiohttp.TCPConnector):
    def __init__(self, policy: EgressPolicy, **options: Any) -> None:
        super().__init__(**options)
        self._policy = policy
        # check_url reads the text alone, and the policy does not change: a URL that passed
        # passes again (an endpoint posts to the same URL thousands of times a second).
        self._passed: set[str] = set()

    async def connect(
        self, req: ClientRequest, traces: list[Trace], timeout: aiohttp.ClientTimeout
    ) -> Connection:
        # Called for every request and every redirect hop, before a pooled connection is
        # reused or a new one made: the one place that sees them all.
        if req.proxy is not None:
            raise EgressRefused("outbound requests do not go through a proxy here", rule="proxy")
        url = str(req.url)
        if url not in self._passed:
            self._policy.check_url(url)
            if len(self._passed) >= _PASSED:
                self._passed.clear()
            self._passed.add(url)
        return await super().connect(req, traces, timeout)
