"""Apprise for the long tail: every URL not sent natively (mailto://, slack://, ...).

Every Apprise plugin's `send()` is blocking, so each send runs in `PluginContext.executor` with a
fresh Apprise object (no 5.5 s e-mail throttle) and `service_timeout=0`, which keeps the call inline
in our worker thread instead of Apprise's shared pool. An Apprise FAILURE is transient (Apprise
cannot say why, and the outbox caps the retries); a URL Apprise cannot load is permanent.

A timeout on an executor send means "unknown": the worker thread keeps running and may still deliver.
Its future is kept (keyed by idempotency key and target) and the next attempt first waits for that
same call instead of starting a second one, so a slow SMTP server does not receive the mail twice.

Apprise's Discord plugin (2.3) copies every ``@word``, ``@123`` and ``<@&id>`` of a body into the
message's content and sends the list under ``allow_mentions`` (sic), which Discord ignores, so
without help every one of them pings. The notice's outside text is inert before it gets here
(`RenderedNotice.render`); on top of that, each post the plugin makes carries a real
``allowed_mentions`` (nobody, or the requester where the operator's template names them) in place
of the misspelt key (`_with_allowed_mentions`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import copy
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, Protocol

from ...discord import codes
from ...discord.text import allowed_mentions, user_mention
from ...events import Notice
from ...logs import redactor
from ..plugin import PluginContext, RenderedNotice, TargetResult, TargetStatus
from .common import Target, _result, notify_type_for

__all__ = ["AppriseUrlTarget", "apprise_secrets"]


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


# ---------------------------------------------------------------------------------------------
# The executor path


class _ExecutorTarget(Target, Protocol):
    """A target Apprise can send in the executor (`AppriseUrlTarget`, `DiscordWebhookTarget` with
    `via_apprise`): `apprise_params` is what `Apprise.instantiate` loads."""

    def apprise_params(self) -> str | dict[str, Any]: ...


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


def _with_allowed_mentions(service: Any, requester_id: int) -> None:
    """Make every post of this NotifyDiscord instance say Discord's ``allowed_mentions``.

    Apprise builds the payload inside `send()` and posts it with its `_send(payload, ...)`; there
    is no public hook in between, so this instance's `_send` is wrapped (Apprise's own class is
    left alone). The misspelt ``allow_mentions`` is dropped; the requester may be pinged only when
    the content names them, which outside text cannot do (it is inert).
    """
    post = getattr(service, "_send", None)
    if not callable(post):  # an Apprise without it: the inert text is then the only guard
        return
    mention = user_mention(requester_id)

    def send_with_allowed_mentions(payload: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        payload = {k: v for k, v in payload.items() if k != "allow_mentions"}
        content = payload.get("content")
        named = isinstance(content, str) and mention in content
        payload["allowed_mentions"] = allowed_mentions(requester_id if named else None)
        return post(payload, *args, **kwargs)

    service._send = send_with_allowed_mentions


def _apprise_send_blocking(
    target_display: str,
    target_ident: str,
    params: str | dict[str, Any],
    title: str,
    body: str,
    notify_type: str,
    discord_webhooks_url: str,
    requester_id: int,
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
        _with_allowed_mentions(service, requester_id)
        # Apprise sends the title as the embed's title uncut: past Discord's 256 characters the
        # post is refused (50035) on every attempt.
        title = title[: codes.EMBED_TITLE_MAX]
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
    target: _ExecutorTarget,
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
        notice.user_id,
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
