"""A warning when a workflow starts whose estimate exceeds `threshold_s` (default 600 s).

Discord's interaction token lives 15 minutes; a workflow expected to run longer will deliver its
result another way. This tells the operator's channels (Apprise URLs) and/or the requester (DM) the
estimate, the limit, how the result will arrive and the retrieval command. Under the threshold (or
with no estimate) it sends nothing and the outbox records the notice as skipped, not failed.

```yaml
- name: long-run-warning
  plugin: timeout_warning
  on: [started]
  options: {threshold_s: 600, to_requester: true, urls: ["json://127.0.0.1:8080/warn"]}
```
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import ClassVar, Final

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from notifier.discord import codes as discord_codes
from notifier.events import Event, Notice
from notifier.plugins import (
    AppriseUrl,
    DMTarget,
    MessageTemplate,
    Plugin,
    PluginContext,
    RenderedNotice,
    SendOutcome,
    Target,
    outcome_from_results,
    parse_apprise_url,
    send_all,
)

__all__ = ["TimeoutWarningOptions", "TimeoutWarningPlugin"]

INTERACTION_LIMIT_S: Final = float(discord_codes.INTERACTION_TOKEN_TTL_S)


def _minutes(seconds: float) -> str:
    minutes = seconds / 60
    return f"{minutes:g} minutes"


class TimeoutWarningOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold_s: float = Field(default=600.0, ge=0)
    urls: tuple[AppriseUrl, ...] = ()
    to_requester: bool = False
    user_ids: tuple[int, ...] = ()
    native: bool = True
    embed: bool = True

    @field_validator("urls", mode="before")
    @classmethod
    def _one_url_is_a_list(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _has_targets(self) -> TimeoutWarningOptions:
        if not (self.urls or self.to_requester or self.user_ids):
            raise ValueError("give urls, user_ids or to_requester: true")
        return self


class TimeoutWarningPlugin(Plugin[TimeoutWarningOptions]):
    name: ClassVar[str] = "timeout_warning"
    events: ClassVar[frozenset[Event]] = frozenset({Event.STARTED})
    Options: ClassVar[type[BaseModel]] = TimeoutWarningOptions
    extra_fields: ClassVar[frozenset[str]] = frozenset({"threshold", "limit"})
    templates: ClassVar[Mapping[Event, MessageTemplate]] = {
        Event.STARTED: MessageTemplate(
            title="Long workflow: {command} may take {estimate}",
            body=(
                "{user}'s {command} (workflow {workflow_id}) is estimated to take {estimate}, "
                "longer than Discord's {limit} interaction limit. It keeps running: the result "
                "is saved as soon as it is ready and delivered by a channel message or a DM, and "
                "it can be fetched any time with {retrieval_command}"
            ),
        )
    }

    def __init__(self, options: TimeoutWarningOptions, context: PluginContext) -> None:
        super().__init__(options, context)
        if (options.to_requester or options.user_ids) and context.send_dm is None:
            raise ValueError("DM targets need the running bot (PluginContext.send_dm is None)")
        self._url_targets: list[Target] = [
            parse_apprise_url(url, native=options.native, embed=options.embed)
            for url in options.urls
        ]

    def secrets(self) -> Iterable[str]:
        return [s for t in self._url_targets for s in t.secrets()]

    def template_fields(self, notice: Notice) -> dict[str, str]:
        fields = notice.template_fields()
        fields["threshold"] = _minutes(self.options.threshold_s)
        fields["limit"] = _minutes(INTERACTION_LIMIT_S)
        return fields

    async def send(self, notice: Notice, message: RenderedNotice) -> SendOutcome:
        estimate = notice.estimate_s
        if estimate is None or estimate <= self.options.threshold_s:
            shown = "no estimate" if estimate is None else f"estimate {estimate:g}s"
            return SendOutcome.skipped(
                f"{shown} is within the {self.options.threshold_s:g}s threshold"
            )
        users = ([notice.user_id] if self.options.to_requester else []) + list(
            self.options.user_ids
        )
        targets = self._url_targets + [
            DMTarget(u, embed=self.options.embed) for u in dict.fromkeys(users)
        ]
        results = await send_all(targets, self.context, notice, message)
        return outcome_from_results(results)
