"""`/notifier reload` says what the reload did, in the words of a start (issue 16): a file the
bot refuses comes back with every mistake, one line each with its file and line; a broken
notifier left out under `fanout.strict: false` is named, with why, as the start would name it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from notifier.config import load_config
from notifier.testing import DiscordEmulator, HttpSink
from notifier.testing.project_bot import PROJECT_ROOT, running_bot


def write_config(
    path: Path, emulator: DiscordEmulator, notifiers: list[dict[str, Any]], *, strict: bool
) -> Path:
    document = {
        "discord": {
            "token": emulator.bot_token,
            "api_base": emulator.api_base,
            "interaction_ttl": emulator.config.interaction_ttl_s,
            "handoff_before": emulator.config.interaction_ttl_s * 0.3,
            "safety_margin": emulator.config.interaction_ttl_s * 0.1,
            "operator_user_ids": [emulator.users["carol"].id],
        },
        "storage": {"path": "data"},
        "fanout": {"strict": strict, "plugin_dirs": [str(PROJECT_ROOT / "plugins")]},
        "notifiers": notifiers,
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


async def reload_reply(emulator: DiscordEmulator) -> str:
    handle = await emulator.trigger_command("notifier", subcommand="reload", user="carol")
    message = await handle.wait_for_message(lambda m: "eload" in m.content, timeout_s=15)
    assert message.ephemeral
    return str(message.content)


async def test_the_reload_reply_names_what_was_left_out_and_every_mistake_of_a_refused_file(
    emulator: DiscordEmulator, tmp_path: Path
) -> None:
    async with HttpSink() as sink:
        ops = {
            "name": "ops",
            "plugin": "apprise",
            "on": ["completed"],
            "options": {"urls": [sink.json_url()]},
        }
        phone = {"name": "phone", "plugin": "emial", "on": ["failed"], "options": {}}
        config = write_config(tmp_path / "config.yaml", emulator, [ops], strict=False)
        async with running_bot(emulator, load_config(config), config_path=config) as bot:
            await emulator.wait_for_commands("notifier", timeout_s=30)

            write_config(config, emulator, [ops, phone], strict=False)
            assert await reload_reply(emulator) == (
                "⚠️ Reloaded. 1 of 2 notifiers started; left out: phone "
                "(unknown plugin 'emial', did you mean 'email'?)"
            )
            assert bot.fanout.notifier_names == ["ops"]

            broken_ops = {**ops, "on": ["completed", "complete"]}
            write_config(config, emulator, [broken_ops, phone], strict=True)
            text = config.read_text(encoding="utf-8").splitlines()
            on_line = text.index("  - complete") - 1  # the `'on':` key above its items
            reply = await reload_reply(emulator)
            assert reply.startswith("❌ The new configuration was rejected; the old one stays.")
            assert f"{config}:{on_line}: notifiers[0].on: unknown event 'complete'" in reply
            pager = {"name": "pager", "plugin": "email", "on": ["failed"], "options": {"url": "x"}}
            write_config(config, emulator, [ops, phone, pager], strict=True)
            text = config.read_text(encoding="utf-8").splitlines()
            plugin_line = text.index("  plugin: emial") + 1
            url_line = text.index("    url: x") + 1
            reply = await reload_reply(emulator)
            assert reply.splitlines()[2:-1] == [
                f"{config}:{plugin_line}: notifiers[1].plugin: unknown plugin 'emial', "
                "did you mean 'email'?",
                f"{config}:{url_line - 1}: notifiers[2].options.urls: is required",
                f"{config}:{url_line}: notifiers[2].options.url: unknown option for plugin "
                "'email', did you mean 'urls'?",
            ]
            assert bot.fanout.notifier_names == ["ops"]  # refused: the running set stays
