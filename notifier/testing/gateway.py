"""The gateway websocket: HELLO, IDENTIFY/READY, heartbeats, RESUME and dispatch.

Sessions outlive their connection: events dispatched while the bot is
disconnected are buffered with their sequence numbers and replayed on
RESUME, like Discord does, so a test can drop the socket in the middle of
a workflow and check that nothing is lost. Frames are sent as plain JSON
text (nextcord only inflates binary frames).

Shards. A session that IDENTIFYs with ``shard: [shard_id, shard_count]``
holds that shard: READY echoes it, READY's guild list and the GUILD_CREATEs
that follow hold only its guilds, and every event about guild ``G`` (its
``guild_id``, or ``id`` for GUILD_CREATE/UPDATE/DELETE; INTERACTION_CREATE
included) goes only to the session whose shard is ``(G >> 22) % shard_count``;
events with no guild (DMs) go to shard 0, as on Discord. A session that did
not send ``shard`` receives everything, which is what every single-process
test relies on. :class:`ShardingConfig` (``DiscordEmulator.sharding``) sets
what ``/gateway/bot`` announces; with ``shards > 1`` an IDENTIFY without
``shard`` is closed with 4011 (sharding required) and one whose count differs
or whose id is out of range with 4010 (invalid shard), and IDENTIFYs are rate
limited per bucket ``shard_id % max_concurrency``: one per
``identify_window_s`` (Discord: 5 s) in each bucket; one too early is answered
with op 9 INVALID_SESSION ``false`` (what Discord documents), which makes
nextcord close, wait in ``before_identify_hook`` and identify again. The
emulator's own rule on top of Discord's: an IDENTIFY for a shard that a session
with a live connection already holds is closed with 4010 and the reason
"shard N of M is already held": on Discord both sessions would run and every
event of those guilds would be handled twice, so two processes configured with
the same shard fail loudly here instead (nextcord does not reconnect after
4010). Accepted IDENTIFYs per bucket (``identify_times``) and refused ones
(``identify_refusals``) are recorded so tests can check the spacing.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from aiohttp import WSMsgType, web

from . import payloads
from .clock import Clock
from .config import EmulatorConfig
from .model import JsonObject
from .waiting import ChangeFeed
from .world import World

DISPATCH = 0
HEARTBEAT = 1
IDENTIFY = 2
RESUME = 6
RECONNECT = 7
REQUEST_GUILD_MEMBERS = 8
INVALID_SESSION = 9
HELLO = 10
HEARTBEAT_ACK = 11

GUILD_MESSAGES = 1 << 9
DIRECT_MESSAGES = 1 << 12

# Discord's gateway close codes for a shard it will not serve (nextcord never
# reconnects after either).
INVALID_SHARD: Final = 4010
SHARDING_REQUIRED: Final = 4011

# Discord: one IDENTIFY per bucket per 5 s; 1000 session starts per 24 h.
DISCORD_IDENTIFY_WINDOW_S: Final = 5.0
SESSION_START_RESET_MS: Final = 86_400_000
_MAX_CLOSE_REASON_BYTES = 123

_REPLAY_BUFFER = 5000

ShardKey = tuple[int, int]
"""``(shard_id, shard_count)`` as sent in IDENTIFY."""


@dataclass
class ShardingConfig:
    """What the emulator tells bots about shards, and the IDENTIFY rules it enforces.

    Mutable and read at the moment a rule is checked, like ``EmulatorConfig``.

    Attributes:
        shards: ``shards`` in ``GET /gateway/bot``; above 1 an IDENTIFY must
            carry ``shard: [id, shards]`` (4011 without it, 4010 otherwise).
        max_concurrency: ``session_start_limit.max_concurrency``; IDENTIFY
            buckets are ``shard_id % max_concurrency``.
        identify_window_s: one IDENTIFY per bucket per this many seconds
            (Discord: 5); tests shrink it.
        limit_identify: enforce that window; ``None`` (default) enforces it
            only when ``shards > 1``, so unsharded tests may reconnect at will.
        session_start_total: ``session_start_limit.total`` (reported, not
            enforced).
    """

    shards: int = 1
    max_concurrency: int = 1
    identify_window_s: float = DISCORD_IDENTIFY_WINDOW_S
    limit_identify: bool | None = None
    session_start_total: int = 1000

    def __post_init__(self) -> None:
        if self.shards < 1:
            raise ValueError(f"sharding.shards must be at least 1, got {self.shards}")
        if self.max_concurrency < 1:
            raise ValueError(
                f"sharding.max_concurrency must be at least 1, got {self.max_concurrency}"
            )
        if self.identify_window_s < 0:
            raise ValueError(
                f"sharding.identify_window_s must not be negative, got {self.identify_window_s}"
            )

    @property
    def sharded(self) -> bool:
        """Whether sharding is required of every IDENTIFY."""
        return self.shards > 1

    @property
    def identify_limited(self) -> bool:
        return self.sharded if self.limit_identify is None else self.limit_identify

    def bucket(self, shard_id: int) -> int:
        """Discord's rate-limit key of a shard's IDENTIFY."""
        return shard_id % self.max_concurrency


def shard_of(guild_id: int | None, shard_count: int) -> int:
    """The shard that receives events of ``guild_id`` (Discord's rule; no guild: shard 0)."""
    return 0 if guild_id is None else (guild_id >> 22) % shard_count


_GUILD_ITSELF_EVENTS = frozenset({"GUILD_CREATE", "GUILD_UPDATE", "GUILD_DELETE"})


def event_guild_id(event: str, data: JsonObject) -> int | None:
    """The guild an event is about (routes it to a shard); ``None`` for DMs and the like."""
    raw = data.get("id") if event in _GUILD_ITSELF_EVENTS else data.get("guild_id")
    return int(raw) if raw is not None else None


def _shard_key(raw: object) -> ShardKey | None:
    """``[shard_id, shard_count]`` as a key, or ``None`` if it is not a valid pair."""
    if not isinstance(raw, list | tuple) or len(raw) != 2:
        return None
    shard_id, count = raw
    if isinstance(shard_id, bool) or isinstance(count, bool):
        return None
    if not isinstance(shard_id, int) or not isinstance(count, int):
        return None
    return (shard_id, count) if 0 <= shard_id < count else None


def _close_message(reason: str) -> bytes:
    """A close frame's reason (at most 123 bytes)."""
    return reason.encode()[:_MAX_CLOSE_REASON_BYTES]


@dataclass(frozen=True)
class IdentifyRefusal:
    """An IDENTIFY the emulator refused.

    ``close_code`` is the gateway close code (4010, 4011), or ``None`` when the
    answer was op 9 INVALID_SESSION (too early for its bucket); ``at`` is on the
    emulator's clock.
    """

    shard: ShardKey | None
    at: float
    close_code: int | None
    reason: str


@dataclass
class GatewayConnection:
    """One websocket; ``mode`` says whether it identified or resumed."""

    id: int
    path: str
    opened_at: float
    ws: web.WebSocketResponse = field(repr=False)
    transport: asyncio.BaseTransport | None = field(default=None, repr=False)
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)
    session_id: str | None = None
    mode: Literal["identify", "resume"] | None = None
    closed_at: float | None = None
    close_code: int | None = None
    closed_by_server: bool = False
    close_reason: str | None = None
    shard: ShardKey | None = None
    heartbeats: int = 0

    @property
    def open(self) -> bool:
        return self.closed_at is None


