"""Senders shared by the built-in plugins: native async HTTP/DM sends, and Apprise for the long tail.

Why two paths: every Apprise plugin's `send()` is blocking, and `async_notify` runs them in one
shared thread pool (6 workers here), so 200 notices to 5 JSON sinks answering in 50 ms took 10.4 s
through Apprise against 0.67 s as concurrent aiohttp posts. So `json://`, `jsons://` and
`discord://` targets are posted natively with aiohttp (same body as Apprise's NotifyJSON, same URL
syntax, parsed by Apprise's own parsers), DMs go through the bot, and every other Apprise URL runs in
`PluginContext.executor` with a fresh Apprise object per send (no 5.5 s e-mail throttle) and
`service_timeout=0`, which keeps the call inline in our worker thread instead of Apprise's shared pool.

Each target reports one `TargetResult`; `outcome_from_results` turns a list of them into a
`SendOutcome` or a Transient/PermanentSendError for the fanout. What is transient: connection errors,
timeouts, 408/425/429/5xx, and an Apprise FAILURE (Apprise cannot say why, and the outbox caps the
retries). Permanent: other 4xx, a URL Apprise cannot load, a user who cannot be DMed.

A timeout on an executor send means "unknown": the worker thread keeps running and may still deliver.
Its future is kept (keyed by idempotency key and target) and the next attempt first waits for that
same call instead of starting a second one, so a slow SMTP server does not receive the mail twice.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures as cf
import copy
import hashlib
import inspect
import json
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Protocol

import aiohttp
from pydantic import AfterValidator

from ...discord import codes
from ...events import Event, Notice
from ...logs import redactor
from ..plugin import (
    PermanentSendError,
    PluginContext,
    RenderedNotice,
    SendOutcome,
    TargetResult,
    TargetStatus,
    TransientSendError,
)

__all__ = [
    "AppriseUrl",
    "AppriseUrlTarget",
    "DMTarget",
    "DiscordWebhookTarget",
    "JsonTarget",
    "Target",
    "apprise_secrets",
    "check_apprise_url",
    "discord_embed",
    "dm_nonce",
    "mask_url",
    "notify_type_for",
    "outcome_from_results",
    "parse_apprise_url",
    "send_all",
    "target_id",
    "target_timeout_s",
]

# A multi-target send gives each target this share of the attempt's budget, so each target's own
# result is recorded before the fanout's overall timeout cancels the whole send.
TARGET_TIMEOUT_FRACTION: Final = 0.9
# Bytes of an error response body kept in `last_error` (after redaction).
ERROR_BODY_MAX_BYTES: Final = 300
# HTTP statuses worth retrying; every other 4xx is permanent.
TRANSIENT_HTTP_STATUSES: Final = frozenset({408, 425, 429})
USER_AGENT: Final = "notifier-fanout/0.1"
# Discord accepts a nonce of at most 25 characters.
DM_NONCE_CHARS: Final = 25

_NOTIFY_TYPE: Final[dict[Event, str]] = {
    Event.STARTED: "info",
    Event.PROGRESS: "info",
    Event.HANDOFF: "info",
    Event.SESSION_LOST: "warning",
    Event.COMPLETED: "success",
    Event.FAILED: "failure",
    Event.PERSISTED: "success",
    Event.INTERRUPTED: "warning",
    Event.STORAGE_ERROR: "failure",
}
_EMBED_COLOR: Final[dict[str, int]] = {
    "info": 0x3498DB,
    "success": 0x2ECC71,
    "warning": 0xF1C40F,
    "failure": 0xE74C3C,
}
# Discord JSON error codes that mean "never going to work for this target".
_PERMANENT_DM_CODES: Final = frozenset({codes.CANNOT_DM_USER, codes.NO_MUTUAL_GUILDS})


def notify_type_for(event: Event) -> str:
    """Apprise's notify type (info/success/warning/failure) for an event."""
    return _NOTIFY_TYPE[event]


def target_id(configured: str) -> str:
    """A stable, non-secret id for a configured target (a hash: the URL itself holds secrets)."""
    return hashlib.sha256(configured.encode()).hexdigest()[:16]


