"""README "Running against Discord" and "Operating it", with the bot as a real process.

`DISCORD_TOKEN=... scripts/run-bot --config config.yaml` runs against an emulator on this test's
event loop, reached through `DISCORD_API_BASE` exactly as the README says a proxy is. The config is
the project's own config.yaml with two lines changed: `storage.path` (a temporary folder, so tests
never write into ./data) and `metrics.listen` (a free port, to scrape the README's metrics).
"""

from __future__ import annotations

import re
import shlex
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import nextcord
from prometheus_client.metrics import MetricWrapperBase

from notifier import metrics
from notifier.app import NotifierBot
from notifier.config import Settings
from notifier.testing import ApplicationCommand, CapturedProcess, DiscordEmulator, free_port

from .readme import ROOT, block, section
from .support import script_env

RUN_BOT = ROOT / "scripts" / "run-bot"


def readme_token_command() -> list[str]:
    """`DISCORD_TOKEN=... scripts/run-bot --config config.yaml`, as argv after the variable."""
    command = block("sh", "DISCORD_TOKEN=").text.strip()
    words = shlex.split(command)
    assert words[0] == "DISCORD_TOKEN=..."
    assert words[1:] == ["scripts/run-bot", "--config", "config.yaml"]
    return words[1:]


def write_config(
    tmp_path: Path, *, metrics_port: int | None = None, operators: Sequence[int] = ()
) -> Path:
    text = (ROOT / "config.yaml").read_text(encoding="utf-8")
    replacements = {"  path: ./data\n": f"  path: {tmp_path / 'data'}\n"}
    if metrics_port is not None:
        replacements["  listen:\n"] = f"  listen: 127.0.0.1:{metrics_port}\n"
    if operators:
        replacements["  operator_user_ids: []\n"] = f"  operator_user_ids: {list(operators)}\n"
    for old, new in replacements.items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def readme_metrics() -> dict[str, tuple[str, ...]]:
    """`name{label,label}` of every metric the README's Metrics bullet lists."""
    text = section("Operating it")
    bullet = text[text.index("**Metrics**") : text.index("- **CLI**")]
    found = re.findall(r"`([a-z_]+)(?:\{([a-z_,]+)\})?`", bullet)
    return {name: tuple(labels.split(",")) if labels else () for name, labels in found}


def code_metrics() -> dict[str, tuple[str, ...]]:
    """The same, from the metric objects in notifier.metrics (counters are exposed as _total)."""
    found: dict[str, tuple[str, ...]] = {}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            name = value._name + ("_total" if value._type == "counter" else "")
            found[name] = tuple(value._labelnames)
    return found


def test_the_readme_lists_every_metric_with_its_labels() -> None:
    assert readme_metrics() == code_metrics()


async def test_run_bot_with_a_token_connects_serves_metrics_and_stops_on_sigterm(
    emulator: DiscordEmulator, tmp_path: Path
) -> None:
    argv = readme_token_command()
    port = free_port()
    config = write_config(tmp_path, metrics_port=port)
    env = script_env(DISCORD_TOKEN=emulator.bot_token, DISCORD_API_BASE=emulator.api_base)
    argv[argv.index("config.yaml")] = str(config)
    async with CapturedProcess.running(str(ROOT / argv[0]), *argv[1:], env=env, cwd=ROOT) as bot:
        await bot.wait_until(lambda: emulator.ready_count >= 1, what="the bot's READY")
        await emulator.wait_for_commands("autointel", "retrieve_results", "notifier", timeout_s=30)
        await bot.wait_until(lambda: bot.stderr_has("ready as "), what="the 'ready' log line")
        # The emulator saw the token from the environment, never an unauthenticated bot call.
        assert {r.auth for r in emulator.requests} <= {"bot", "none"}
        assert not [r for r in emulator.requests if r.auth == "none" and r.route != "/gateway"]

        url = f"http://127.0.0.1:{port}/metrics"
        async with aiohttp.ClientSession() as http, http.get(url) as response:
            assert response.status == 200
            exposition = await response.text()
        for name in readme_metrics():
            family = re.escape(name.removesuffix("_total"))
            assert re.search(rf"^# TYPE {family}(_total)? ", exposition, re.M), name

        bot.send(signal.SIGTERM)
        assert await bot.finish() == 0
    assert bot.stderr_has("signal received: shutting down gracefully")
    assert "Traceback" not in bot.output()
    assert emulator.bot_token not in bot.output()  # the redactor masks it


