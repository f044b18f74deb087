"""E-mail through Apprise (`mailto://`, `mailtos://`): subject and body come from the templates.

Apprise's SMTP send is blocking, so it runs in the fanout's executor with a fresh Apprise object per
send (one object waits 5.5 s between two e-mails). Every URL is one target: Apprise's per-URL result
(status, attempts, warnings) is recorded in the outbox row, and a retry skips the URLs that already
accepted the mail.

```yaml
- name: ops-mail
  plugin: email
  on: [failed, interrupted]
  options:
    urls: ["mailtos://bot:${SMTP_PASSWORD}@smtp.example.com?to=ops@example.com"]
```
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from notifier.events import Event, Notice
from notifier.plugins import (
    Plugin,
    PluginContext,
    RenderedNotice,
    SendOutcome,
    Target,
    mask_url,
    outcome_from_results,
    parse_apprise_url,
    send_all,
)

__all__ = ["EmailOptions", "EmailPlugin"]

_SCHEMES = ("mailto", "mailtos")


def _email_url(url: str) -> str:
    scheme = url.strip().partition("://")[0].lower()
    if scheme not in _SCHEMES:
        raise ValueError(f"must be a mailto:// or mailtos:// URL, got {mask_url(url)}")
    parse_apprise_url(url)
    return url.strip()


class EmailOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    urls: tuple[Annotated[str, AfterValidator(_email_url)], ...] = Field(min_length=1)

    @field_validator("urls", mode="before")
    @classmethod
    def _one_url_is_a_list(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value


class EmailPlugin(Plugin[EmailOptions]):
    name: ClassVar[str] = "email"
    events: ClassVar[frozenset[Event]] = frozenset(Event)
    Options: ClassVar[type[BaseModel]] = EmailOptions

    def __init__(self, options: EmailOptions, context: PluginContext) -> None:
        super().__init__(options, context)
        # native=False: every mailto:// URL goes through Apprise, in the executor.
        self._targets: list[Target] = [parse_apprise_url(url, native=False) for url in options.urls]

    def secrets(self) -> Iterable[str]:
        return [s for t in self._targets for s in t.secrets()]

    async def send(self, notice: Notice, message: RenderedNotice) -> SendOutcome:
        results = await send_all(self._targets, self.context, notice, message)
        return outcome_from_results(results)
