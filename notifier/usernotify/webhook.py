"""Users' webhook callbacks: checked against the SSRF guard, signed per Standard Webhooks.

A callback URL is typed by a stranger, so it is treated exactly like an ``/autointel`` URL: the
guard of `notifier.workflows.netguard` judges it when it is set (`check_callback_url`) and again
before every send, and every POST goes through the guard's connector, which judges the address
actually connected to (DNS rebinding: a name that was public at set time and points at 10.0.0.1
now). ``https://`` is required; plain ``http://`` only with ``autointel.allow_private_networks``,
the switch tests turn on to reach 127.0.0.1 (it also turns the address policy off).

Signing follows the Standard Webhooks specification, with the `standardwebhooks` library's own
`Webhook.sign`, so any receiver verifies with that library's `Webhook(secret).verify(body,
headers)`:

- ``webhook-id``: ``msg_<outbox idempotency key>``, the same on every retry of one notice, so a
  receiver drops a repeat it has seen (a timeout leaves the outcome unknown and is retried);
- ``webhook-timestamp``: this attempt's Unix seconds (receivers refuse ones older than 5 minutes:
  a captured request cannot be replayed later);
- ``webhook-signature``: ``v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`` with the user's
  secret (``whsec_`` + base64 of 32 random bytes, `new_secret`).

The body is JSON: event, workflow_id, command, status, summary, retrieval_command, finished_at;
``result`` only when the operator sets ``user_notifications.webhook_include_result``.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

import aiohttp
from standardwebhooks.webhooks import Webhook

from ..discord.text import inert
from ..errors import NotifierError
from ..events import Event, Notice
from ..fanout.transports.common import TRANSIENT_HTTP_STATUSES
from ..workflows.netguard import AddressRefused, NetGuard, Resolver, URLRefused

__all__ = [
    "SECRET_BYTES",
    "CallbackFailed",
    "CallbackSender",
    "callback_body",
    "callback_status",
    "check_callback_url",
    "new_secret",
    "signed_headers",
    "webhook_id",
]

SECRET_BYTES: Final = 32
SECRET_PREFIX: Final = "whsec_"
USER_AGENT: Final = "notifier-webhooks/0.1"
# What each user event says about the workflow: "stored" is a finished workflow whose result
# could not be shown on Discord and waits in the store; handoff and resumed are still running.
_STATUS: Final[Mapping[Event, str]] = {
    Event.COMPLETED: "completed",
    Event.FAILED: "failed",
    Event.PERSISTED: "stored",
    Event.HANDOFF: "running",
    Event.RESUMED: "running",
}
_FINISHED: Final = frozenset({Event.COMPLETED, Event.FAILED, Event.PERSISTED})


def new_secret() -> str:
    """A signing secret in the Standard Webhooks form: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def webhook_id(idempotency_key: str) -> str:
    """The ``webhook-id`` of one notice: stable across retries because the outbox key is."""
    return f"msg_{idempotency_key}"


def callback_status(event: Event) -> str:
    return _STATUS.get(event, event.value)


async def check_callback_url(
    url: str, *, allow_private: bool, resolver: Resolver | None = None
) -> str:
    """The URL normalised, or URLRefused in the guard's words (fit to show the user).

    ``https://`` only, unless `allow_private` (tests); then the SSRF guard of ``/autointel``:
    syntax, credentials, numeric host tricks, and every address the host resolves to."""
    text = url.strip()
    scheme = text.partition("://")[0].lower()
    if scheme != "https" and not (allow_private and scheme == "http"):
        raise URLRefused("the callback URL must start with https://")
    return str(await NetGuard(allow_private=allow_private, resolver=resolver).check(text))


