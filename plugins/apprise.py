"""Any Apprise URLs, and/or the services of an Apprise YAML/TEXT config file filtered by tags.

`json://`/`jsons://` (POST) and `discord://` targets are sent natively with aiohttp (the same JSON
body Apprise's NotifyJSON sends; an `Idempotency-Key` header), everything else through Apprise in
the executor. `native: false` sends everything through Apprise. The config file is read once, when
the notifier is loaded (at start and on reload); `tags` select its entries with Apprise's own
matching (a list is OR; entries tagged `always` always match) and do not filter `urls`.

```yaml
- name: everywhere
  plugin: apprise
  on: [completed, failed]
  options:
    urls: ["json://127.0.0.1:8080/hook", "slack://T000/B000/XXXX"]
    config: /etc/notifier/apprise.yml
    tags: [ops]
```
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, FilePath, field_validator, model_validator

from notifier.errors import ConfigError
from notifier.events import Event, Notice
from notifier.plugins import (
    AppriseUrl,
    Plugin,
    PluginContext,
    RenderedNotice,
    SendOutcome,
    Target,
    apprise_secrets,
    outcome_from_results,
    parse_apprise_url,
    send_all,
)

__all__ = ["AppriseOptions", "ApprisePlugin"]


class AppriseOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    urls: tuple[AppriseUrl, ...] = ()
    config: FilePath | None = None
    tags: tuple[str, ...] = ()
    native: bool = True
    embed: bool = True

    @field_validator("urls", "tags", mode="before")
    @classmethod
    def _one_is_a_list(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _has_targets(self) -> AppriseOptions:
        if not self.urls and self.config is None:
            raise ValueError("give `urls`, `config` (an Apprise config file), or both")
        return self


def _load_config(path: Path, tags: tuple[str, ...]) -> list[Any]:
    """The services of an Apprise config file matching `tags`, read now (a local file)."""
    from apprise import Apprise, AppriseAsset, AppriseConfig

    asset = AppriseAsset(service_timeout=0)
    config = AppriseConfig(asset=asset)
    if not config.add(str(path)):
        raise ConfigError("config", f"Apprise cannot read {path}")
    apobj = Apprise(asset=asset)
    apobj.add(config)
    services = list(apobj.find(tag=list(tags) if tags else "all"))
    if not services:
        where = f" tagged {', '.join(tags)}" if tags else ""
        raise ConfigError("config", f"{path} holds no usable Apprise URL{where}")
    return services


class ApprisePlugin(Plugin[AppriseOptions]):
    name: ClassVar[str] = "apprise"
    events: ClassVar[frozenset[Event]] = frozenset(Event)
    Options: ClassVar[type[BaseModel]] = AppriseOptions

    def __init__(self, options: AppriseOptions, context: PluginContext) -> None:
        super().__init__(options, context)
        self._targets: list[Target] = [
            parse_apprise_url(url, native=options.native, embed=options.embed)
            for url in options.urls
        ]
        self._secrets: list[str] = []
        if options.config is not None:
            for service in _load_config(options.config, options.tags):
                # The file's secrets are not in config.yaml: the redactor learns them here.
                self._secrets.extend(apprise_secrets(service))
                url = str(service.url(privacy=False))
                self._targets.append(
                    parse_apprise_url(url, native=options.native, embed=options.embed)
                )

    def secrets(self) -> Iterable[str]:
        return [*self._secrets, *(s for t in self._targets for s in t.secrets())]

    async def send(self, notice: Notice, message: RenderedNotice) -> SendOutcome:
        results = await send_all(self._targets, self.context, notice, message)
        return outcome_from_results(results)
