"""SSRF guard: the bot fetches URLs that strangers type, so it must never become their proxy into
the host's own network (cloud metadata at 169.254.169.254, an admin panel on 127.0.0.1, the LAN).

Three layers, because each one alone has a gap:

1. `NetGuard.check` / `check_url` judges a URL *before* any request: scheme, credentials, length,
   host syntax, and the address the host means. Numeric hosts are read the way browsers and the C
   resolver read them (`2130706433`, `0177.0.0.1`, `0x7f.1`, `127.1` are all 127.0.0.1), and a
   name is resolved and refused if ANY of its addresses is not public. Callers that follow
   redirects must call it again for every hop (the autointel workflow follows them by hand).
2. `GuardedResolver` is the aiohttp resolver of the guarded connector: the addresses a connection
   actually uses are judged at connect time, which closes the DNS-rebinding gap (a name that
   resolved to a public address for the check and to 10.0.0.1 a moment later).
3. `NetGuard.socket_factory` judges the socket address right before `connect()`. aiohttp skips
   the resolver for IP literals, so this is the one place that sees every address, whatever path
   it came by.

Host names are looked up with getaddrinfo in this module's own small thread pool (DNS_THREADS),
never the event loop's default executor: page work must not be able to queue lookups behind it,
and a slow resolver holds at most DNS_THREADS threads (a thread blocked in getaddrinfo cannot be
cancelled; `resolve_timeout_s` bounds the wait, not the thread).

`allow_private=True` turns the address policy off (tests use it to reach their 127.0.0.1 site);
the syntax rules still apply. `exempt_endpoints` lets exactly one (address, port) through while
the policy stays on, so redirect handling can be tested against a loopback site without ever
connecting anywhere else.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
from aiohappyeyeballs import AddrInfoType
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from ..errors import NotifierError

__all__ = [
    "DNS_THREADS",
    "MAX_URL_CHARS",
    "AddressRefused",
    "GuardedResolver",
    "IPAddress",
    "NetGuard",
    "Resolver",
    "URLRefused",
    "check_url",
    "forbidden_reason",
    "parse_host_address",
    "parse_http_url",
]

type IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: Resolves a host name to its addresses as text. Raises OSError when the name does not resolve.
type Resolver = Callable[[str], Awaitable[list[str]]]

MAX_URL_CHARS: Final = 2048
DEFAULT_RESOLVE_TIMEOUT_S: Final = 10.0
#: Threads for getaddrinfo, shared by every guard in the process (bounded; see the docstring).
DNS_THREADS: Final = 4

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_ALLOWED_SCHEMES: Final = frozenset(_DEFAULT_PORTS)
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
# Whitespace and control characters: browsers strip or reject them in odd ways, so refuse them.
_UNSAFE_CHARS = re.compile(r"[\x00-\x20\x7f-\x9f\s]")
# A host name after IDNA encoding (yarl lowercases and punycodes it): LDH labels, underscores
# tolerated (they exist in the wild), one optional trailing dot, no empty labels.
_HOST_NAME = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*\.?")
# The WHATWG "ends in a number" rule: a host whose last label is numeric is an IPv4 address or
# invalid, never a DNS name.
_NUMERIC_LABEL = re.compile(r"[0-9]+|0[xX][0-9a-fA-F]*")

_CGNAT: Final = ipaddress.IPv4Network("100.64.0.0/10")
_UNIQUE_LOCAL: Final = ipaddress.IPv6Network("fc00::/7")
_NAT64_WELL_KNOWN: Final = ipaddress.IPv6Network("64:ff9b::/96")
_SIX_TO_FOUR: Final = ipaddress.IPv6Network("2002::/16")
# Ranges Python 3.12's ipaddress calls global although they must never be fetched, and a few it
# lumps under "private" that deserve a more precise reason.
_EXTRA_BLOCKED: Final[tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...]] = (
    (ipaddress.IPv4Network("0.0.0.0/8"), "a 'this network' (0.0.0.0/8) address"),
    (ipaddress.IPv4Network("255.255.255.255/32"), "the broadcast address"),
    (ipaddress.IPv4Network("192.0.0.0/24"), "an IETF protocol-assignment address"),
    (ipaddress.IPv4Network("192.88.99.0/24"), "a 6to4 relay anycast address"),
    (ipaddress.IPv4Network("198.18.0.0/15"), "a benchmarking address"),
    (ipaddress.IPv6Network("fec0::/10"), "an IPv6 site-local address"),
    (ipaddress.IPv6Network("64:ff9b:1::/48"), "a local-use NAT64 address"),
    (ipaddress.IPv6Network("100::/64"), "an IPv6 discard-only address"),
)


class URLRefused(NotifierError, ValueError):
    """The guard will not fetch this URL. `reason` is one sentence safe to show the user who typed
    the URL (it never repeats credentials); `host` names the host when one was found."""

    def __init__(self, reason: str, *, host: str | None = None) -> None:
        self.reason = reason
        self.host = host
        super().__init__(reason)


class AddressRefused(URLRefused, OSError):
    """The host is, or resolves to, an address outside the public internet.

    Also an OSError so that, raised inside aiohttp's resolver or socket factory, it surfaces as the
    `os_error` of a `ClientConnectorError` instead of an unexpected exception type.
    """

    def __init__(self, *, host: str, address: str, port: int | None, why: str) -> None:
        self.address = address
        self.port = port
        self.why = why
        if _same_address(host, address):
            message = f"the address {address} is {why}"
        else:
            message = f"the host {host} is the address {address}, {why}"
        super().__init__(f"{message}; only public internet addresses may be fetched", host=host)


def _same_address(host: str, address: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0]) == ipaddress.ip_address(
            address
        )
    except ValueError:
        return False


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------------------------------
# Syntax


def parse_http_url(raw: object) -> URL:
    """Parse an http(s) URL a user typed, or raise URLRefused saying what is wrong with it.

    Refuses what a fetcher must not be handed: other schemes (file:, ftp:, javascript:), a user
    name or password (they would be sent to the server and stored in results), no host, port 0,
    backslashes (browsers read them as slashes, parsers disagree), whitespace or control
    characters, more than MAX_URL_CHARS characters, and malformed numeric hosts. A numeric IPv4
    host comes back as its canonical dotted quad. Does no I/O.
    """
    return _parse_http_url(raw)[0]


def _parse_http_url(raw: object) -> tuple[URL, str]:
    """parse_http_url, plus the host as written (before numeric canonicalisation), which error
    messages name so the user recognises it."""
    if not isinstance(raw, str):
        raise URLRefused("the URL must be text")
    text = raw.strip()
    if not text:
        raise URLRefused("the URL is empty")
    if len(text) > MAX_URL_CHARS:
        raise URLRefused(f"the URL is {len(text)} characters long; the limit is {MAX_URL_CHARS}")
    if _UNSAFE_CHARS.search(text):
        raise URLRefused("the URL contains spaces or control characters")
    if "\\" in text:
        raise URLRefused("the URL contains a backslash")
    scheme_match = _SCHEME.match(text)
    if scheme_match is None:
        raise URLRefused("the URL must start with http:// or https://")
    scheme = scheme_match.group(1).lower()
    if scheme not in _ALLOWED_SCHEMES:
        raise URLRefused(
            f"only http:// and https:// URLs can be fetched, not {_short(scheme, 20)}:"
        )
    rest = text[scheme_match.end() :]
    if not rest.startswith("//"):
        raise URLRefused("the URL has no host (expected http://host/...)")
    authority = re.split(r"[/?#]", rest[2:], maxsplit=1)[0]
    if "@" in authority:
        raise URLRefused("the URL must not contain a user name or password")
    try:
        url = URL(text)
        host = url.raw_host
        port = url.port
    except (ValueError, TypeError) as exc:  # UnicodeError (bad IDNA) is a ValueError
        raise URLRefused(f"the URL is not valid ({_short(str(exc))})") from None
    if not host:
        raise URLRefused("the URL has no host (expected http://host/...)")
    if port is None or not 0 < port < 65536:
        raise URLRefused(f"the port of {_short(host)} is not valid", host=host)
    if ":" in host:
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            raise URLRefused(f"the host [{_short(host)}] is not a valid IPv6 address") from None
    elif not _HOST_NAME.fullmatch(host):
        raise URLRefused(f"the host {_short(host)!r} is not a valid host name", host=host)
    else:
        # Numeric hosts become the canonical dotted quad, so what is fetched is what was judged
        # (aiohttp refuses the legacy forms outright). Raises for a malformed numeric host.
        address = parse_host_address(host)
        if address is not None and host != str(address):
            url = url.with_host(str(address))
    if url.explicit_port is not None and url.explicit_port == _DEFAULT_PORTS[url.scheme]:
        url = url.with_port(None)  # yarl compares http://h:80/ unequal to http://h/
    return url.with_fragment(None), host


def _parse_ipv4_number(part: str) -> int | None:
    if len(part) > 40:  # far beyond 2**32 in any base; also keeps int() off huge digit strings
        return None
    if part[:2] in ("0x", "0X"):
        digits = part[2:]
        if not digits:
            return 0
        return int(digits, 16) if re.fullmatch(r"[0-9a-fA-F]+", digits) else None
    if len(part) > 1 and part.startswith("0"):
        return int(part[1:], 8) if re.fullmatch(r"[0-7]+", part[1:]) else None
    return int(part) if re.fullmatch(r"[0-9]+", part) else None


def parse_host_address(host: str) -> IPAddress | None:
    """The address a URL host denotes if it is numeric, else None (it is a name to resolve).

    IPv4 follows the WHATWG URL host parser, which matches what glibc's inet_aton accepts: one to
    four parts, each decimal, octal (leading 0) or hex (0x), the last filling the remaining bytes,
    so `2130706433`, `0177.0.0.1`, `0x7f.1` and `127.1` all mean 127.0.0.1. A host whose last
    label is numeric but that does not parse is refused (URLRefused) rather than handed to DNS,
    because resolvers disagree about such strings.
    """
    text = host.strip("[]")
    if ":" in text:
        try:
            return ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError:
            raise URLRefused(f"the host [{_short(text)}] is not a valid IPv6 address") from None
    parts = text.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()
    if not parts or not _NUMERIC_LABEL.fullmatch(parts[-1]):
        return None
    malformed = URLRefused(f"the host {_short(host)!r} is not a valid IPv4 address", host=host)
    if len(parts) > 4 or any(part == "" for part in parts):
        raise malformed
    numbers = [_parse_ipv4_number(part) for part in parts]
    values = [n for n in numbers if n is not None]
    if len(values) != len(parts):
        raise malformed
    *head, last = values
    if any(value > 255 for value in head) or last >= 256 ** (5 - len(values)):
        raise malformed
    address = last
    for index, value in enumerate(head):
        address += value << (8 * (3 - index))
    return ipaddress.IPv4Address(address)


# ---------------------------------------------------------------------------------------------
# Address policy


def _embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, str] | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped, "an IPv4-mapped"
    if address in _NAT64_WELL_KNOWN:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF), "a NAT64"
    if address in _SIX_TO_FOUR and address.sixtofour is not None:
        return address.sixtofour, "a 6to4"
    return None


def forbidden_reason(address: IPAddress) -> str | None:
    """Why `address` must not be fetched (a noun phrase: "a loopback address"), or None if it is a
    public internet address. IPv6 forms that embed an IPv4 address (::ffff:a.b.c.d, NAT64
    64:ff9b::/96, 6to4 2002::/16) are judged by the address they carry, since that is where the
    packets end up."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            inner, kind = embedded
            reason = forbidden_reason(inner)
            if reason is not None:
                return f"{kind} IPv6 form of {inner}, {reason}"
            if kind != "a 6to4":
                return None
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address (this range holds cloud metadata services)"
    if address.is_multicast:
        return "a multicast address"
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return "a carrier-grade NAT (100.64.0.0/10) address"
    if isinstance(address, ipaddress.IPv6Address) and address in _UNIQUE_LOCAL:
        return "an IPv6 unique-local address"
    for network, reason in _EXTRA_BLOCKED:
        if address.version == network.version and address in network:
            return reason
    if address.is_reserved:
        return "a reserved address"
    if address.is_private:
        return "a private-network address"
    if not address.is_global:
        return "not a public internet address"
    return None


