"""A Discord channel webhook: the URL Discord shows when the webhook is made,
`https://discord.com/api/webhooks/ID/TOKEN` (also `discordapp.com`, `ptb.`/`canary.`, `/api/v10`,
a trailing slash, `?wait=true`), or Apprise's `discord://ID/TOKEN`. Anything else is a config error
naming `options.url`. The token is the webhook's password: it is masked in every log line and error.

Sent natively by default: an aiohttp POST of content + one embed to
`{discord_api_base}/webhooks/{id}/{token}?wait=true` (429 with `retry_after` is retried no sooner
than Discord asks, other 4xx are permanent). With `via: apprise` it goes through Apprise's own
NotifyDiscord in the executor, pointed at the same API base, with embeds (Apprise's markdown mode).

```yaml
- name: ops-channel
  plugin: discord_webhook
  on: [completed, failed]
  options:
    url: "${OPS_WEBHOOK_URL}"  # https://discord.com/api/webhooks/ID/TOKEN, or discord://ID/TOKEN
    via: native        # or apprise
    embed: true
```
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, field_validator

from notifier.events import Event, Notice
from notifier.plugins import (
    DiscordWebhookTarget,
    Plugin,
    PluginContext,
    RenderedNotice,
    SendOutcome,
    outcome_from_results,
    send_all,
)

__all__ = ["DiscordWebhookOptions", "DiscordWebhookPlugin"]


class DiscordWebhookOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    via: Literal["native", "apprise"] = "native"
    embed: bool = True

    @field_validator("url")
    @classmethod
    def _url_parses(cls, value: str) -> str:
        DiscordWebhookTarget.parse(value)
        return value.strip()


class DiscordWebhookPlugin(Plugin[DiscordWebhookOptions]):
    name: ClassVar[str] = "discord_webhook"
    events: ClassVar[frozenset[Event]] = frozenset(Event)
    Options: ClassVar[type[BaseModel]] = DiscordWebhookOptions

    def __init__(self, options: DiscordWebhookOptions, context: PluginContext) -> None:
        super().__init__(options, context)
        self._target = DiscordWebhookTarget.parse(
            options.url, embed=options.embed, via_apprise=options.via == "apprise"
        )

    def secrets(self) -> Iterable[str]:
        return self._target.secrets()

    async def send(self, notice: Notice, message: RenderedNotice) -> SendOutcome:
        results = await send_all([self._target], self.context, notice, message)
        return outcome_from_results(results)
