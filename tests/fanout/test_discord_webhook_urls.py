"""The `discord_webhook` plugin takes the URL Discord hands out, in every spelling Discord uses,
as well as Apprise's `discord://ID/TOKEN`; its token stays masked wherever the URL could show.

Notices go to an incoming webhook of the emulator (the real Execute Webhook route), natively and
through Apprise's NotifyDiscord; the masking is checked against a hostile Discord that echoes the
request path, token included, in its error body.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from notifier.config import secret_values
from notifier.errors import ConfigError
from notifier.events import Event
from notifier.fanout.dispatch import Fanout
from notifier.fanout.outbox import OutboxStatus
from notifier.plugins import PluginContext
from notifier.testing import DiscordEmulator, HttpSink, Received

from .support import make_notice, make_settings, open_fanout, settled

# Each spelling of one webhook, as Discord shows it or people paste it ({id}, {token} filled in).
SPELLINGS = {
    "discord.com": "https://discord.com/api/webhooks/{id}/{token}",
    "discordapp.com": "https://discordapp.com/api/webhooks/{id}/{token}",
    "ptb": "https://ptb.discord.com/api/webhooks/{id}/{token}",
    "canary": "https://canary.discord.com/api/webhooks/{id}/{token}",
    "api-v10": "https://discord.com/api/v10/webhooks/{id}/{token}",
    "trailing-slash": "https://discord.com/api/webhooks/{id}/{token}/",
    "wait-true": "https://discord.com/api/webhooks/{id}/{token}?wait=true",
    "all-at-once": "https://canary.discordapp.com/api/v10/webhooks/{id}/{token}/?wait=true",
    "apprise": "discord://{id}/{token}",
}


@pytest.mark.parametrize("via", ["native", "apprise"])
async def test_every_spelling_of_a_webhook_url_delivers_into_its_channel(
    tmp_path: Path, context: PluginContext, emulator: DiscordEmulator, via: str
) -> None:
    # One webhook per spelling: Discord rate-limits each webhook on its own.
    hooks = {name: emulator.create_incoming_webhook(emulator.channel_id) for name in SPELLINGS}
    notifiers = [
        {
            "name": name,
            "plugin": "discord_webhook",
            "on": ["completed"],
            "options": {"url": SPELLINGS[name].format(id=hook_id, token=token), "via": via},
            "templates": {"completed": {"title": f"through {name}", "body": "{summary}"}},
        }
        for name, (hook_id, token) in hooks.items()
    ]
    settings = make_settings(tmp_path, notifiers, strict=True)
    on_emulator = dataclasses.replace(context, discord_api_base=emulator.api_base)
    async with open_fanout(settings, on_emulator) as fanout:
        await fanout.emit(make_notice(Event.COMPLETED, summary="counted to ten"))
        rows = await settled(fanout, len(SPELLINGS))

    assert {row.notifier: row.status for row in rows} == dict.fromkeys(SPELLINGS, OutboxStatus.SENT)
    for name, (hook_id, _) in hooks.items():
        (posted,) = emulator.webhook_messages(hook_id)
        shown = posted.content if via == "native" else posted.embeds[0]["title"]
        assert shown == f"through {name}"
        assert "counted to ten" in posted.embeds[0]["description"]


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://discord.com/api/webhooks/{id}/{token}", id="plain-http"),
        pytest.param("https://example.com/api/webhooks/{id}/{token}", id="not-discord"),
        pytest.param("https://discord.com.example.com/api/webhooks/{id}/{token}", id="look-alike"),
        pytest.param("https://discord.com/api/webhooks/{id}", id="no-token"),
        pytest.param("https://discord.com/api/webhooks/{id}/{token}/messages/1", id="extra-path"),
        pytest.param("https://discord.com/channels/{id}/{token}", id="channel-link"),
        pytest.param("slack://{id}/{token}", id="other-service"),
        pytest.param("{token}", id="bare-token"),
    ],
)
async def test_anything_else_is_a_config_error_naming_the_option_without_the_token(
    tmp_path: Path, context: PluginContext, url: str
) -> None:
    token = "tOkEn_" + "x" * 60
    entry = {
        "name": "ops",
        "plugin": "discord_webhook",
        "on": ["completed"],
        "options": {"url": url.format(id=112233445566778899, token=token)},
    }
    settings = make_settings(tmp_path, [entry], strict=True)
    with pytest.raises(ConfigError) as caught:
        await Fanout.open(settings, context)
    assert caught.value.field == "notifiers[0].options.url"
    assert "not a Discord webhook URL" in caught.value.message
    assert "https://discord.com/api/webhooks/ID/TOKEN" in caught.value.message  # what to give
    assert token not in str(caught.value)


@pytest.mark.parametrize("via", ["native", "apprise"])
async def test_the_token_of_an_https_url_is_masked_in_errors_logs_and_the_outbox(
    tmp_path: Path,
    context: PluginContext,
    sinks: Callable[..., Awaitable[HttpSink]],
    log_lines: list[str],
    via: str,
) -> None:
    hook_id, token = 556677889900112233, "Wh-t0ken_" + "k" * 59
    discord = await sinks()

    async def echo_the_path(got: Received) -> None:
        discord.statuses.append((500, {"message": f"cannot post to {got.path}", "code": 0}))

    discord.on_receive = echo_the_path
    url = f"https://ptb.discord.com/api/v10/webhooks/{hook_id}/{token}/?wait=true"
    entry = {
        "name": "ops",
        "plugin": "discord_webhook",
        "on": ["failed"],
        "options": {"url": url, "via": via},
    }
    settings = make_settings(tmp_path, [entry], strict=True, max_attempts=2)
    assert token in secret_values(settings)  # the config alone tells the redactor
    on_sink = dataclasses.replace(context, discord_api_base=discord.api_base)
    async with open_fanout(settings, on_sink) as fanout:
        await fanout.emit(make_notice(Event.FAILED, error="site unreachable"))
        (row,) = await settled(fanout, 1)

    assert row.status is OutboxStatus.FAILED
    assert len(discord.received) == 2
    assert all(token in r.path for r in discord.received)  # the sink really echoed it
    shown = [row.last_error or "", str(row.targets), *log_lines]
    assert any("500" in text for text in shown)
    assert not [text for text in shown if token in text]


async def test_the_apprise_plugin_takes_discords_url_too_and_posts_it_natively(
    tmp_path: Path, context: PluginContext, emulator: DiscordEmulator
) -> None:
    hook_id, token = emulator.create_incoming_webhook(emulator.channel_id)
    url = SPELLINGS["all-at-once"].format(id=hook_id, token=token)  # Apprise's own parser refuses
    entry = {
        "name": "everywhere",
        "plugin": "apprise",
        "on": ["completed"],
        "options": {"urls": url},
    }
    settings = make_settings(tmp_path, [entry], strict=True)
    on_emulator = dataclasses.replace(context, discord_api_base=emulator.api_base)
    async with open_fanout(settings, on_emulator) as fanout:
        await fanout.emit(make_notice(Event.COMPLETED, summary="counted to ten"))
        (row,) = await settled(fanout, 1)

    assert row.status is OutboxStatus.SENT
    (posted,) = emulator.webhook_messages(hook_id)
    assert "counted to ten" in posted.embeds[0]["description"]
    # Posted natively: the title is the content line and the embed has none (Apprise's
    # NotifyDiscord puts the title in the embed).
    assert posted.content
    assert "title" not in posted.embeds[0]