def callback_body(notice: Notice, *, include_result: bool = False, result: Any = None) -> bytes:
    """The JSON posted for `notice`, as sent and signed (UTF-8, compact). The summary is outside
    text, made inert as everywhere else; `result` (the stored document's result) only when
    `include_result`."""
    finished = (
        datetime.fromtimestamp(notice.occurred_at, UTC).isoformat().replace("+00:00", "Z")
        if notice.event in _FINISHED
        else None
    )
    body: dict[str, Any] = {
        "event": notice.event.value,
        "workflow_id": notice.workflow_id,
        "command": notice.command,
        "status": callback_status(notice.event),
        "summary": inert(notice.summary or notice.error),
        "retrieval_command": notice.retrieval_command,
        "finished_at": finished,
    }
    if include_result:
        body["result"] = result
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=str).encode()


def signed_headers(secret: str, *, msg_id: str, body: bytes, now_s: float) -> dict[str, str]:
    """The three Standard Webhooks headers (and the content type) for one attempt."""
    timestamp = int(now_s)
    signature = Webhook(secret).sign(msg_id, datetime.fromtimestamp(timestamp, UTC), body)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
        "Content-Type": "application/json",
    }


class CallbackFailed(NotifierError):
    """A callback that did not get a 2xx. `permanent`: retrying cannot help (a 404, a refused
    address); otherwise the outbox retries (5xx, 408/425/429, connection errors, timeouts).
    `reason` is fit to show the callback's owner and never holds the URL's path or query."""

    def __init__(
        self,
        reason: str,
        *,
        permanent: bool,
        retry_after_s: float | None = None,
    ) -> None:
        self.reason = reason
        self.permanent = permanent
        self.retry_after_s = retry_after_s
        super().__init__(reason)


def _retry_after_s(headers: Mapping[str, str]) -> float | None:
    try:
        value = float(headers.get("Retry-After", ""))
    except ValueError:
        return None
    return value if value >= 0 else None


class CallbackSender:
    """POSTs callbacks through a session of its own whose connector is the guard's (so the
    connect-time check applies); no cookies, no proxies from the environment, no redirects
    followed (a redirect is a permanent failure: the callback must answer itself). Open and close
    it on the same loop; `close` releases the session."""

    def __init__(self, *, allow_private: bool, resolver: Resolver | None = None) -> None:
        self._allow_private = allow_private
        self._guard = NetGuard(allow_private=allow_private, resolver=resolver)
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=self._guard.connector(),
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
                headers={"User-Agent": USER_AGENT},
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], *, timeout_s: float
    ) -> int:
        """POST `body` to `url` (judged again now); the 2xx status, or CallbackFailed."""
        try:
            checked = await check_callback_url(
                url, allow_private=self._allow_private, resolver=self._guard.resolver
            )
        except URLRefused as exc:
            raise CallbackFailed(exc.reason, permanent=True) from None
        try:
            async with self._http().post(
                checked,
                data=body,
                headers=dict(headers),
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=timeout_s),
            ) as response:
                status = response.status
                retry_after_s = _retry_after_s(response.headers)
        except URLRefused as exc:  # the connector's resolver refused an address
            raise CallbackFailed(exc.reason, permanent=True) from None
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, AddressRefused):
                raise CallbackFailed(exc.os_error.reason, permanent=True) from None
            reason = exc.os_error.strerror or "connection failed"
            raise CallbackFailed(f"could not connect ({reason})", permanent=False) from None
        except TimeoutError:  # before ClientError: aiohttp's timeouts are both
            raise CallbackFailed(
                f"no answer within {timeout_s:g}s (outcome unknown)", permanent=False
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise CallbackFailed(
                f"the connection failed ({type(exc).__name__})", permanent=False
            ) from None
        if 200 <= status < 300:
            return status
        transient = status >= 500 or status in TRANSIENT_HTTP_STATUSES
        where = " (redirects are not followed)" if 300 <= status < 400 else ""
        raise CallbackFailed(
            f"the callback answered HTTP {status}{where}",
            permanent=not transient,
            retry_after_s=retry_after_s if transient else None,
        )
