"""Every private nextcord name this project touches, each with why, checked once at import.

nextcord's public API cannot do seven things the bot needs, so this module reaches past it, and
nowhere else does (a test fails when nextcord is imported for such a name outside this module's
functions). At import it checks that each name still exists; a nextcord release that renames one
stops the bot at start with one line naming the installed version and the tested range
(`TESTED_NEXTCORD`, the same range `pyproject.toml` pins), instead of breaking every reply later.

What is private, and why it is used:

- ``nextcord.http.Route`` and its class attribute ``BASE``: the REST base of every request (bot
  routes and webhooks). ``discord.api_base`` (a proxy such as nirn-proxy, or the emulator) is set
  there, process-wide; nextcord has no per-client option.
- ``HTTPClient.request(route, auth=None)``: an interaction-webhook call must carry no bot token
  (the token in the path is the credential); the public `Webhook` API would pin the aiohttp session
  of the moment, which is what raises "Session is closed" after `HTTPClient.recreate()`.
- ``HTTPClient._HTTPClient__session``: the client's *current* aiohttp session. nextcord's
  `Interaction.__init__` copies it into ``Interaction._session`` once, so after a reconnect the
  interaction's initial response fails with "Session is closed"; `TrackedInteraction` reads the
  live one instead.
- ``HTTPClient.recreate()``: undocumented; it replaces a closed session before a retried call.
- ``Client._connection``: the connection state `Webhook.from_state` needs (tests and tools that
  rebuild an interaction webhook, as FIELD-NOTES describes).
- ``DiscordWebSocket._keep_alive``, its ``_last_ack``, and ``ShardInfo._parent``: when the gateway
  last acknowledged a heartbeat, for ``/healthz``. The public ``Client.latency`` is the time a
  heartbeat took, not how long ago the last one was answered.
- ``HTTPClient.recreate()`` as the one place a session is made (it assigns ``__session``), and
  ``HTTPClient.request`` sending each attempt with ``__session.request(...)`` once its own
  limiters let it through: `before_bot_requests` wraps the ``request`` method of every session
  the client makes, so that each bot-token attempt, retries included, waits for a budget shared
  by every process of the bot (`notifier.discord.rest_budget`) right before it goes out.
  nextcord's own limiter counts one process only (``max_global_requests``); it has no hook.

aiohttp's ``RuntimeError("Session is closed")`` has no type of its own either: `is_session_closed`
is the one place its text is matched.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import aiohttp
import nextcord
import nextcord.gateway
import nextcord.http

from ..errors import NextcordIncompatible
from . import codes

__all__ = [
    "TESTED_NEXTCORD",
    "Route",
    "TrackedInteraction",
    "api_base",
    "before_bot_requests",
    "connection_state",
    "heartbeat_ack_age_s",
    "interaction_session",
    "is_session_closed",
    "live_session",
    "recreate_session",
    "request",
    "set_api_base",
]

# The nextcord releases this module's names were checked against; pyproject.toml pins the same.
TESTED_NEXTCORD: Final = ">=3.2,<3.3"

_SESSION_CLOSED_TEXT: Final = "Session is closed"


def _assigns(function: object, attribute: str) -> bool:
    """Whether `function`'s code stores or reads `attribute` (an instance attribute set in
    ``__init__`` has no class-level trace to look for)."""
    code = getattr(function, "__code__", None)
    return code is not None and attribute in code.co_names


def _accepts_keyword(function: object, name: str) -> bool:
    try:
        return name in inspect.signature(function).parameters  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


# (what it is, how to tell it is there). Each row is one private name used below.
_REQUIRED: Final[tuple[tuple[str, Callable[[], bool]], ...]] = (
    (
        "nextcord.http.Route.BASE",
        lambda: isinstance(getattr(getattr(nextcord.http, "Route", None), "BASE", None), str),
    ),
    (
        "HTTPClient.request(auth=...)",
        lambda: _accepts_keyword(getattr(nextcord.http.HTTPClient, "request", None), "auth"),
    ),
    (
        "HTTPClient.__session",
        lambda: _assigns(nextcord.http.HTTPClient.__init__, "_HTTPClient__session"),
    ),
    (
        "HTTPClient.recreate()",
        lambda: callable(getattr(nextcord.http.HTTPClient, "recreate", None)),
    ),
    ("Interaction._session", lambda: "_session" in getattr(nextcord.Interaction, "__slots__", ())),
    ("Client._connection", lambda: _assigns(nextcord.Client.__init__, "_connection")),
    (
        "DiscordWebSocket._keep_alive",
        lambda: _assigns(nextcord.gateway.DiscordWebSocket.__init__, "_keep_alive"),
    ),
    (
        "KeepAliveHandler._last_ack",
        lambda: _assigns(nextcord.gateway.KeepAliveHandler.__init__, "_last_ack"),
    ),
    ("ShardInfo._parent", lambda: "_parent" in getattr(nextcord.ShardInfo, "__slots__", ())),
    # The two rows below pass when the name they look into is missing: the rows above name it.
    (
        "HTTPClient.recreate() making the session",
        lambda: (
            (recreate := getattr(nextcord.http.HTTPClient, "recreate", None)) is None
            or _assigns(recreate, "_HTTPClient__session")
        ),
    ),
    (
        "HTTPClient.request sending through __session.request",
        lambda: (
            not _accepts_keyword(
                request := getattr(nextcord.http.HTTPClient, "request", None), "auth"
            )
            or all(_assigns(request, n) for n in ("recreate", "_HTTPClient__session", "request"))
        ),
    ),
)


def _check() -> None:
    missing = [name for name, present in _REQUIRED if not present()]
    if missing:
        version = getattr(nextcord, "__version__", "of unknown version")
        raise NextcordIncompatible(
            f"nextcord {version} is installed, but notifier is tested with nextcord "
            f"{TESTED_NEXTCORD} and needs {', '.join(missing)}, which this version lacks; "
            f"install a tested release: pip install 'nextcord{TESTED_NEXTCORD}'"
        )


_check()

Route = nextcord.http.Route


def api_base() -> str:
    """The REST base every request goes to."""
    base: str = Route.BASE
    return base


def set_api_base(url: str) -> None:
    """Send every REST request of this process to `url` (``discord.api_base``)."""
    Route.BASE = url


async def request(client: nextcord.Client, route: Any, *, auth: bool, **kwargs: Any) -> Any:
    """One REST call through the client's rate limiter and current session; ``auth=False`` sends
    no bot token (interaction webhooks)."""
    if not auth:
        kwargs["auth"] = None
    return await client.http.request(route, **kwargs)


def before_bot_requests(
    client: nextcord.Client, wait: Callable[[], Awaitable[object]]
) -> Callable[[], None]:
    """Make every request `client` sends with an Authorization header (its bot token) await
    `wait()` right before it goes out: after nextcord's own limiters let it through, and once per
    attempt, nextcord's retries after a 429 or a 5xx included. Interaction webhooks carry no
    Authorization header and do not wait. Returns the function that undoes it.

    Every session nextcord makes comes from ``HTTPClient.recreate()`` (``request`` calls it before
    each call), so wrapping ``recreate`` reaches the sessions made after a close too.
    """
    http = client.http
    if "recreate" in vars(http):
        raise RuntimeError("this client's REST requests already wait for something")
    make_session = http.recreate

    async def recreate() -> None:
        await make_session()
        _send_after(live_session(client), wait)

    http.recreate = recreate  # type: ignore[method-assign]
    if getattr(http, "_HTTPClient__session", None):  # logged in already: the session of now
        _send_after(live_session(client), wait)

    def remove() -> None:
        vars(http).pop("recreate", None)
        session = getattr(http, "_HTTPClient__session", None)
        if session:
            vars(session).pop("request", None)

    return remove


def _send_after(session: aiohttp.ClientSession, wait: Callable[[], Awaitable[object]]) -> None:
    """Wrap `session.request` (once) so that a request with an Authorization header awaits
    `wait()` when nextcord enters it (``async with session.request(...)``), before it is sent."""
    if "request" in vars(session):
        return
    send = session.request

    def request(method: str, url: Any, **kwargs: Any) -> Any:
        if "Authorization" not in (kwargs.get("headers") or {}):
            return send(method, url, **kwargs)
        return _SentAfterWaiting(wait, lambda: send(method, url, **kwargs))

    session.request = request  # type: ignore[method-assign]


class _SentAfterWaiting:
    """``async with``: await `wait()`, then enter the request `send()` makes."""

    def __init__(self, wait: Callable[[], Awaitable[object]], send: Callable[[], Any]) -> None:
        self._wait = wait
        self._send = send
        self._request: Any = None

    async def __aenter__(self) -> aiohttp.ClientResponse:
        await self._wait()
        self._request = self._send()
        response: aiohttp.ClientResponse = await self._request.__aenter__()
        return response

    async def __aexit__(self, *exc_info: object) -> None:
        await self._request.__aexit__(*exc_info)


def live_session(client: nextcord.Client) -> aiohttp.ClientSession:
    """The aiohttp session the client uses now (a reconnect may have replaced it)."""
    session: aiohttp.ClientSession = client.http._HTTPClient__session  # type: ignore[attr-defined]
    return session


async def recreate_session(client: nextcord.Client) -> None:
    """Replace the client's HTTP session if it is closed (a no-op otherwise)."""
    await client.http.recreate()


