"""The SSRF guard of `/autointel`, through the running bot, with `allow_private_networks: false`.

A stranger's URL must never make the bot fetch something on the host's own network. Each case
below is typed into `/autointel` by a user; a local "internal service" (an admin panel on
127.0.0.1) records every request it gets, and must get none.

* Addresses typed directly (loopback, decimal-encoded, octal/hex, IPv4-mapped IPv6, IPv6 loopback,
  link-local cloud metadata, private ranges): refused before anything starts, with an ephemeral
  error naming the reason; no workflow row, no public message left behind.
* Names that resolve to such addresses: `localhost` through the system resolver, and names given
  to an injected resolver (no DNS query leaves the machine).
* Redirects: the start URL must be allowed to be fetched at all, and every test address is a
  loopback one. So the redirecting site is made "public" by the guard's `exempt_endpoints` (exactly
  its (127.0.0.1, port) pair; the policy stays on for everything else), installed into the bot as
  its autointel workflow. Its redirects to the internal service, to metadata, to a mapped or
  decimal address or to `localhost` are refused hop by hop; the run fails and the user is told
  why. A refusal during a run is reported where the workflow's result would go, so these runs are
  `private: true` to make that report ephemeral too.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from notifier.app import NotifierBot
from notifier.config import AutointelSettings
from notifier.store import ResultQuery
from notifier.testing import DiscordEmulator, LoopbackServer, text_of, wait_until
from notifier.testing.model import Message
from notifier.testing.project_bot import project_bot
from notifier.testing.site import table_resolver
from notifier.workflows.autointel import build_autointel
from notifier.workflows.netguard import NetGuard

NO_PRIVATE = {"autointel": {"allow_private_networks": False, "connect_timeout": 5.0}}


@dataclass
class Service(LoopbackServer):
    """An aiohttp server on 127.0.0.1 recording every path; `routes` map path -> handler."""

    routes: dict[str, Callable[[web.Request], web.StreamResponse]] = field(default_factory=dict)
    hits: list[str] = field(default_factory=list)

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.hits.append(request.path)
        handler = self.routes.get(request.path)
        if handler is not None:
            return handler(request)
        return web.Response(
            text="<html><head><title>Internal admin panel</title></head><body>secret</body></html>",
            content_type="text/html",
        )


@pytest.fixture
async def internal() -> AsyncIterator[Service]:
    async with Service() as running:
        yield running


@pytest.fixture
async def bot(emulator: DiscordEmulator, tmp_path: Path) -> AsyncIterator[NotifierBot]:
    async with project_bot(emulator, tmp_path / "data", NO_PRIVATE) as running:
        assert running.settings.autointel.allow_private_networks is False
        yield running


async def refused(emulator: DiscordEmulator, url: str) -> Message:
    """/autointel with `url`; the refusal at validation (an ephemeral "❌ url: ..." and nothing
    else left in the channel)."""
    handle = await emulator.trigger_command("autointel", {"url": url, "depth": "quick"}, user="bob")
    message = await handle.wait_for_message(lambda m: "❌" in m.content, timeout_s=20)
    visible = [m for m in handle.messages if not m.deleted and m.id != message.id]
    assert visible == [], "a public 'thinking' message stayed behind"
    return message


async def failed_privately(emulator: DiscordEmulator, url: str) -> Message:
    """A private /autointel run with `url` that fails while running; its failure report."""
    handle = await emulator.trigger_command(
        "autointel", {"url": url, "depth": "quick", "private": True}, user="bob"
    )
    message = await handle.wait_for_message(
        lambda m: "/autointel failed" in text_of(m), timeout_s=20
    )
    assert all(m.ephemeral for m in handle.messages), "something about it was public"
    return message


# ---------------------------------------------------------------------------------------------
# Addresses and names typed by the user


def direct_cases(port: int) -> list[tuple[str, str]]:
    """(URL typed, words the refusal must contain)."""
    return [
        ("http://127.0.0.1/", "loopback"),
        (f"http://127.0.0.1:{port}/admin", "loopback"),
        (f"http://2130706433:{port}/", "loopback"),  # 127.0.0.1 as one decimal number
        (f"http://0x7f.1:{port}/", "loopback"),
        (f"http://0177.0.0.1:{port}/", "loopback"),
        (f"http://127.1:{port}/", "loopback"),
        (f"http://[::ffff:127.0.0.1]:{port}/", "IPv4-mapped"),
        (f"http://[::ffff:7f00:1]:{port}/", "IPv4-mapped"),
        (f"http://[::1]:{port}/", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://2852039166/latest/meta-data/", "link-local"),  # 169.254.169.254, decimal
        ("http://[fe80::1]/", "link-local"),
        ("http://10.0.0.1/", "private"),
        ("http://172.16.0.1/", "private"),
        ("http://192.168.1.1/", "private"),
        ("http://0.0.0.0/", "0.0.0.0"),
        (f"http://localhost:{port}/", "localhost"),
        (f"http://LOCALHOST.:{port}/", "localhost"),
    ]


async def test_private_loopback_link_local_mapped_and_decimal_addresses_are_refused(
    emulator: DiscordEmulator, bot: NotifierBot, internal: Service
) -> None:
    wrong: list[str] = []
    for url, words in direct_cases(internal.port):
        message = await refused(emulator, url)
        text = text_of(message)
        if not message.ephemeral:
            wrong.append(f"{url}: the refusal is public")
        if "url:" not in text or words.lower() not in text.lower():
            wrong.append(f"{url}: unclear refusal {message.content!r}")
        if "only public internet addresses" not in text and "could not be found" not in text:
            wrong.append(f"{url}: does not say why {message.content!r}")
    assert wrong == []
    assert internal.hits == []
    assert await bot.store.search(ResultQuery()) == []  # nothing started, nothing stored


FAKE_DNS = {
    "intranet.test": ["10.0.0.5"],
    "metadata.test": ["169.254.169.254"],
    "mapped.test": ["::ffff:127.0.0.1"],
    "dual.test": ["93.184.215.14", "127.0.0.1"],  # one public address is not enough
    "v6local.test": ["2606:4700::1111", "fd00::1"],
}


async def test_names_resolving_to_forbidden_addresses_are_refused(
    emulator: DiscordEmulator, bot: NotifierBot, internal: Service
) -> None:
    bot.workflows["autointel"] = build_autointel(
        bot.settings.autointel, resolver=table_resolver(FAKE_DNS)
    )
    wrong: list[str] = []
    for name, addresses in FAKE_DNS.items():
        message = await refused(emulator, f"http://{name}:{internal.port}/")
        text = text_of(message)
        forbidden = [a for a in addresses if not a.startswith(("93.", "2606:"))]
        shown = str(ipaddress.ip_address(forbidden[0]))  # ::ffff:127.0.0.1 reads ::ffff:7f00:1
        if not message.ephemeral or name not in text or shown not in text:
            wrong.append(f"{name}: {message.content!r}")
    assert wrong == []
    assert internal.hits == []


# ---------------------------------------------------------------------------------------------
# Redirects


def redirect(location: str) -> Callable[[web.Request], web.StreamResponse]:
    def answer(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(location)

    return answer


async def test_redirects_to_forbidden_addresses_are_refused_hop_by_hop(
    emulator: DiscordEmulator, bot: NotifierBot, internal: Service
) -> None:
    port = internal.port
    targets = {
        "/to-internal": (f"http://127.0.0.1:{port}/admin", "loopback"),
        "/to-decimal": (f"http://2130706433:{port}/admin", "loopback"),
        "/to-mapped": (f"http://[::ffff:127.0.0.1]:{port}/admin", "IPv4-mapped"),
        "/to-v6-loopback": (f"http://[::1]:{port}/admin", "loopback"),
        "/to-localhost": (f"http://localhost:{port}/admin", "localhost"),
        "/to-metadata": ("http://169.254.169.254/latest/meta-data/", "link-local"),
        "/to-private": ("http://192.168.0.1/router", "private"),
        "/hop": ("/to-internal", "loopback"),  # a chain: same site first, then inside
    }
    async with Service() as public:
        public.routes = {path: redirect(location) for path, (location, _) in targets.items()}
        guard = NetGuard(allow_private=False, exempt_endpoints=[("127.0.0.1", public.port)])
        bot.workflows["autointel"] = build_autointel(
            AutointelSettings(allow_private_networks=False), guard=guard
        )
        # The exempt site itself is fetched: the guard lets exactly it through.
        ok = await emulator.trigger_command(
            "autointel", {"url": public.url("/fine"), "depth": "quick"}, user="bob"
        )
        await ok.wait_for_message(lambda m: "Internal admin panel" in text_of(m), timeout_s=20)

        wrong: list[str] = []
        for path, (_, words) in targets.items():
            message = await failed_privately(emulator, public.url(path))
            text = text_of(message)
            if not message.ephemeral:
                wrong.append(f"{path}: the report is public")
            if words.lower() not in text.lower() or "only public internet" not in text:
                wrong.append(f"{path}: unclear report {text[:300]!r}")
        assert wrong == []
        assert public.hits.count("/fine") == 1
    assert internal.hits == []

    async def all_failed() -> bool:
        records = await bot.store.search(ResultQuery(limit=100))
        return len(records) == len(targets) + 1 and all(
            r.delivery_state.value == "delivered" for r in records
        )

    await wait_until(all_failed)
    statuses = sorted(r.status.value for r in await bot.store.search(ResultQuery(limit=100)))
    assert statuses == ["completed"] + ["failed"] * len(targets)
