"""Start-up failures: bot.py exits 2 with one line naming the cause, no traceback, nothing left.

Run as an operator (and systemd) would: `bot.py --config FILE` as a subprocess. Each failure comes
after the configuration parsed, when what it points at cannot be used. A process that hung on a
thread left running (the store's writer, the fanout's executor) would fail the 5 s bound: under
systemd it must fail, not hang.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from notifier.testing import DiscordEmulator
from notifier.testing.processes import CapturedProcess, child_env

ROOT = Path(__file__).resolve().parents[2]
EXIT_S = 5.0  # the bound: the process is gone within 5 s


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port something else is listening on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield int(listener.getsockname()[1])


def _strict_misspelt_plugin(tmp_path: Path, port: int) -> dict[str, Any]:
    return {
        "fanout": {"strict": True, "plugin_dirs": [str(ROOT / "plugins")]},
        "notifiers": [{"name": "ops", "plugin": "emial", "on": ["failed"], "options": {}}],
    }


def _metrics_port_taken(tmp_path: Path, port: int) -> dict[str, Any]:
    return {"metrics": {"listen": f"127.0.0.1:{port}"}}


def _storage_path_is_a_file(tmp_path: Path, port: int) -> dict[str, Any]:
    (tmp_path / "data-file").write_text("not a folder")
    return {"storage": {"path": str(tmp_path / "data-file")}}


# (what goes wrong, the config it takes, what the one line must say)
FAILURES: list[tuple[str, Callable[[Path, int], dict[str, Any]], str]] = [
    ("strict-plugin", _strict_misspelt_plugin, "emial"),
    ("metrics-port", _metrics_port_taken, "metrics.listen"),
    ("storage-file", _storage_path_is_a_file, "data-file"),
]


async def _run_bot(config: dict[str, Any], tmp_path: Path) -> CapturedProcess:
    config.setdefault("storage", {"path": str(tmp_path / "data")})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    async with CapturedProcess.running(
        sys.executable, str(ROOT / "bot.py"), "--config", str(path), env=child_env(), cwd=tmp_path
    ) as bot:
        code = await bot.finish(limit_s=EXIT_S)
        assert code == 2, bot.output()
        return bot


def _the_one_error_line(bot: CapturedProcess) -> str:
    text = bot.stderr_text() + "".join(bot.stdout)
    assert "Traceback" not in text, text
    errors = [line for line in bot.stderr_text().splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, text
    return errors[0]


@pytest.mark.parametrize(("what", "config", "cause"), FAILURES, ids=[f[0] for f in FAILURES])
async def test_a_start_up_failure_is_one_line_and_exit_2(
    tmp_path: Path,
    busy_port: int,
    what: str,
    config: Callable[[Path, int], dict[str, Any]],
    cause: str,
) -> None:
    document = {"discord": {"token": "not-a-real-token"}, **config(tmp_path, busy_port)}

    bot = await _run_bot(document, tmp_path)

    assert cause in _the_one_error_line(bot)


async def test_a_config_file_without_a_token_does_not_start_the_demo(tmp_path: Path) -> None:
    bot = await _run_bot({"discord": {"token": "${DISCORD_TOKEN:-}"}}, tmp_path)

    assert _the_one_error_line(bot) == (
        "error: discord.token is empty (set DISCORD_TOKEN), or run without --config for the demo"
    )
    assert not (tmp_path / "data").exists()


async def test_a_token_discord_refuses_is_one_line_and_exit_2(
    tmp_path: Path, emulator: DiscordEmulator
) -> None:
    document = {
        "discord": {"token": "a-token-discord-does-not-know", "api_base": emulator.api_base}
    }

    bot = await _run_bot(document, tmp_path)

    assert _the_one_error_line(bot).startswith("error: discord.token: Discord refused the token")


async def test_a_strict_start_prints_every_broken_notifier_one_line_each(tmp_path: Path) -> None:
    document = {
        "discord": {"token": "not-a-real-token"},
        "storage": {"path": str(tmp_path / "data")},
        "fanout": {"strict": True, "plugin_dirs": [str(ROOT / "plugins")]},
        "notifiers": [
            {"name": "ops", "plugin": "emial", "on": ["failed"]},
            {"name": "warn", "plugin": "timeout_warning", "on": ["failed"], "options": {}},
        ],
    }
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(document, sort_keys=False))
    lines = config.read_text().splitlines()

    async with CapturedProcess.running(
        sys.executable, str(ROOT / "bot.py"), "--config", str(config), env=child_env(), cwd=ROOT
    ) as bot:
        assert await bot.finish(limit_s=EXIT_S) == 2, bot.output()

    errors = [line for line in bot.stderr_text().splitlines() if line.startswith("error: ")]
    assert errors == [
        f"error: {config}:{lines.index('  plugin: emial') + 1}: notifiers[0].plugin: "
        "unknown plugin 'emial', did you mean 'email'?",
        f"error: {config}:{lines.index('  plugin: timeout_warning') + 2}: notifiers[1].on: "
        "plugin 'timeout_warning' does not accept failed (accepts: started)",
        f"error: {config}:{lines.index('  options: {}') + 1}: notifiers[1].options: "
        "give urls, user_ids or to_requester: true",
    ]
    assert "Traceback" not in bot.output()
