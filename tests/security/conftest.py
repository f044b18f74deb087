"""The security suite's fixtures: production logging captured, and a secret scan after every test.

`production_logs` (autouse) configures logging exactly as bot.py does (`setup_logging`: the loguru
format, the redactor as patcher, stdlib logging of nextcord/aiohttp/Apprise routed into loguru),
with the sink being a list instead of stderr, and puts the previous configuration back afterwards.
Every line a test makes is therefore the line an operator's log would hold, tracebacks included.

`secrets` (autouse) is the suite-wide scan: a test registers what must never be seen
(`secrets.add(...)`, plus every test's emulator bot token automatically) and extra places to look
(`secrets.look_in(name, text)`); after the test, every captured log line and every version of
every message the emulator holds (content, embeds, attachments) is searched for each secret.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from notifier.testing import DiscordEmulator, every_message, message_texts
from notifier.testing.logs import CapturedLogs
from notifier.testing.logs import production_logs as captured_production_logs


@pytest.fixture(autouse=True)
def production_logs() -> Iterator[CapturedLogs]:
    with captured_production_logs() as captured:
        yield captured


@dataclass
class SecretScan:
    secrets: set[str] = field(default_factory=set)
    places: list[tuple[str, str]] = field(default_factory=list)

    def add(self, *values: str) -> None:
        self.secrets.update(v for v in values if v)

    def look_in(self, name: str, text: str) -> None:
        self.places.append((name, text))

    def leaks(
        self, logs: CapturedLogs, emulator: DiscordEmulator | None
    ) -> list[tuple[str, str, str]]:
        """(secret, where, excerpt) for every sighting."""
        places = [("log", line) for line in logs.lines] + list(self.places)
        if emulator is not None:
            for message in every_message(emulator):
                places += [(f"discord message {message.id}", t) for t in message_texts(message)]
            for request in emulator.requests:  # error bodies the emulator answered users with
                places.append((f"emulator answer {request.path}", json.dumps(request.response)))
        found = []
        for secret in sorted(self.secrets):
            for where, text in places:
                at = text.find(secret)
                if at >= 0:
                    found.append((secret[:6] + "…", where, text[max(0, at - 80) : at + 40]))
        return found


@pytest.fixture(autouse=True)
def secrets(request: pytest.FixtureRequest, production_logs: CapturedLogs) -> Iterator[SecretScan]:
    scan = SecretScan()
    emulator: DiscordEmulator | None = None
    if "discord_emulator" in request.fixturenames:
        # Set up here, so it is torn down after this scan (and the bot, set up later, before it).
        emulator = request.getfixturevalue("discord_emulator")
        scan.add(emulator.bot_token)
    yield scan
    leaks = scan.leaks(production_logs, emulator)
    assert leaks == [], f"secrets seen: {leaks[:5]}"
