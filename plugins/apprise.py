"""Any Apprise URLs, and/or the services of an Apprise YAML/TEXT config, filtered by tags.

`json://`/`jsons://` (POST) and Discord webhook targets are sent natively with aiohttp (the same
JSON body Apprise's NotifyJSON sends; an `Idempotency-Key` header), everything else through
Apprise in the executor. `native: false` sends everything through Apprise. `tags` select the
config's entries with Apprise's own matching (a list is OR; entries tagged `always` always match)
and do not filter `urls`.

`config` is a file or an `http://`/`https://` URL (Apprise's config URL: `user:password@`,
`?format=yaml`, `+Header=value` work as in Apprise); anything else is a config error naming
`options.config`. Both are read once per load of the notifier (at start and on reload). A file is
read at load, so a missing or empty one stops the load like any other config error. A URL is
fetched by Apprise, which blocks, so it is fetched in the plugin context's executor, never on the
event loop, and only when the first notice after the load needs it: loading a notifier (a start,
a reload, `notifier config check`) makes no network call. While the URL cannot be fetched, or
holds no matching URL, the config counts as one failed target: the notice's other targets are
sent, the outbox retries it with backoff, and each retry fetches the config again.

```yaml
- name: everywhere
  plugin: apprise
  on: [completed, failed]
  options:
    urls: ["json://127.0.0.1:8080/hook", "slack://T000/B000/XXXX"]
    config: https://config.example.com/apprise.yml   # or /etc/notifier/apprise.yml
    tags: [ops]
```
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import hashlib
import logging
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar, Final
from urllib.parse import urlsplit

from loguru import logger
from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from notifier.errors import ConfigError
from notifier.events import Event, Notice
from notifier.logs import redactor
from notifier.plugins import (
    AppriseUrl,
    Plugin,
    PluginContext,
    RenderedNotice,
    SendOutcome,
    Target,
    TargetResult,
    TargetStatus,
    apprise_secrets,
    mask_url,
    outcome_from_results,
    parse_apprise_url,
    send_all,
)

__all__ = ["AppriseOptions", "ApprisePlugin"]

CONFIG_URL_SCHEMES: Final = ("http", "https")
_WHAT_CONFIG_IS: Final = "an Apprise config is a file or an http:// or https:// URL"


def is_config_url(config: str) -> bool:
    """Whether `config` names an Apprise config URL rather than a file."""
    return "://" in config


class AppriseOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    urls: tuple[AppriseUrl, ...] = ()
    config: str | None = None
    tags: tuple[str, ...] = ()
    native: bool = True
    embed: bool = True

    @field_validator("urls", "tags", mode="before")
    @classmethod
    def _one_is_a_list(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("config")
    @classmethod
    def _file_or_url(cls, value: str) -> str:
        """Only the form is checked here (no fetch): `notifier config check` runs offline."""
        text = value.strip()
        if is_config_url(text):
            parts = urlsplit(text)
            if parts.scheme.lower() not in CONFIG_URL_SCHEMES or not parts.hostname:
                raise ValueError(f"not a config URL Apprise can fetch ({_WHAT_CONFIG_IS})")
            return text
        path = Path(text).expanduser()
        if path.is_dir():
            raise ValueError(f"is a folder, not a file ({_WHAT_CONFIG_IS})")
        if not path.is_file():
            raise ValueError(f"no such file ({_WHAT_CONFIG_IS})")
        return text

    @model_validator(mode="after")
    def _has_targets(self) -> AppriseOptions:
        if not self.urls and self.config is None:
            raise ValueError("give `urls`, `config` (an Apprise config file or URL), or both")
        return self


class _ApprisesComplaints(logging.Handler):
    """Apprise's warnings and errors logged by this thread while it reads a config: Apprise says
    why a fetch failed only in its log (`read()` returns None)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.thread = threading.get_ident()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.messages.append(record.getMessage())


