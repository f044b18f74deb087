"""Discord webhook targets: posted natively with aiohttp, or through Apprise's NotifyDiscord.

Two spellings of one webhook are accepted: the URL Discord shows when a webhook is created
(`https://discord.com/api/webhooks/ID/TOKEN`, also on `discordapp.com`, `ptb.`/`canary.`, with an
API version such as `/api/v10`, a trailing slash, Discord's own `?wait=true` or `?thread_id=`), and
Apprise's `discord://[botname@]id/token[?thread=..&avatar_url=..]`. The first is rewritten to the
second, which Apprise's own parser then reads, so both take the same options. Whatever host the URL
names, posts go to `discord.api_base` (a proxy, the emulator) like every other Discord call. A 429
with `retry_after` is retried no sooner than Discord asks; other 4xx are permanent. Every post says `allowed_mentions`: nobody is pinged, or only the requester when the
operator's template names them (`{user_mention}`); the notice's outside text is already inert.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode

import aiohttp

from ...discord import codes
from ...discord.text import allowed_mentions, user_mention
from ...events import Notice
from ..plugin import PluginContext, RenderedNotice, TargetResult, TargetStatus
from .apprise import _send_in_executor
from .common import _connection_error, _http_result, _result, discord_embed, target_id

__all__ = ["DiscordWebhookTarget", "is_discord_webhook_url"]

USER_AGENT: Final = "notifier-fanout/0.1"

# The webhook URL Discord hands out, on every host Discord serves it from. The token is the
# credential; the id is not secret but is masked with it (it names the channel's webhook).
_DISCORD_HTTPS_WEBHOOK: Final = re.compile(
    r"^https://(?:(?:ptb|canary)\.)?discord(?:app)?\.com/api(?:/v\d+)?/webhooks/"
    r"(?P<id>[0-9]+)/(?P<token>[A-Za-z0-9_-]+)/?(?:\?(?P<query>[^#]*))?$",
    re.IGNORECASE,
)
_EXPECTED: Final = (
    "give the URL Discord shows for the webhook, https://discord.com/api/webhooks/ID/TOKEN, "
    "or Apprise's discord://ID/TOKEN"
)


def is_discord_webhook_url(url: str) -> bool:
    """Whether `url` is a Discord webhook in either accepted spelling (checked, not parsed)."""
    text = url.strip()
    return text.lower().startswith("discord://") or bool(_DISCORD_HTTPS_WEBHOOK.match(text))


def _as_apprise_url(url: str) -> str:
    """Discord's `https://.../api[/vN]/webhooks/ID/TOKEN[?query]` as Apprise's `discord://`
    spelling; any other text unchanged. Discord's `wait` is dropped (native posts always wait)
    and its `thread_id` becomes Apprise's `thread`; other query values pass through to Apprise."""
    match = _DISCORD_HTTPS_WEBHOOK.match(url)
    if match is None:
        return url
    query: list[tuple[str, str]] = []
    for name, value in parse_qsl(match.group("query") or "", keep_blank_values=True):
        if name.lower() == "wait":
            continue
        query.append(("thread" if name.lower() == "thread_id" else name, value))
    tail = f"?{urlencode(query)}" if query else ""
    return f"discord://{match.group('id')}/{match.group('token')}/{tail}"


@dataclass(frozen=True, slots=True)
class DiscordWebhookTarget:
    """A Discord webhook: `url` is its `discord://[botname@]id/token[?thread=..&avatar_url=..]`
    spelling (Apprise's, parsed by NotifyDiscord.parse_url), whichever spelling was configured.
    Posted natively to `{discord_api_base}/webhooks/{id}/{token}?wait=true`, or through Apprise's
    own NotifyDiscord pointed at the same API base when `via_apprise`."""

    target_id: str
    display: str
    url: str
    webhook_id: str
    webhook_token: str
    username: str | None = None
    avatar_url: str | None = None
    thread_id: str | None = None
    embed: bool = True
    via_apprise: bool = False

    @classmethod
    def parse(
        cls, url: str, *, embed: bool = True, via_apprise: bool = False
    ) -> DiscordWebhookTarget:
        """Parse either spelling (Discord's https URL is rewritten to `discord://` first) with
        Apprise's own parser; raise ValueError, with no secret in it, if it is neither."""
        from apprise.plugins.discord import NotifyDiscord

        configured = url.strip()
        apprise_url = _as_apprise_url(configured)
        parsed = NotifyDiscord.parse_url(apprise_url)
        if not parsed or parsed.get("schema") != "discord":
            raise ValueError(f"not a Discord webhook URL; {_EXPECTED}")
        webhook_id, token = parsed.get("webhook_id"), parsed.get("webhook_token")
        if not webhook_id or not token:
            raise ValueError(f"a Discord webhook URL needs the webhook id and token; {_EXPECTED}")
        return cls(
            target_id=target_id(configured),
            display=f"discord://{webhook_id[:4]}.../***",
            url=apprise_url,
            webhook_id=str(webhook_id),
            webhook_token=str(token),
            username=parsed.get("user"),
            avatar_url=parsed.get("avatar_url"),
            thread_id=parsed.get("thread"),
            embed=embed,
            via_apprise=via_apprise,
        )

    def secrets(self) -> list[str]:
        return [self.webhook_token, self.webhook_id]

    def payload(self, notice: Notice, message: RenderedNotice) -> dict[str, Any]:
        payload: dict[str, Any] = {}
        if self.embed:
            payload["content"] = message.title[: codes.CONTENT_MAX]
            embed = discord_embed(notice, message)
            del embed["title"]  # already the content line
            payload["embeds"] = [embed]
        else:
            payload["content"] = f"{message.title}\n{message.body}"[: codes.CONTENT_MAX]
        # Only the requester may be pinged, and only where the template names them on purpose.
        named = user_mention(notice.user_id) in payload["content"]
        payload["allowed_mentions"] = allowed_mentions(notice.user_id if named else None)
        if self.username:
            payload["username"] = self.username
        if self.avatar_url:
            payload["avatar_url"] = self.avatar_url
        return payload

    async def send(
        self, context: PluginContext, notice: Notice, message: RenderedNotice, timeout_s: float
    ) -> TargetResult:
        if self.via_apprise:
            return await _send_in_executor(self, context, notice, message, timeout_s)
        url = f"{context.discord_api_base}/webhooks/{self.webhook_id}/{self.webhook_token}"
        params = {"wait": "true"}
        if self.thread_id:
            params["thread_id"] = self.thread_id
        headers = {"User-Agent": USER_AGENT}
        if message.idempotency_key:
            # Execute Webhook takes no nonce; the header lets a deduplicating proxy or emulator
            # recognise a resend after a crash between send and mark.
            headers["Idempotency-Key"] = message.idempotency_key
        try:
            async with (
                asyncio.timeout(timeout_s),
                context.http.post(
                    url, json=self.payload(notice, message), params=params, headers=headers
                ) as response,
            ):
                body = await response.read()
                return _http_result(self, response.status, response.headers, body)
        except TimeoutError:
            return _result(
                self, TargetStatus.TIMEOUT, f"no answer within {timeout_s:.1f}s (outcome unknown)"
            )
        except (aiohttp.ClientError, OSError) as exc:
            return _connection_error(self, exc)

    def apprise_params(self) -> dict[str, Any]:
        from apprise.plugins.discord import NotifyDiscord

        params: dict[str, Any] = NotifyDiscord.parse_url(self.url) or {}
        if self.embed:
            # NotifyDiscord sends embeds only in markdown mode.
            params.setdefault("format", "markdown")
        return params
