"""The gateway websocket: HELLO, IDENTIFY/READY, heartbeats, RESUME and dispatch.

Sessions outlive their connection: events dispatched while the bot is
disconnected are buffered with their sequence numbers and replayed on
RESUME, like Discord does, so a test can drop the socket in the middle of
a workflow and check that nothing is lost. Frames are sent as plain JSON
text (nextcord only inflates binary frames).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

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

_REPLAY_BUFFER = 5000


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
        self.identify_count = 0
        self.resume_count = 0
        self.ready_count = 0

    @property
    def url(self) -> str:
        return self._base_url().replace("http", "ws", 1) + "/gateway"

    @property
    def resume_url(self) -> str:
        return self._base_url().replace("http", "ws", 1) + "/resume-gateway"

    @property
    def live_connections(self) -> list[GatewayConnection]:
        return [c for c in self.connections if c.open]

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
        for stale in [s for s in self.sessions.values() if s.connection is None]:
            del self.sessions[stale.session_id]
        session = GatewaySession(session_id=secrets.token_hex(16), intents=int(data["intents"]))
        self.sessions[session.session_id] = session
        session.connection = conn
        conn.session_id = session.session_id
        conn.mode = "identify"
        self.identify_count += 1
        await self._emit(session, "READY", self._ready_payload(session, data))
        for guild in self._world.guilds.values():
            if self._world.bot.id in guild.members:
                await self._emit(session, "GUILD_CREATE", payloads.guild(self._world, guild))
        self.ready_count += 1
        self._feed.notify()

    def _ready_payload(self, session: GatewaySession, identify: JsonObject) -> JsonObject:
        bot = self._world.bot
        ready: JsonObject = {
            "v": 10,
            "user": {**payloads.user(bot), "verified": True, "mfa_enabled": False},
            "guilds": [
                {"id": str(g.id), "unavailable": True}
                for g in self._world.guilds.values()
                if bot.id in g.members
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
        """Send an event to every session (buffered if disconnected); returns the count."""
        delivered = 0
        for session in list(self.sessions.values()):
            if intents and not session.intents & intents:
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