def _load_config(source: str, tags: tuple[str, ...]) -> list[Any]:
    """The services of an Apprise config (a file, or a URL Apprise fetches: blocking) that match
    `tags`. Raises ConfigError, with Apprise's own complaint when it gave one."""
    from apprise import Apprise, AppriseAsset, AppriseConfig

    shown = mask_url(source) if is_config_url(source) else source
    asset = AppriseAsset(service_timeout=0)
    config = AppriseConfig(asset=asset)
    if not config.add(source):
        raise ConfigError("config", f"Apprise cannot read {shown}")
    apobj = Apprise(asset=asset)
    apobj.add(config)
    complaints = _ApprisesComplaints()
    apprise_log = logging.getLogger("apprise")
    apprise_log.addHandler(complaints)
    try:
        services = list(apobj.find(tag=list(tags) if tags else "all"))
    finally:
        apprise_log.removeHandler(complaints)
    if not services:
        where = f" tagged {', '.join(tags)}" if tags else ""
        why = f" ({' '.join(complaints.messages)})" if complaints.messages else ""
        raise ConfigError("config", f"{shown} holds no usable Apprise URL{where}{why}")
    return services


class _RemoteConfig:
    """An Apprise config URL, fetched in the executor; its targets once it has been fetched.

    Touched only on the event loop. One fetch runs at a time: a notice that arrives while it runs
    waits for the same fetch, and a send cancelled by its timeout leaves the fetch running for
    the next attempt. A failed fetch is dropped, so the next `targets()` fetches again; the
    fanout logs the attempt that failed with it.
    """

    def __init__(self, url: str, options: AppriseOptions, context: PluginContext) -> None:
        self.url = url
        self.display = mask_url(url)
        self.target_id = "config:" + hashlib.sha256(url.encode()).hexdigest()[:16]
        self._options = options
        self._context = context
        self._fetch: cf.Future[list[Any]] | None = None
        self._targets: list[Target] | None = None

    def _start(self) -> cf.Future[list[Any]]:
        """The running fetch, or a new one."""
        if self._fetch is None:
            self._fetch = self._context.executor.submit(_load_config, self.url, self._options.tags)
        return self._fetch

    async def targets(self) -> list[Target]:
        """The config's targets, fetched first if need be; raises why it cannot be used."""
        if self._targets is not None:
            return self._targets
        fetch = self._start()
        try:
            services = await asyncio.shield(asyncio.wrap_future(fetch))
        except BaseException:
            if fetch.done() and self._fetch is fetch:
                self._fetch = None  # failed: fetch again next time (a running one is kept)
            raise
        return self._use(services)

    def _use(self, services: list[Any]) -> list[Target]:
        if self._targets is not None:
            return self._targets
        # The config's secrets are not in config.yaml: the redactor learns them here.
        redactor.add(s for service in services for s in apprise_secrets(service))
        targets = [
            parse_apprise_url(
                str(service.url(privacy=False)),
                native=self._options.native,
                embed=self._options.embed,
            )
            for service in services
        ]
        redactor.add(s for target in targets for s in target.secrets())
        self._targets = targets
        logger.info(
            "apprise config {}: {} service(s) loaded{}",
            self.display,
            len(targets),
            f" tagged {', '.join(self._options.tags)}" if self._options.tags else "",
        )
        return targets

    @staticmethod
    def _reason(exc: BaseException) -> str:
        text = exc.message if isinstance(exc, ConfigError) else f"{type(exc).__name__}: {exc}"
        return redactor.redact(text)

    def unavailable(self, exc: BaseException) -> TargetResult:
        """The config as one failed, retryable target of this attempt."""
        return TargetResult(
            target=self.display,
            target_id=self.target_id,
            status=TargetStatus.FAILED,
            errors=(f"config not loaded: {self._reason(exc)}",),
        )

    def close(self) -> None:
        if self._fetch is not None:
            self._fetch.cancel()  # only a fetch still queued; a running one finishes unseen


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
        self._remote: _RemoteConfig | None = None
        if options.config is not None and is_config_url(options.config):
            self._remote = _RemoteConfig(options.config, options, context)  # fetched on use
        elif options.config is not None:
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
        targets = list(self._targets)
        unavailable: list[TargetResult] = []
        if self._remote is not None:
            try:
                targets.extend(await self._remote.targets())
            except Exception as exc:  # noqa: BLE001 - whatever Apprise raised, the rest is sent
                unavailable.append(self._remote.unavailable(exc))
        results = await send_all(targets, self.context, notice, message)
        return outcome_from_results([*results, *unavailable])

    async def close(self) -> None:
        if self._remote is not None:
            self._remote.close()