@dataclass
class GatewaySession:
    """A resumable session: sequence counter and the frames sent so far."""

    session_id: str
    intents: int
    seq: int = 0
    sent: deque[JsonObject] = field(default_factory=lambda: deque(maxlen=_REPLAY_BUFFER))
    connection: GatewayConnection | None = None
    shard: ShardKey | None = None

    @property
    def live(self) -> bool:
        """Whether a websocket is attached and open."""
        return self.connection is not None and self.connection.open

    def receives(self, guild_id: int | None) -> bool:
        """Whether events of ``guild_id`` (``None``: no guild) are this session's."""
        if self.shard is None:
            return True
        shard_id, shard_count = self.shard
        return shard_of(guild_id, shard_count) == shard_id


def _frame(op: int, data: Any, seq: int | None = None, event: str | None = None) -> JsonObject:
    return {"op": op, "d": data, "s": seq, "t": event}


class GatewayServer:
    """Serves ``/gateway`` and ``/resume-gateway`` and tracks sessions."""

    def __init__(
        self,
        *,
        world: World,
        config: EmulatorConfig,
        clock: Clock,
        feed: ChangeFeed,
        base_url: Callable[[], str],
    ) -> None:
        self._world = world
        self._config = config
        self._clock = clock
        self._feed = feed
        self._base_url = base_url
        self.connections: list[GatewayConnection] = []
        self.sessions: dict[str, GatewaySession] = {}
        self.sharding = ShardingConfig()
        self.identify_count = 0
        self.resume_count = 0
        self.ready_count = 0
        self.identify_times: dict[int, list[float]] = {}
        self.identify_refusals: list[IdentifyRefusal] = []
        self._session_starts_since: float | None = None
        self._session_starts = 0

    @property
    def url(self) -> str:
        return self._base_url().replace("http", "ws", 1) + "/gateway"

    @property
    def resume_url(self) -> str:
        return self._base_url().replace("http", "ws", 1) + "/resume-gateway"

    @property
    def live_connections(self) -> list[GatewayConnection]:
        return [c for c in self.connections if c.open]

    @property
    def connected_shards(self) -> list[int]:
        """Shard ids held by a session with an open websocket, ascending."""
        return sorted(s.shard[0] for s in self.sessions.values() if s.live and s.shard)

    def sessions_for_guild(self, guild_id: int | None) -> list[GatewaySession]:
        """Sessions (connected or resumable) that receive events of ``guild_id``."""
        return [s for s in self.sessions.values() if s.receives(guild_id)]

    def session_start_limit(self) -> JsonObject:
        """``session_start_limit`` of ``GET /gateway/bot``."""
        total = self.sharding.session_start_total
        used, reset_after_ms = 0, SESSION_START_RESET_MS
        if self._session_starts_since is not None:
            elapsed_ms = (self._clock.now() - self._session_starts_since) * 1000
            if elapsed_ms < SESSION_START_RESET_MS:
                used = self._session_starts
                reset_after_ms = int(SESSION_START_RESET_MS - elapsed_ms)
        return {
            "total": total,
            "remaining": max(0, total - used),
            "reset_after": reset_after_ms,
            "max_concurrency": self.sharding.max_concurrency,
        }

    # -- websocket handler ---------------------------------------------
    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(timeout=self._config.gateway_close_timeout_s, max_msg_size=0)
        await ws.prepare(request)
        conn = GatewayConnection(
            id=len(self.connections) + 1,
            path=request.path,
            opened_at=self._clock.now(),
            ws=ws,
            transport=request.transport,
        )
        self.connections.append(conn)
        self._feed.notify()
        try:
            hello = {"heartbeat_interval": self._config.heartbeat_interval_ms}
            await self._send(conn, _frame(HELLO, hello))
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    await self._on_text(conn, msg.data)
        finally:
            self._on_closed(conn)
        return ws

    def _on_closed(self, conn: GatewayConnection) -> None:
        """Detach the socket; a clean client close (1000/1001) ends the session."""
        conn.closed_at = self._clock.now()
        conn.close_code = conn.ws.close_code
        clean = not conn.closed_by_server and conn.close_code in (1000, 1001)
        for session in list(self.sessions.values()):
            if session.connection is conn:
                session.connection = None
            if clean and session.session_id == conn.session_id:
                del self.sessions[session.session_id]
        self._feed.notify()

    async def _on_text(self, conn: GatewayConnection, text: str) -> None:
        try:
            message = json.loads(text)
            op = int(message["op"])
        except (ValueError, KeyError, TypeError):
            conn.closed_by_server = True
            await conn.ws.close(code=4002, message=b"Error while decoding payload.")
            return
        data = message.get("d")
        if op == HEARTBEAT:
            conn.heartbeats += 1
            await self._send(conn, _frame(HEARTBEAT_ACK, None))
        elif op == IDENTIFY:
            await self._identify(conn, data or {})
        elif op == RESUME:
            await self._resume(conn, data or {})
        elif op == REQUEST_GUILD_MEMBERS:
            await self._members_chunk(conn, data or {})
        elif op in (3, 4):
            return
        else:
            conn.closed_by_server = True
            await conn.ws.close(code=4001, message=b"Unknown opcode.")

    async def _identify(self, conn: GatewayConnection, data: JsonObject) -> None:
        if conn.session_id is not None:
            conn.closed_by_server = True
            await conn.ws.close(code=4005, message=b"Already authenticated.")
            return
        if data.get("token") != self._world.bot_token:
            conn.closed_by_server = True
            await conn.ws.close(code=4004, message=b"Authentication failed.")
            return
        raw_shard = data.get("shard")
        shard = _shard_key(raw_shard)
        refusal = self._shard_refusal(raw_shard, shard)
        if refusal is not None:
            await self._refuse(conn, shard, *refusal)
            return
        now = self._clock.now()
        bucket = self.sharding.bucket(shard[0] if shard else 0)
        wait_s = self._identify_wait_s(bucket, now)
        if wait_s > 0:
            # Discord answers an IDENTIFY over max_concurrency with op 9 Invalid
            # Session (d=false) and leaves the socket to the client; so does the
            # emulator. nextcord then closes, runs before_identify_hook and identifies
            # on a new socket.
            reason = f"IDENTIFY bucket {bucket} is busy for {wait_s:.3f}s more"
            self.identify_refusals.append(IdentifyRefusal(shard, now, None, reason))
            self._feed.notify()
            await self._send(conn, _frame(INVALID_SESSION, False))
            return
        # No await from the checks above to here: two sockets identifying at once
        # cannot both take one shard or one bucket's turn.
        self._forget_stale_sessions(shard)
        session = GatewaySession(
            session_id=secrets.token_hex(16), intents=int(data["intents"]), shard=shard
        )
        self.sessions[session.session_id] = session
        session.connection = conn
        conn.session_id = session.session_id
        conn.mode = "identify"
        conn.shard = shard
        self.identify_count += 1
        self.identify_times.setdefault(bucket, []).append(now)
        self._count_session_start(now)
        await self._emit(session, "READY", self._ready_payload(session, data))
        for guild in self._world.guilds.values():
            if self._world.bot.id in guild.members and session.receives(guild.id):
                await self._emit(session, "GUILD_CREATE", payloads.guild(self._world, guild))
        self.ready_count += 1
        self._feed.notify()

    def _shard_refusal(self, raw: object, shard: ShardKey | None) -> tuple[int, str] | None:
        """Close code and reason if IDENTIFY's ``shard`` is not one this gateway serves
        (invalid, a count other than ``sharding.shards``, missing while sharded, or
        held by another session with a live connection)."""
        expected = self.sharding.shards
        if raw is None:
            if self.sharding.sharded:
                return (
                    SHARDING_REQUIRED,
                    f"Sharding required: identify with shard [id, {expected}].",
                )
            return None
        if shard is None:
            return (
                INVALID_SHARD,
                f"Invalid shard {str(raw)[:40]}: need [id, count], 0 <= id < count.",
            )
        shard_id, count = shard
        if self.sharding.sharded and count != expected:
            return (
                INVALID_SHARD,
                f"Invalid shard: shard_count {count}, this gateway has {expected}.",
            )
        holder = next((s for s in self.sessions.values() if s.live and s.shard == shard), None)
        if holder is not None and holder.connection is not None:
            return INVALID_SHARD, (
                f"Invalid shard: shard {shard_id} of {count} is already held by a live session "
                f"(connection {holder.connection.id})."
            )
        return None

    async def _refuse(
        self, conn: GatewayConnection, shard: ShardKey | None, code: int, reason: str
    ) -> None:
        self.identify_refusals.append(IdentifyRefusal(shard, self._clock.now(), code, reason))
        conn.shard = shard
        conn.close_reason = reason
        conn.closed_by_server = True
        self._feed.notify()
        await conn.ws.close(code=code, message=_close_message(reason))

    def _identify_wait_s(self, bucket: int, now: float) -> float:
        """How long this bucket must still wait before its next IDENTIFY (0: go)."""
        times = self.identify_times.get(bucket)
        if not self.sharding.identify_limited or not times:
            return 0.0
        return max(0.0, times[-1] + self.sharding.identify_window_s - now)

    def _forget_stale_sessions(self, shard: ShardKey | None) -> None:
        """A new IDENTIFY ends the disconnected sessions it replaces.

        Without ``shard`` that is every disconnected session (as before shards);
        with one, only those of the same shard (and unsharded ones), so another
        shard's session stays resumable.
        """
        for stale in [s for s in self.sessions.values() if s.connection is None]:
            if shard is None or stale.shard is None or stale.shard == shard:
                del self.sessions[stale.session_id]

    def _count_session_start(self, now: float) -> None:
        since = self._session_starts_since
        if since is None or (now - since) * 1000 >= SESSION_START_RESET_MS:
            self._session_starts_since, self._session_starts = now, 0
        self._session_starts += 1

    def _ready_payload(self, session: GatewaySession, identify: JsonObject) -> JsonObject:
        bot = self._world.bot
        ready: JsonObject = {
            "v": 10,
            "user": {**payloads.user(bot), "verified": True, "mfa_enabled": False},
            "guilds": [
                {"id": str(g.id), "unavailable": True}
                for g in self._world.guilds.values()
                if bot.id in g.members and session.receives(g.id)
            ],
            "session_id": session.session_id,
            "session_type": "normal",
            "resume_gateway_url": self.resume_url,
            "application": {"id": str(self._world.application_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "user_settings": {},
            "_trace": ["notifier-emulator"],
        }
        if "shard" in identify:
            ready["shard"] = identify["shard"]
        return ready

    async def _resume(self, conn: GatewayConnection, data: JsonObject) -> None:
        session = self.sessions.get(str(data.get("session_id")))
        client_seq = data.get("seq") or 0
        buffered = [f["s"] for f in session.sent] if session else []
        too_old = bool(buffered) and client_seq + 1 < buffered[0]
        if session is None or data.get("token") != self._world.bot_token or too_old:
            await self._send(conn, _frame(INVALID_SESSION, False))
            return
        conn.session_id = session.session_id
        conn.mode = "resume"
        conn.shard = session.shard
        async with conn.send_lock:
            next_seq = int(client_seq) + 1
            try:
                while pending := [f for f in session.sent if f["s"] >= next_seq]:
                    for frame in pending:
                        await conn.ws.send_str(json.dumps(frame))
                        next_seq = int(frame["s"]) + 1
            except (ConnectionResetError, RuntimeError):
                return
            session.connection = conn
        self.resume_count += 1
        await self._emit(session, "RESUMED", {"_trace": ["notifier-emulator"]})
        self._feed.notify()

    async def _members_chunk(self, conn: GatewayConnection, data: JsonObject) -> None:
        session = self.sessions.get(conn.session_id or "")
        guild = self._world.guilds.get(int(data.get("guild_id", 0)))
        if session is None or guild is None:
            return
        chunk = {
            "guild_id": str(guild.id),
            "members": [payloads.member(self._world, m) for m in guild.members.values()],
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [],
            "nonce": data.get("nonce"),
        }
        await self._emit(session, "GUILD_MEMBERS_CHUNK", chunk)

    # -- sending -------------------------------------------------------
    async def _send(self, conn: GatewayConnection, frame: JsonObject) -> None:
        async with conn.send_lock:
            if conn.ws.closed:
                return
            try:
                await conn.ws.send_str(json.dumps(frame))
            except (ConnectionResetError, RuntimeError):
                return

    async def _emit(self, session: GatewaySession, event: str, data: JsonObject) -> None:
        session.seq += 1
        frame = _frame(DISPATCH, data, session.seq, event)
        session.sent.append(frame)
        if session.connection is not None:
            await self._send(session.connection, frame)

    async def dispatch(self, event: str, data: JsonObject, *, intents: int = 0) -> int:
        """Send an event to the sessions it is for (buffered if disconnected); returns the count.

        A sharded session gets only the events of its guilds (see the module docstring).
        """
        guild_id = event_guild_id(event, data)
        delivered = 0
        for session in list(self.sessions.values()):
            if intents and not session.intents & intents:
                continue
            if not session.receives(guild_id):
                continue
            await self._emit(session, event, data)
            delivered += 1
        return delivered

    # -- disruption ----------------------------------------------------
    async def drop(self, code: int = 4000, *, abrupt: bool = False) -> int:
        """Close live sockets (sessions stay resumable); returns how many."""
        live = self.live_connections
        for conn in live:
            conn.closed_by_server = True
            for session in self.sessions.values():
                if session.connection is conn:
                    session.connection = None
        if abrupt:
            for conn in live:
                if conn.transport is not None:
                    conn.transport.close()
        else:
            await asyncio.gather(
                *(conn.ws.close(code=code, message=b"emulator drop") for conn in live),
                return_exceptions=True,
            )
        return len(live)

    async def request_reconnect(self) -> None:
        """Send op 7 RECONNECT; nextcord closes and resumes."""
        for conn in self.live_connections:
            await self._send(conn, _frame(RECONNECT, None))

    async def invalidate_sessions(self, *, resumable: bool = False) -> None:
        """Send op 9; non-resumable sessions are forgotten (the bot must re-identify)."""
        for conn in self.live_connections:
            await self._send(conn, _frame(INVALID_SESSION, resumable))
        if not resumable:
            self.sessions.clear()

    async def close(self) -> None:
        """Close every socket at emulator shutdown."""
        for conn in self.live_connections:
            conn.closed_by_server = True
        await asyncio.gather(
            *(c.ws.close(code=1001, message=b"emulator closing") for c in self.live_connections),
            return_exceptions=True,
        )