# ---------------------------------------------------------------------------------------------
# The guard


_dns_pool: ThreadPoolExecutor | None = None


def _dns_executor() -> ThreadPoolExecutor:
    global _dns_pool
    if _dns_pool is None:
        _dns_pool = ThreadPoolExecutor(max_workers=DNS_THREADS, thread_name_prefix="netguard-dns")
    return _dns_pool


async def _system_resolve(host: str) -> list[str]:
    """Every address getaddrinfo gives for `host` (all families, no AI_ADDRCONFIG filtering), so
    the check sees the addresses a later connection could pick. Runs in the DNS pool."""
    lookup = functools.partial(socket.getaddrinfo, host, None, type=socket.SOCK_STREAM)
    infos = await asyncio.get_running_loop().run_in_executor(_dns_executor(), lookup)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _address_of(text: str) -> IPAddress:
    return ipaddress.ip_address(text.split("%", 1)[0])


@dataclass(frozen=True, slots=True)
class NetGuard:
    """The policy one workflow run fetches under; cheap to build, holds no connections.

    `resolver` replaces getaddrinfo (tests inject one so no name is ever looked up for real);
    `exempt_endpoints` are (address, port) pairs allowed even when the address is private.
    """

    allow_private: bool = False
    resolver: Resolver | None = None
    exempt_endpoints: Collection[tuple[str, int]] = ()
    resolve_timeout_s: float = DEFAULT_RESOLVE_TIMEOUT_S
    _exempt: frozenset[tuple[IPAddress, int]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        exempt = frozenset((_address_of(host), int(port)) for host, port in self.exempt_endpoints)
        object.__setattr__(self, "_exempt", exempt)

    def judge(self, host: str, address: IPAddress, port: int | None) -> None:
        """Raise AddressRefused unless the policy lets a connection to `address` through."""
        if self.allow_private or (port is not None and (address, port) in self._exempt):
            return
        why = forbidden_reason(address)
        if why is not None:
            raise AddressRefused(host=host, address=str(address), port=port, why=why)

    async def resolve(self, host: str) -> list[IPAddress]:
        """All addresses of `host` through the configured resolver, or URLRefused when the name
        does not resolve (in time)."""
        lookup = self.resolver if self.resolver is not None else _system_resolve
        try:
            async with asyncio.timeout(self.resolve_timeout_s):
                texts = await lookup(host)
        except TimeoutError:
            raise URLRefused(f"looking up the host {host} timed out", host=host) from None
        except OSError:
            raise URLRefused(f"the host {host} could not be found", host=host) from None
        try:
            addresses = [_address_of(text) for text in texts]
        except ValueError:
            raise URLRefused(
                f"the host {host} resolved to something that is not an address", host=host
            ) from None
        if not addresses:
            raise URLRefused(f"the host {host} has no addresses", host=host)
        return addresses

    async def check(self, url: str | URL) -> URL:
        """Parse `url` and judge the address(es) its host means; return it (fragment dropped).

        Raises URLRefused (AddressRefused for a forbidden address) with a reason fit for users.
        A name is refused if ANY of its addresses is forbidden: a connection may pick any of them.
        """
        parsed, host = _parse_http_url(url if isinstance(url, str) else str(url))
        if self.allow_private:
            return parsed
        port = parsed.port
        literal = parse_host_address(host)
        addresses = [literal] if literal is not None else await self.resolve(host)
        for address in addresses:
            self.judge(host, address, port)
        return parsed

    def socket_factory(self, addr_info: AddrInfoType) -> socket.socket:
        """aiohttp's socket factory: the last check before connect(), and the only one that sees
        IP-literal hosts (aiohttp does not resolve those)."""
        family, type_, proto, _, sockaddr = addr_info
        self.judge(str(sockaddr[0]), _address_of(str(sockaddr[0])), int(sockaddr[1]))
        return socket.socket(family=family, type=type_, proto=proto)

    def connector(self, **kwargs: Any) -> aiohttp.TCPConnector:
        """A TCPConnector that enforces this policy at connect time. Call inside a running loop;
        the session that owns it closes it."""
        return aiohttp.TCPConnector(
            resolver=GuardedResolver(self), socket_factory=self.socket_factory, **kwargs
        )


class GuardedResolver(AbstractResolver):
    """aiohttp resolver that judges every address it hands to the connector.

    Numeric hosts that reach it (`0x7f.1` is not an "IP address" to aiohttp) are parsed here
    instead of being passed to getaddrinfo, so the address judged is the address used. Names go
    through the guard's resolver (the injected one, or getaddrinfo in the DNS pool).
    """

    def __init__(self, guard: NetGuard) -> None:
        self._guard = guard

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        literal = parse_host_address(host)
        if literal is not None:
            self._guard.judge(host, literal, port)
            return [_result(host, literal, port)]
        addresses = await self._guard.resolve(host)
        results = [
            _result(host, address, port)
            for address in addresses
            if family in (socket.AF_UNSPEC, _family(address))
        ]
        if not results:
            raise OSError(f"the host {host} has no address of the requested family")
        for result in results:
            self._guard.judge(host, _address_of(result["host"]), port)
        return results

    async def close(self) -> None:
        """Nothing to release: the DNS pool is the process's."""


def _family(address: IPAddress) -> socket.AddressFamily:
    return socket.AF_INET if address.version == 4 else socket.AF_INET6


def _result(host: str, address: IPAddress, port: int) -> ResolveResult:
    return {
        "hostname": host,
        "host": str(address),
        "port": port,
        "family": _family(address),
        "proto": 0,
        "flags": socket.AI_NUMERICHOST,
    }


async def check_url(
    url: str,
    *,
    allow_private: bool,
    resolver: Resolver | None = None,
    exempt_endpoints: Collection[tuple[str, int]] = (),
) -> str:
    """Judge `url` as `NetGuard.check` does; return it normalised, or raise URLRefused."""
    guard = NetGuard(
        allow_private=allow_private, resolver=resolver, exempt_endpoints=exempt_endpoints
    )
    return str(await guard.check(url))
