"""The SSRF guard: URL syntax, numeric host tricks, the address policy, resolution, connect time.

No test here sends a packet anywhere but 127.0.0.1: names go through an injected resolver, and
the connect-time tests either refuse before connecting or target the local test site.
"""

from __future__ import annotations

import ipaddress
import re
import socket

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from notifier.errors import NotifierError
from notifier.workflows.netguard import (
    MAX_URL_CHARS,
    AddressRefused,
    GuardedResolver,
    IPAddress,
    NetGuard,
    URLRefused,
    check_url,
    forbidden_reason,
    parse_host_address,
    parse_http_url,
)

from .conftest import Site, fake_resolver, refusing_resolver


async def refused(url: str) -> URLRefused:
    with pytest.raises(URLRefused) as caught:
        await check_url(url, allow_private=False, resolver=fake_resolver)
    return caught.value


# ---------------------------------------------------------------------------------------------
# Addresses and numeric forms


@pytest.mark.parametrize(
    ("url", "address", "why"),
    [
        ("http://127.0.0.1/", "127.0.0.1", "loopback"),
        ("http://127.255.255.254:8080/x", "127.255.255.254", "loopback"),
        ("http://[::1]/", "::1", "loopback"),
        ("http://10.1.2.3/", "10.1.2.3", "private"),
        ("http://172.16.0.1/", "172.16.0.1", "private"),
        ("http://192.168.1.1/", "192.168.1.1", "private"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254", "link-local"),
        ("http://[fe80::1]/", "fe80::1", "link-local"),
        ("http://[fe80::1%25eth0]/", "fe80::1", "link-local"),
        ("http://224.0.0.1/", "224.0.0.1", "multicast"),
        ("http://[ff02::1]/", "ff02::1", "multicast"),
        ("http://0.0.0.0/", "0.0.0.0", "unspecified"),
        ("http://[::]/", "::", "unspecified"),
        ("http://240.0.0.1/", "240.0.0.1", "reserved"),
        ("http://255.255.255.255/", "255.255.255.255", "broadcast"),
        ("http://100.64.0.1/", "100.64.0.1", "carrier-grade NAT"),
        ("http://100.127.255.254/", "100.127.255.254", "carrier-grade NAT"),
        ("http://[fd12:3456::1]/", "fd12:3456::1", "unique-local"),
        ("http://[fc00::1]/", "fc00::1", "unique-local"),
        ("http://[fec0::1]/", "fec0::1", "site-local"),
        ("http://192.0.0.8/", "192.0.0.8", "IETF"),
        ("http://198.18.0.1/", "198.18.0.1", "benchmarking"),
        ("http://[2001:db8::1]/", "2001:db8::1", "private"),
        # IPv6 forms that carry an IPv4 address are judged by what they carry.
        ("http://[::ffff:127.0.0.1]/", "127.0.0.1", "IPv4-mapped"),
        ("http://[::ffff:10.0.0.1]/", "10.0.0.1", "IPv4-mapped"),
        ("http://[::ffff:169.254.169.254]/", "169.254.169.254", "link-local"),
        ("http://[64:ff9b::a00:1]/", "10.0.0.1", "NAT64"),
        ("http://[64:ff9b::7f00:1]/", "127.0.0.1", "NAT64"),
        ("http://[2002:7f00:1::]/", "127.0.0.1", "6to4"),
        ("http://[2002:a00:1::1]/", "10.0.0.1", "6to4"),
        ("http://[64:ff9b:1::1]/", "64:ff9b:1::1", "local-use NAT64"),
        ("http://[::7f00:1]/", "::7f00:1", "reserved"),
        # Numeric tricks, read the way browsers and inet_aton read them.
        ("http://2130706433/", "127.0.0.1", "loopback"),
        ("http://0177.0.0.1/", "127.0.0.1", "loopback"),
        ("http://0x7f.1/", "127.0.0.1", "loopback"),
        ("http://0x7F000001/", "127.0.0.1", "loopback"),
        ("http://127.1/", "127.0.0.1", "loopback"),
        ("http://127.0.1/", "127.0.0.1", "loopback"),
        ("http://0x7f.0.0.1/", "127.0.0.1", "loopback"),
        ("http://017700000001/", "127.0.0.1", "loopback"),
        ("http://127.0.0.1./", "127.0.0.1", "loopback"),
        ("http://0/", "0.0.0.0", "unspecified"),
        ("http://0x/", "0.0.0.0", "unspecified"),
        ("http://167772161/", "10.0.0.1", "private"),
        ("http://0xa9.0xfe.0xa9.0xfe/", "169.254.169.254", "link-local"),
        ("http://0251.0376.0251.0376/", "169.254.169.254", "link-local"),
        ("http://169.254.43518/", "169.254.169.254", "link-local"),
        ("http://①②⑦.0.0.1/", "127.0.0.1", "loopback"),  # IDNA maps these to ASCII digits
        ("http://ＬＯＣＡＬＨＯＳＴ/", "127.0.0.1", "loopback"),  # ...and this to localhost
    ],
)
async def test_forbidden_addresses_are_refused(url: str, address: str, why: str) -> None:
    error = await refused(url)
    assert isinstance(error, AddressRefused)
    assert isinstance(error, NotifierError)
    assert error.address == str(ipaddress.ip_address(address)) or address in str(error)
    assert address in str(error)
    assert why in str(error)
    assert "only public internet addresses" in str(error)


async def test_the_error_names_the_host_as_typed() -> None:
    error = await refused("http://0x7f.1/")
    assert "0x7f.1" in str(error) and "127.0.0.1" in str(error)
    assert error.host == "0x7f.1"


@pytest.mark.parametrize(
    "url",
    [
        "http://93.184.215.14/",
        "https://93.184.215.14:8443/path?q=1",
        "http://1.1.1.1/",
        "http://[2606:4700:4700::1111]/",
        "http://[::ffff:93.184.215.14]/",  # mapped, but to a public address
        "http://[64:ff9b::5db8:d70e]/",  # NAT64 of 93.184.215.14 (IPv6-only networks)
        "http://1572394766/",  # 93.184.215.14 as one number
        "http://public.test/",
    ],
)
async def test_public_addresses_are_allowed_without_connecting(url: str) -> None:
    assert await check_url(url, allow_private=False, resolver=fake_resolver)


async def test_numeric_hosts_come_back_canonical() -> None:
    assert await check_url("http://1572394766/a", allow_private=False) == "http://93.184.215.14/a"
    assert await check_url("http://0x7f.1/", allow_private=True) == "http://127.0.0.1/"
    assert parse_http_url("http://93.184.215.14/#frag") == parse_http_url("http://93.184.215.14/")
    # Default ports are dropped, or yarl would compare the two spellings unequal.
    assert parse_http_url("http://public.test:80/") == parse_http_url("http://public.test/")
    assert parse_http_url("https://public.test:443/") == parse_http_url("https://public.test/")
    assert parse_http_url("https://public.test:80/").port == 80


@pytest.mark.parametrize(
    "host",
    ["1.2.3.4.5", "256.0.0.1", "1.256.0.1", "1.16777216", "4294967296", "08.0.0.1", "0x1g.0.0.1",
     "1..2.3", "0xfffffffff", "9" * 100],
)  # fmt: skip
def test_malformed_numeric_hosts_are_refused_not_resolved(host: str) -> None:
    with pytest.raises(URLRefused, match="not a valid IPv4 address"):
        parse_host_address(host)
    with pytest.raises(URLRefused, match="is not a valid"):
        parse_http_url(f"http://{host}/")


@pytest.mark.parametrize("host", ["example.com", "1.2.3.4.example", "0x7f.example", "a1", "x.08a"])
def test_names_are_left_to_the_resolver(host: str) -> None:
    assert parse_host_address(host) is None


@given(st.integers(min_value=0, max_value=2**32 - 1))
@settings(max_examples=300)
def test_every_numeric_spelling_means_the_same_address(number: int) -> None:
    address = ipaddress.IPv4Address(number)
    a, b, c, d = address.packed
    spellings = [
        str(address),
        str(number),
        hex(number),
        "0" + oct(number)[2:],
        f"{a}.{(b << 16) | (c << 8) | d}",
        f"{a}.{b}.{(c << 8) | d}",
        f"{hex(a)}.{oct(b).replace('0o', '0')}.{c}.{hex(d)}",
        f"{address}.",
    ]
    for spelling in spellings:
        assert parse_host_address(spelling) == address, spelling


@given(st.ip_addresses())
@settings(max_examples=300)
def test_forbidden_reason_agrees_with_is_global_for_plain_addresses(address: IPAddress) -> None:
    # Anything Python calls non-global is refused; embedded-IPv4 forms are judged separately.
    reason = forbidden_reason(address)
    if not address.is_global and not (
        isinstance(address, ipaddress.IPv6Address)
        and (address.ipv4_mapped is not None or address in ipaddress.IPv6Network("64:ff9b::/96"))
    ):
        assert reason is not None


# ---------------------------------------------------------------------------------------------
# Names and resolution


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("http://localhost/", "127.0.0.1"),
        ("http://intranet.test/", "10.0.0.5"),
        ("http://metadata.test/", "169.254.169.254"),
        ("http://dual.test/", "10.0.0.5"),  # one public and one private address: refused
        ("http://mapped.test/", "127.0.0.1"),
        ("http://v6private.test/", "fd00::1"),
    ],
)
async def test_names_resolving_to_forbidden_addresses_are_refused(url: str, address: str) -> None:
    error = await refused(url)
    assert isinstance(error, AddressRefused)
    assert error.host == url.split("/")[2]
    assert address in str(error) and error.host in str(error)


