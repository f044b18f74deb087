"""What every transport shares: the `Target` protocol, per-target results, sending to many targets.

Each target reports one `TargetResult`; `outcome_from_results` turns a list of them into a
`SendOutcome` or a Transient/PermanentSendError for the fanout. What is transient: connection errors,
timeouts, 408/425/429/5xx, and an Apprise FAILURE (Apprise cannot say why, and the outbox caps the
retries). Permanent: other 4xx, a URL Apprise cannot load, a user who cannot be DMed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final, Protocol

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
    "Target",
    "discord_embed",
    "mask_url",
    "notify_type_for",
    "outcome_from_results",
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

_NOTIFY_TYPE: Final[dict[Event, str]] = {
    Event.STARTED: "info",
    Event.PROGRESS: "info",
    Event.HANDOFF: "info",
    Event.SESSION_LOST: "warning",
    Event.COMPLETED: "success",
    Event.FAILED: "failure",
    Event.PERSISTED: "success",
    Event.INTERRUPTED: "warning",
    Event.RESUMED: "info",
    Event.STORAGE_ERROR: "failure",
}
_EMBED_COLOR: Final[dict[str, int]] = {
    "info": 0x3498DB,
    "success": 0x2ECC71,
    "warning": 0xF1C40F,
    "failure": 0xE74C3C,
}


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


def discord_embed(notice: Notice, message: RenderedNotice) -> dict[str, Any]:
    """One embed for a notice, inside Discord's limits."""
    return {
        "title": message.title[: codes.EMBED_TITLE_MAX],
        "description": message.body[: codes.EMBED_DESCRIPTION_MAX],
        "color": _EMBED_COLOR[notify_type_for(notice.event)],
        "footer": {"text": f"workflow {notice.workflow_id}"[: codes.EMBED_FOOTER_MAX]},
        "timestamp": datetime.fromtimestamp(notice.occurred_at, UTC).isoformat(),
    }


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