def target_timeout_s(attempt_timeout_s: float) -> float:
    return attempt_timeout_s * TARGET_TIMEOUT_FRACTION


_URL_PARTS = re.compile(
    r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<authority>[^/?#]*)(?P<rest>.*)$"
)


def mask_url(url: str) -> str:
    """A URL's scheme, user and host only: safe in a log line or an error message."""
    match = _URL_PARTS.match(url.strip())
    if not match:
        return "***"
    authority = match.group("authority")
    userinfo, _, host = authority.rpartition("@")
    user = f"{userinfo.split(':', 1)[0]}@" if userinfo else ""
    scheme = match.group("scheme")
    if scheme.lower() == "discord":
        host = "***"  # the webhook id is the host; Apprise marks it private
    tail = "/***" if match.group("rest").strip("/?") else ""
    return f"{scheme}://{user}{host}{tail}"


def apprise_secrets(service: Any) -> list[str]:
    """The private tokens of a loaded Apprise service (passwords, webhook ids and tokens, API keys),
    read from the plugin's own `template_tokens` metadata so every Apprise service is covered."""
    found: list[str] = []
    tokens = getattr(service, "template_tokens", {}) or {}
    for name, spec in tokens.items():
        if not isinstance(spec, dict) or not spec.get("private"):
            continue
        value = getattr(service, str(spec.get("map_to", name)), None)
        values = value if isinstance(value, list | tuple | set) else [value]
        found.extend(v for v in values if isinstance(v, str) and len(v) >= 4)
    password = getattr(service, "password", None)
    if isinstance(password, str) and len(password) >= 4:
        found.append(password)
    return found


def discord_embed(notice: Notice, message: RenderedNotice) -> dict[str, Any]:
    """One embed for a notice, inside Discord's limits."""
    return {
        "title": message.title[: codes.EMBED_TITLE_MAX],
        "description": message.body[: codes.EMBED_DESCRIPTION_MAX],
        "color": _EMBED_COLOR[notify_type_for(notice.event)],
        "footer": {"text": f"workflow {notice.workflow_id}"[: codes.EMBED_FOOTER_MAX]},
        "timestamp": datetime.fromtimestamp(notice.occurred_at, UTC).isoformat(),
    }


# ---------------------------------------------------------------------------------------------
# Targets


class Target(Protocol):
    """One place a notice goes. `send` returns a result for every outcome and never raises."""

    @property
    def target_id(self) -> str: ...

    @property
    def display(self) -> str: ...

    def secrets(self) -> list[str]:
        """Private tokens of this target (for the redactor)."""
        ...

    async def send(
        self, context: PluginContext, notice: Notice, message: RenderedNotice, timeout_s: float
    ) -> TargetResult: ...


def _result(
    target: Target,
    status: TargetStatus,
    *errors: str,
    permanent: bool = False,
    attempts: int = 1,
    retry_after_s: float | None = None,
) -> TargetResult:
    return TargetResult(
        target=target.display,
        target_id=target.target_id,
        status=status,
        attempts=attempts,
        errors=tuple(redactor.redact(e) for e in errors),
        permanent=permanent,
        retry_after_s=retry_after_s,
    )


def _retry_after_s(response_headers: Any, body: bytes) -> float | None:
    try:
        data = json.loads(body)
        if isinstance(data, dict) and isinstance(data.get("retry_after"), int | float):
            return float(data["retry_after"])
    except ValueError:
        pass
    header = response_headers.get("Retry-After")
    try:
        return float(header) if header is not None else None
    except ValueError:
        return None


def _http_result(target: Target, status: int, headers: Any, body: bytes) -> TargetResult:
    """Classify one HTTP response: 2xx sent, 408/425/429/5xx transient, other 4xx permanent."""
    if 200 <= status < 300:
        return _result(target, TargetStatus.SENT)
    snippet = body[:ERROR_BODY_MAX_BYTES].decode("utf-8", "replace").strip()
    error = f"HTTP {status}" + (f": {snippet}" if snippet else "")
    if status == 429:
        return _result(
            target, TargetStatus.FAILED, error, retry_after_s=_retry_after_s(headers, body)
        )
    permanent = 400 <= status < 500 and status not in TRANSIENT_HTTP_STATUSES
    return _result(target, TargetStatus.FAILED, error, permanent=permanent)


def _connection_error(target: Target, exc: BaseException) -> TargetResult:
    detail = str(exc) or type(exc).__name__
    return _result(target, TargetStatus.FAILED, f"{type(exc).__name__}: {detail}")


@dataclass(frozen=True, slots=True)
class JsonTarget:
    """A `json://` / `jsons://` URL, posted natively with the body Apprise's NotifyJSON sends.

    `service` is an Apprise NotifyJSON instance used only for its parsed fields (host, port, path,
    method, auth, `+header`, `-param`, `:payload` mappings): the syntax stays Apprise's.
    """

    target_id: str
    display: str
    service: Any

    def secrets(self) -> list[str]:
        return apprise_secrets(self.service)

    def payload(self, notice: Notice, message: RenderedNotice) -> dict[str, Any]:
        """Exactly NotifyJSON.send's payload: version, title, message, attachments, type, with the
        URL's `:key=value` remapping (rename a field, drop it with an empty value, or add one)."""
        payload: dict[str, Any] = {
            "version": self.service.json_version,
            "title": message.title,
            "message": message.body,
            "attachments": [],
            "type": notify_type_for(notice.event),
        }
        for key, value in self.service.payload_extras.items():
            if key in payload:
                if not value:
                    del payload[key]
                else:
                    payload[value] = payload.pop(key)
            else:
                payload[key] = value
        return payload

    async def send(
        self, context: PluginContext, notice: Notice, message: RenderedNotice, timeout_s: float
    ) -> TargetResult:
        svc = self.service
        url = f"{'https' if svc.secure else 'http'}://{svc.host}"
        if isinstance(svc.port, int):
            url += f":{svc.port}"
        url += svc.fullpath or ""
        headers = {"User-Agent": svc.app_id, "Content-Type": "application/json"}
        headers.update(svc.headers)
        if message.idempotency_key:
            headers.setdefault("Idempotency-Key", message.idempotency_key)
        if svc.user:
            credentials = f"{svc.user}:{svc.password or ''}".encode()
            headers["Authorization"] = f"Basic {base64.b64encode(credentials).decode()}"
        try:
            async with (
                asyncio.timeout(timeout_s),
                context.http.request(
                    svc.method,
                    url,
                    data=json.dumps(self.payload(notice, message)),
                    params=dict(svc.params) or None,
                    headers=headers,
                    ssl=bool(svc.verify_certificate),
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


@dataclass(frozen=True, slots=True)
class DiscordWebhookTarget:
    """A `discord://[botname@]id/token[?thread=..&avatar_url=..]` URL (Apprise's syntax, parsed by
    Apprise's NotifyDiscord.parse_url). Posted natively to
    `{discord_api_base}/webhooks/{id}/{token}?wait=true`, or through Apprise's own NotifyDiscord
    pointed at the same API base when `via_apprise`."""

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
        """Parse with Apprise's own parser; raise ValueError (with no secret in it) if invalid."""
        from apprise.plugins.discord import NotifyDiscord

        parsed = NotifyDiscord.parse_url(url)
        if not parsed or parsed.get("schema") != "discord":
            raise ValueError(f"not a discord://webhook_id/webhook_token URL ({mask_url(url)})")
        webhook_id, token = parsed.get("webhook_id"), parsed.get("webhook_token")
        if not webhook_id or not token:
            raise ValueError(f"a discord:// URL needs a webhook id and token ({mask_url(url)})")
        return cls(
            target_id=target_id(url),
            display=f"discord://{webhook_id[:4]}.../***",
            url=url,
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
        payload: dict[str, Any] = {
            # Pings only for explicit user mentions; a summary saying @everyone pings nobody.
            "allowed_mentions": {"parse": ["users"]},
        }
        if self.embed:
            payload["content"] = message.title[: codes.CONTENT_MAX]
            embed = discord_embed(notice, message)
            del embed["title"]  # already the content line
            payload["embeds"] = [embed]
        else:
            payload["content"] = f"{message.title}\n{message.body}"[: codes.CONTENT_MAX]
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


@dataclass(frozen=True, slots=True)
class AppriseUrlTarget:
    """Any other Apprise URL (mailto://, slack://, ...), sent by Apprise in the executor."""

    target_id: str
    display: str
    url: str
    private: tuple[str, ...] = ()

    def secrets(self) -> list[str]:
        return list(self.private)

    def apprise_params(self) -> str:
        return self.url

    async def send(
        self, context: PluginContext, notice: Notice, message: RenderedNotice, timeout_s: float
    ) -> TargetResult:
        return await _send_in_executor(self, context, notice, message, timeout_s)


def dm_nonce(idempotency_key: str, user_id: int) -> str:
    """A Discord message nonce (at most 25 characters) for one notice to one user, the same on
    every attempt: with `enforce_nonce` Discord returns the first message instead of posting a
    duplicate. Per user, because Discord dedupes on (author, nonce), not per channel."""
    return hashlib.sha256(f"{idempotency_key}:{user_id}".encode()).hexdigest()[:DM_NONCE_CHARS]


def _accepts_nonce(func: Any) -> bool:
    try:
        parameters = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "nonce" or p.kind is p.VAR_KEYWORD for p in parameters)


@dataclass(frozen=True, slots=True)
class DMTarget:
    """A Discord user reached by DM through the running bot (`PluginContext.send_dm`).

    If `send_dm` takes a `nonce` keyword, it gets `dm_nonce(...)`: stable across retries and
    restarts, so the bot can send it with `enforce_nonce: true` and a resend after a crash between
    send and mark shows up once."""

    user_id: int
    embed: bool = True

    @property
    def target_id(self) -> str:
        return f"dm:{self.user_id}"

    @property
    def display(self) -> str:
        return f"dm:{self.user_id}"

    def secrets(self) -> list[str]:
        return []

    async def send(
        self, context: PluginContext, notice: Notice, message: RenderedNotice, timeout_s: float
    ) -> TargetResult:
        if context.send_dm is None:
            return _result(self, TargetStatus.FAILED, "no bot is running to send DMs (send_dm)")
        embed: dict[str, Any] | None = None
        if self.embed:
            content = message.title[: codes.CONTENT_MAX]
            embed = discord_embed(notice, message)
            del embed["title"]  # already the content line
        else:
            content = f"{message.title}\n{message.body}"[: codes.CONTENT_MAX]
        send_dm: Any = context.send_dm
        extra: dict[str, str] = {}
        if message.idempotency_key and _accepts_nonce(send_dm):
            extra["nonce"] = dm_nonce(message.idempotency_key, self.user_id)
        try:
            async with asyncio.timeout(timeout_s):
                await send_dm(self.user_id, content, embed, **extra)
        except TimeoutError:
            return _result(
                self, TargetStatus.TIMEOUT, f"no answer within {timeout_s:.1f}s (outcome unknown)"
            )
        except PermanentSendError as exc:
            return _result(self, TargetStatus.FAILED, exc.message, permanent=True)
        except Exception as exc:  # noqa: BLE001 - the bot's send_dm may raise anything; classify it
            status, code = getattr(exc, "status", None), getattr(exc, "code", None)
            permanent = code in _PERMANENT_DM_CODES or (
                isinstance(status, int) and 400 <= status < 500 and status not in {408, 429}
            )
            detail = f"{type(exc).__name__}: {exc}" + (f" (code {code})" if code else "")
            return _result(self, TargetStatus.FAILED, detail, permanent=permanent)
        return _result(self, TargetStatus.SENT)


def parse_apprise_url(url: str, *, native: bool = True, embed: bool = True) -> Target:
    """Resolve one Apprise URL to how it is sent. Raises ValueError (no secrets in the message)."""
    from apprise import Apprise, AppriseAsset
    from apprise.plugins.custom_json import NotifyJSON

    text = url.strip()
    scheme = text.partition("://")[0].lower()
    if scheme == "discord":
        return DiscordWebhookTarget.parse(text, embed=embed, via_apprise=not native)
    try:
        service = Apprise.instantiate(
            text, asset=AppriseAsset(service_timeout=0), suppress_exceptions=False
        )
    except Exception as exc:  # noqa: BLE001 - Apprise raises several types for a bad URL
        raise ValueError(f"Apprise cannot load {mask_url(text)} ({type(exc).__name__})") from None
    if service is None:
        raise ValueError(f"not a URL Apprise supports ({mask_url(text)})")
    # Apprise's privacy URL (secrets masked), without the query string of Apprise's defaults.
    privacy_url = str(service.url(privacy=True))  # type: ignore[no-untyped-call]
    display = redactor.redact(privacy_url.partition("?")[0])
    if native and isinstance(service, NotifyJSON) and service.method == "POST":
        return JsonTarget(target_id=target_id(text), display=display, service=service)
    return AppriseUrlTarget(
        target_id=target_id(text),
        display=display,
        url=text,
        private=tuple(apprise_secrets(service)),
    )


# ---------------------------------------------------------------------------------------------
# The executor path


class _UnfinishedCalls:
    """Executor sends that outlived their timeout, by (idempotency key, target id).

    Only touched from the event loop. Entries are removed when the next attempt takes them; entries
    nobody takes (the row died, the notifier was removed) are pruned an hour after they finish.
    """

    KEEP_S: Final = 3600.0

    def __init__(self) -> None:
        self._calls: dict[tuple[str, str], tuple[cf.Future[TargetResult], float]] = {}

    def take(self, key: tuple[str, str]) -> cf.Future[TargetResult] | None:
        entry = self._calls.pop(key, None)
        return entry[0] if entry else None

    def put(self, key: tuple[str, str], future: cf.Future[TargetResult]) -> None:
        now = time.monotonic()
        self._calls = {
            k: v for k, v in self._calls.items() if not v[0].done() or now - v[1] < self.KEEP_S
        }
        self._calls[key] = (future, now)


_UNFINISHED = _UnfinishedCalls()


def _apprise_send_blocking(
    target_display: str,
    target_ident: str,
    params: str | dict[str, Any],
    title: str,
    body: str,
    notify_type: str,
    discord_webhooks_url: str,
) -> TargetResult:
    """One send through a fresh Apprise object, in a worker thread.

    Fresh object: no 5.5 s throttle left over from the previous e-mail. `service_timeout=0` and no
    call timeout: Apprise runs the service inline in this thread rather than in its shared pool.
    """
    from apprise import Apprise, AppriseAsset, NotifyFormat, NotifyType
    from apprise.plugins.discord import NotifyDiscord

    def result(status: TargetStatus, errors: Iterable[str], **kw: Any) -> TargetResult:
        return TargetResult(
            target=target_display,
            target_id=target_ident,
            status=status,
            errors=tuple(redactor.redact(e) for e in errors),
            **kw,
        )

    asset = AppriseAsset(service_timeout=0, result_log_disk_size=0)
    try:
        service = Apprise.instantiate(copy.deepcopy(params), asset=asset, suppress_exceptions=False)
    except Exception as exc:  # noqa: BLE001 - Apprise raises several types for a bad URL
        return result(TargetStatus.FAILED, [f"Apprise cannot load it ({exc})"], permanent=True)
    if service is None:
        return result(TargetStatus.FAILED, ["Apprise cannot load it"], permanent=True)
    service.request_rate_per_sec = 0
    if isinstance(service, NotifyDiscord):
        service.notify_url = discord_webhooks_url
    apobj = Apprise(asset=asset)
    apobj.add(service)
    with apobj.notify(
        body=body, title=title, notify_type=NotifyType(notify_type), body_format=NotifyFormat.TEXT
    ) as outcome:
        per_url = list(outcome)
        if not per_url:
            errors = [entry.message for entry in outcome.logs()] or [
                f"Apprise dispatched nothing ({outcome.status.name})"
            ]
            return result(TargetStatus.FAILED, errors, permanent=True)
        service_result = per_url[0]
        errors = [
            f"{entry.level}: {entry.message}"
            for entry in service_result.logs()
            if entry.level in {"WARNING", "ERROR", "CRITICAL"}
        ]
        name = service_result.status.name
        if name == "SUCCESS":
            return result(TargetStatus.SENT, errors, attempts=len(service_result))
        if name == "TIMEOUT":
            return result(TargetStatus.TIMEOUT, errors, attempts=len(service_result))
        return result(
            TargetStatus.FAILED,
            errors or [f"Apprise reported {name}"],
            attempts=max(1, len(service_result)),
        )


async def _send_in_executor(
    target: DiscordWebhookTarget | AppriseUrlTarget,
    context: PluginContext,
    notice: Notice,
    message: RenderedNotice,
    timeout_s: float,
) -> TargetResult:
    key = (message.idempotency_key, target.target_id)
    previous = _UNFINISHED.take(key) if message.idempotency_key else None
    if previous is not None and previous.done() and not previous.cancelled():
        earlier = previous.result()
        if earlier.status is TargetStatus.SENT:
            # The attempt that timed out did deliver after all: nothing to resend.
            return earlier
        previous = None
    future = previous or context.executor.submit(
        _apprise_send_blocking,
        target.display,
        target.target_id,
        target.apprise_params(),
        message.title,
        message.body,
        notify_type_for(notice.event),
        f"{context.discord_api_base}/webhooks",
    )
    try:
        return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), timeout_s)
    except TimeoutError:
        if future.cancel():
            # Still queued behind other executor work: it never started, nothing is unknown.
            return _result(
                target, TargetStatus.TIMEOUT, f"executor busy; not started within {timeout_s:.1f}s"
            )
        if message.idempotency_key:
            _UNFINISHED.put(key, future)
        return _result(
            target,
            TargetStatus.TIMEOUT,
            f"Apprise did not finish within {timeout_s:.1f}s; it may still deliver (the next "
            "attempt waits for this one instead of sending again)",
        )


# ---------------------------------------------------------------------------------------------
# Many targets


async def _guarded(
    target: Target,
    context: PluginContext,
    notice: Notice,
    message: RenderedNotice,
    timeout_s: float,
) -> TargetResult:
    try:
        return await target.send(context, notice, message, timeout_s)
    except Exception as exc:  # noqa: BLE001 - one broken target must not sink the others
        return _result(target, TargetStatus.FAILED, f"{type(exc).__name__}: {exc}")


async def send_all(
    targets: Sequence[Target], context: PluginContext, notice: Notice, message: RenderedNotice
) -> list[TargetResult]:
    """Send to every target not already settled by an earlier attempt, concurrently."""
    todo = [t for t in targets if t.target_id not in message.settled_targets]
    timeout_s = target_timeout_s(message.timeout_s)
    return list(
        await asyncio.gather(*(_guarded(t, context, notice, message, timeout_s) for t in todo))
    )


def outcome_from_results(results: Sequence[TargetResult]) -> SendOutcome:
    """SENT when every target got it; otherwise raise, transient unless every failure is permanent."""
    failed = [r for r in results if r.status in (TargetStatus.FAILED, TargetStatus.TIMEOUT)]
    if not failed:
        return SendOutcome.sent(results)
    summary = "; ".join(
        f"{r.target}: {r.status.value}" + (f" ({' | '.join(r.errors)})" if r.errors else "")
        for r in failed
    )
    if all(r.permanent for r in failed):
        raise PermanentSendError(summary, targets=results)
    retry_after = [r.retry_after_s for r in failed if r.retry_after_s is not None]
    raise TransientSendError(
        summary, targets=results, retry_after_s=max(retry_after) if retry_after else None
    )


def check_apprise_url(url: str) -> str:
    """Pydantic validator for an option holding an Apprise URL: it must load, or the config
    error names the option (and shows the URL masked)."""
    parse_apprise_url(url)
    return url.strip()


# An option value that must be an Apprise URL Apprise can load.
AppriseUrl = Annotated[str, AfterValidator(check_apprise_url)]