async def test_unknown_names_are_refused_clearly() -> None:
    error = await refused("http://nowhere.test/")
    assert not isinstance(error, AddressRefused)
    assert "nowhere.test could not be found" in str(error)


async def test_a_resolver_that_answers_nothing_is_refused() -> None:
    async def empty(host: str) -> list[str]:
        return []

    with pytest.raises(URLRefused, match="has no addresses"):
        await check_url("http://empty.test/", allow_private=False, resolver=empty)


async def test_allow_private_skips_the_address_policy_not_the_syntax() -> None:
    assert await check_url("http://10.0.0.1/", allow_private=True) == "http://10.0.0.1/"
    with pytest.raises(URLRefused):
        await check_url("file:///etc/passwd", allow_private=True)


async def test_exempt_endpoint_is_exact() -> None:
    guard = NetGuard(resolver=fake_resolver, exempt_endpoints=[("127.0.0.1", 8080)])
    assert str(await guard.check("http://127.0.0.1:8080/")) == "http://127.0.0.1:8080/"
    assert str(await guard.check("http://localhost:8080/")) == "http://localhost:8080/"
    with pytest.raises(AddressRefused):
        await guard.check("http://127.0.0.1:8081/")
    with pytest.raises(AddressRefused):
        await guard.check("http://127.0.0.2:8080/")