def is_session_closed(exc: BaseException) -> bool:
    """Whether `exc` is aiohttp's "Session is closed" (a closed session was used)."""
    return isinstance(exc, RuntimeError) and _SESSION_CLOSED_TEXT in str(exc)


def connection_state(client: nextcord.Client) -> Any:
    """The client's connection state, as `nextcord.Webhook.from_state` wants it."""
    return client._connection


def heartbeat_ack_age_s(client: nextcord.Client) -> float | None:
    """Seconds since the gateway last acknowledged a heartbeat (the oldest shard's, for an
    AutoShardedClient); None while a connection has no acknowledged heartbeat (before the first
    ACK, or while it is down)."""
    if isinstance(client, nextcord.AutoShardedClient):
        sockets = [info._parent.ws for info in client.shards.values()]
    else:
        sockets = [client.ws]
    ages: list[float] = []
    now = time.perf_counter()  # nextcord's heartbeat clock
    for ws in sockets:
        keep_alive = getattr(ws, "_keep_alive", None) if ws is not None else None
        if keep_alive is None or not math.isfinite(keep_alive.latency):
            return None  # latency stays infinite until the first ACK of this connection
        ages.append(max(0.0, now - keep_alive._last_ack))
    return max(ages) if ages else None


def interaction_session(interaction: nextcord.Interaction) -> aiohttp.ClientSession:
    """The session an interaction makes its calls with (the live one for a TrackedInteraction)."""
    session: aiohttp.ClientSession = interaction._session
    return session


class TrackedInteraction(nextcord.Interaction):
    """The interaction class the bot asks nextcord for (`Client.get_interaction(cls=...)`).

    It keeps what nextcord drops, the per-file attachment size limit Discord sends with every
    interaction, and it rides the client's current HTTP session: nextcord pins an Interaction to
    the session it was created with, so once that session is closed (and `HTTPClient.recreate()`
    makes a new one) its initial response fails with "Session is closed" although the token is
    fine.
    """

    __slots__ = ("attachment_size_limit",)

    @property
    def _session(self) -> aiohttp.ClientSession:
        return live_session(self.client)

    @_session.setter
    def _session(self, value: aiohttp.ClientSession) -> None:
        """nextcord's __init__ stores the session of the moment; the getter reads the live one."""

    def __init__(self, *, data: Any, state: Any) -> None:
        super().__init__(data=data, state=state)
        limit = data.get("attachment_size_limit")
        self.attachment_size_limit: int = (
            int(limit) if limit else codes.ATTACHMENT_SIZE_DEFAULT_BYTES
        )
