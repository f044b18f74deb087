"""A Discord DM, through the running bot's `send_dm`: to the user who started the workflow
(`to_requester`) and/or to fixed `user_ids`. A user who cannot be DMed (50007) is a permanent failure
for that user only; the others still get theirs.

```yaml
- name: tell-the-user
  plugin: dm
  on: [completed, failed]
  options: {to_requester: true, user_ids: [123456789012345678]}
```
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, model_validator

from notifier.events import Event, Notice
from notifier.plugins import (
    DMTarget,
    Plugin,
    PluginContext,
    RenderedNotice,
    SendOutcome,
    outcome_from_results,
    send_all,
)

__all__ = ["DMOptions", "DMPlugin"]


class DMOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    to_requester: bool = True
    user_ids: tuple[int, ...] = ()
    embed: bool = True

    @model_validator(mode="after")
    def _has_recipients(self) -> DMOptions:
        if not self.to_requester and not self.user_ids:
            raise ValueError("set to_requester: true or give user_ids")
        return self


class DMPlugin(Plugin[DMOptions]):
    name: ClassVar[str] = "dm"
    events: ClassVar[frozenset[Event]] = frozenset(Event)
    Options: ClassVar[type[BaseModel]] = DMOptions

    def __init__(self, options: DMOptions, context: PluginContext) -> None:
        super().__init__(options, context)
        if context.send_dm is None:
            raise ValueError("the dm plugin needs the running bot (PluginContext.send_dm is None)")

    async def send(self, notice: Notice, message: RenderedNotice) -> SendOutcome:
        users = ([notice.user_id] if self.options.to_requester else []) + list(
            self.options.user_ids
        )
        targets = [DMTarget(u, embed=self.options.embed) for u in dict.fromkeys(users)]
        results = await send_all(targets, self.context, notice, message)
        return outcome_from_results(results)