# ---------------------------------------------------------------------------------------------
# Syntax


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///etc/passwd", "only http:// and https://"),
        ("ftp://example.com/", "only http:// and https://"),
        ("javascript:alert(1)", "only http:// and https://"),
        ("gopher://example.com/", "only http:// and https://"),
        ("example.com", "must start with http:// or https://"),
        ("//example.com/", "must start with http:// or https://"),
        ("http:example.com", "has no host"),
        ("http:///path", "has no host"),
        ("http://", "has no host"),
        ("http://user:secret@example.com/", "user name or password"),
        ("http://user@example.com/", "user name or password"),
        ("http://@example.com/", "user name or password"),
        ("http://" + "a" * MAX_URL_CHARS + ".com/", "characters long"),
        ("", "empty"),
        ("   ", "empty"),
        ("http://exa mple.com/", "spaces or control characters"),
        ("http://example.com/\x00", "spaces or control characters"),
        ("http://example.com\\@evil.test/", "backslash"),
        ("http://example.com:0/", "port"),
        ("http://example.com:99999/", "not valid"),
        ("http://[1::2::3]/", "not a valid IPv6 address"),
        ("http://a..b/", "not a valid host name"),
        ("http://ex%41mple.com/", "not a valid host name"),
    ],
)
def test_bad_urls_are_refused_with_a_reason(url: str, message: str) -> None:
    with pytest.raises(URLRefused) as caught:
        parse_http_url(url)
    assert message in caught.value.reason