async def test_sighup_reloads_the_config_and_an_invalid_edit_is_rejected(
    emulator: DiscordEmulator, tmp_path: Path
) -> None:
    config = write_config(tmp_path, operators=[emulator.users["carol"].id])
    original = config.read_text(encoding="utf-8")
    env = script_env(DISCORD_TOKEN=emulator.bot_token, DISCORD_API_BASE=emulator.api_base)
    async with CapturedProcess.running(
        str(RUN_BOT), "--config", str(config), env=env, cwd=ROOT
    ) as bot:
        await bot.wait_until(lambda: bot.stderr_has("ready as "), what="the 'ready' log line")
        await emulator.wait_for_commands("notifier", timeout_s=30)

        notifier = (
            "notifiers:\n"
            "  - name: requester-dm\n"
            "    plugin: dm\n"
            "    on: [persisted]\n"
            "    options: {to_requester: true}\n"
        )
        assert original.count("notifiers: []\n") == 1
        config.write_text(original.replace("notifiers: []\n", notifier), encoding="utf-8")
        bot.send(signal.SIGHUP)  # README: `kill -HUP <pid>`
        await bot.wait_until(
            lambda: bot.stderr_has("notifiers reloaded: requester-dm"), what="reload"
        )
        assert bot.stderr_has(f"configuration reloaded from {config}")

        config.write_text(
            original.replace("notifiers: []\n", notifier.replace("[persisted]", "[complete]")),
            encoding="utf-8",
        )
        bot.send(signal.SIGHUP)
        await bot.wait_until(lambda: bot.stderr_has("reload rejected"), what="the rejection")
        (line,) = [line for line in bot.stderr if "reload rejected" in line]
        on_line = config.read_text(encoding="utf-8").splitlines().index("    on: [complete]") + 1
        assert f"{config}:{on_line}: notifiers[0].on: unknown event 'complete'" in line
        assert "the running configuration stays" in line
        assert bot.process.returncode is None

        # README: `/notifier reload` does the same for the bot's operators (carol is one).
        config.write_text(original, encoding="utf-8")
        refused = await emulator.trigger_command("notifier", subcommand="reload", user="bob")
        refusal = (await refused.wait_for_message(timeout_s=15)).content
        assert "Only the bot's operators" in refusal
        done = await emulator.trigger_command("notifier", subcommand="reload", user="carol")
        answer = await done.wait_for_message(lambda m: "Reloaded" in m.content, timeout_s=15)
        assert answer.ephemeral
        assert "Notifiers: none" in answer.content

        bot.send(signal.SIGTERM)
        assert await bot.finish() == 0
    assert "Traceback" not in bot.output()


async def test_a_bad_config_prints_one_line_naming_the_field_and_exits_2(
    tmp_path: Path,
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "notifiers:\n"
        + "".join(
            f"  - {{name: n{i}, plugin: dm, on: [{event}]}}\n"
            for i, event in enumerate(["completed", "failed", "complete"])
        ),
        encoding="utf-8",
    )
    async with CapturedProcess.running(
        str(RUN_BOT), "--config", str(config), env=script_env(), cwd=ROOT
    ) as bot:
        assert await bot.finish() == 2
    lines = [line for line in bot.stderr if line.strip()]
    assert len(lines) == 1, bot.output()
    # README: `config.yaml:4: notifiers[2].on: unknown event 'complete'`
    assert lines[0].startswith(f"error: {config}:4: notifiers[2].on: unknown event 'complete'")
    assert "Traceback" not in bot.output()


def _usages(command: ApplicationCommand) -> list[str]:
    """`/name opt [optional]` as the README writes it; subcommands sharing their options as
    `a|b` with them, otherwise one form per subcommand (`/name group sub ...` in a group)."""

    def options(items: list[dict[str, Any]]) -> list[str]:
        return [o["name"] if o.get("required") else f"[{o['name']}]" for o in items]

    subcommands = [o for o in command.options if o.get("type") in (1, 2)]
    if not subcommands:
        return [" ".join([f"/{command.name}", *options(command.options)])]
    shared = {tuple(options(s.get("options") or [])) for s in subcommands}
    if len(shared) == 1 and all(s.get("type") == 1 for s in subcommands):
        names = "|".join(s["name"] for s in subcommands)
        return [" ".join([f"/{command.name}", names, *next(iter(shared))])]
    forms: list[str] = []
    for sub in subcommands:
        leaves = sub.get("options") or [] if sub.get("type") == 2 else [sub]
        prefix = f"/{command.name} {sub['name']}" if sub.get("type") == 2 else f"/{command.name}"
        forms += [
            " ".join([f"{prefix} {leaf['name']}", *options(leaf.get("options") or [])])
            for leaf in leaves
        ]
    return forms


async def test_the_commands_the_readme_lists_are_the_registered_ones(
    emulator: DiscordEmulator, bot: NotifierBot
) -> None:
    text = " ".join(section("Running against Discord").split())
    listed = re.findall(r"`(/[a-z_]+[^`]*)`", text[text.index("Commands:") :])
    assert sorted(listed) == sorted(form for c in emulator.commands for form in _usages(c))


async def test_the_invite_permissions_and_the_intents_are_what_the_readme_says() -> None:
    text = " ".join(section("Running against Discord").split())
    named = re.findall(r"\*([A-Z][A-Za-z ]+)\*", text)
    flags = {  # Discord's names in the developer portal -> nextcord's
        "View Channels": "view_channel",
        "Send Messages": "send_messages",
        "Embed Links": "embed_links",
        "Attach Files": "attach_files",
    }
    assert named == list(flags)
    value = nextcord.Permissions(**dict.fromkeys(flags.values(), True)).value
    assert f"(permissions integer `{value}`)" in text
    assert "scopes `bot` and `applications.commands`" in text
    bot = NotifierBot(Settings())
    try:
        assert bot.intents == nextcord.Intents(guilds=True)  # "only the `guilds` intent"
        assert not (bot.intents.members or bot.intents.presences or bot.intents.message_content)
    finally:
        await bot.close()