def test_credentials_are_never_echoed() -> None:
    with pytest.raises(URLRefused) as caught:
        parse_http_url("https://admin:hunter2-secret@example.com/")
    assert "hunter2" not in str(caught.value)


# ---------------------------------------------------------------------------------------------
# Connect time: the resolver and the socket factory


async def test_guarded_resolver_refuses_if_any_address_is_private() -> None:
    resolver = GuardedResolver(NetGuard(resolver=fake_resolver))
    with pytest.raises(AddressRefused, match=re.escape("10.0.0.5")):
        await resolver.resolve("dual.test", 80, socket.AF_UNSPEC)
    results = await resolver.resolve("public.test", 443, socket.AF_UNSPEC)
    assert [(r["host"], r["port"]) for r in results] == [("93.184.215.14", 443)]
    # Numeric names aiohttp does not recognise as IPs are parsed, never handed to getaddrinfo.
    with pytest.raises(AddressRefused, match=re.escape("127.0.0.1")):
        await resolver.resolve("0x7f.1", 80, socket.AF_UNSPEC)
    assert isinstance(AddressRefused(host="h", address="10.0.0.1", port=1, why="x"), OSError)
    await resolver.close()


def test_socket_factory_refuses_before_connecting() -> None:
    guard = NetGuard(exempt_endpoints=[("127.0.0.1", 9)])
    with pytest.raises(AddressRefused, match=re.escape("169.254.169.254")):
        guard.socket_factory((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", 80)))
    with pytest.raises(AddressRefused, match="::1"):
        guard.socket_factory((socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", 80, 0, 0)))
    sock = guard.socket_factory((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 9)))
    sock.close()


async def test_connector_refuses_ip_literals_even_without_check_url(site: Site) -> None:
    # aiohttp never asks the resolver about an IP literal; the socket factory still refuses it.
    guard = NetGuard(resolver=refusing_resolver)
    async with aiohttp.ClientSession(connector=guard.connector()) as session:
        with pytest.raises(aiohttp.ClientConnectorError) as caught:
            await session.get(site.url("/"))
    assert isinstance(caught.value.os_error, AddressRefused)
    assert site.hits == []


async def test_connector_refuses_names_resolving_privately(site: Site) -> None:
    guard = NetGuard(resolver=fake_resolver)
    async with aiohttp.ClientSession(connector=guard.connector()) as session:
        with pytest.raises(aiohttp.ClientConnectorError) as caught:
            await session.get(f"http://localhost:{site.port}/")
    assert isinstance(caught.value.os_error, AddressRefused)
    assert site.hits == []


async def test_connector_with_exemption_reaches_the_site(site: Site) -> None:
    guard = NetGuard(resolver=fake_resolver, exempt_endpoints=[("127.0.0.1", site.port)])
    async with (
        aiohttp.ClientSession(connector=guard.connector()) as session,
        session.get(f"http://localhost:{site.port}/about") as response,
    ):
        assert response.status == 200
    assert site.hits == ["/about"]
