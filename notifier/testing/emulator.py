"""``DiscordEmulator``: a loopback Discord API (REST + gateway) for tests.

The real nextcord client talks to it over 127.0.0.1; tests drive users
(``trigger_command``, ``click_button``...), bend the rules (token expiry,
permissions, closed DMs, rate limits, faults, gateway drops) and assert on
what the bot actually sent (messages with edit history, the request log).

Shards: ``DiscordEmulator(config, sharding=ShardingConfig(shards=2,
max_concurrency=1, identify_window_s=0.5))`` (or ``emulator.sharding = ...``
before any bot connects) makes ``/gateway/bot`` announce two shards, so several
``AutoShardedClient(shard_count=2, shard_ids=[...])`` -- in this process or in
others -- each hold some; without it the gateway behaves as it always did. ``add_guild(name, shard=1)`` creates a guild whose
events, interactions included, reach only the session holding shard 1; DMs reach
shard 0. The gateway refuses a wrong shard count (4010), a missing one (4011), a
shard another live session holds (4010: two processes configured alike), and an
IDENTIFY too early for its bucket (op 9, as Discord); ``connected_shards``,
``identify_times`` (per bucket), ``identify_refusals`` and
``events_sent_to_shard`` show what happened. See ``gateway.py`` for the rules.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Self

from aiohttp import web

from . import payloads, permissions
from .app import build_app
from .config import EmulatorConfig
from .events import install_message_events
from .faults import Fault, FaultKind
from .gateway import GatewayConnection, IdentifyRefusal, ShardingConfig, shard_of
from .handle import InteractionHandle
from .model import (
    DM,
    ApplicationCommand,
    Channel,
    Guild,
    IncomingWebhook,
    InteractionRecord,
    JsonObject,
    Message,
    Role,
    User,
)
from .recording import EmulatorStats, RequestRecord, summarize
from .state import EmulatorState
from .triggers import command_interaction, component_interaction, modal_interaction
from .world import ChannelRef, UserRef

MessagePredicate = Callable[[Message], bool]
_WEBHOOK_TOKEN_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# A guild id picked for a shard sets the snowflake's 5-bit worker field to 31: the
# emulator's id factory counts within a millisecond from 0 and never reaches it.
_PINNED_WORKER_BITS = 31 << 17


class DiscordEmulator:
    """A Discord API v10 emulator bound to 127.0.0.1 on a random port.

    Use as ``async with DiscordEmulator(EmulatorConfig(...)) as emulator:``
    (or the ``discord_emulator`` pytest fixture), point nextcord at
    :attr:`api_base` (``patch_route_base``) and connect with
    ``connect_client``. ``sharding`` (default: one shard, no IDENTIFY limit)
    is what ``/gateway/bot`` announces and the gateway enforces.
    """

    def __init__(
        self, config: EmulatorConfig | None = None, *, sharding: ShardingConfig | None = None
    ) -> None:
        self.config = config or EmulatorConfig()
        self._state = EmulatorState(self.config)
        if sharding is not None:
            self._state.gateway.sharding = sharding
        install_message_events(self._state)
        self._runner: web.AppRunner | None = None
        self._pinned_guild_ids = 0

    # -- lifecycle ------------------------------------------------------
    async def start(self) -> Self:
        """Bind the server; returns ``self``."""
        if self._runner is not None:
            return self
        runner = web.AppRunner(
            build_app(self._state), access_log=None, handle_signals=False, shutdown_timeout=2.0
        )
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self._state.base_url = f"http://{host}:{port}"
        return self

    async def close(self) -> None:
        """Close gateway sockets, release hanging requests and stop the server."""
        if self._runner is None:
            return
        self._state.closing.set()
        await self._state.gateway.close()
        await self._state.drain()
        await self._runner.cleanup()
        self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- addresses & identity --------------------------------------------
    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return self._state.base_url

    @property
    def api_base(self) -> str:
        """Value for ``nextcord.http.Route.BASE``."""
        return self._state.api_base

    @property
    def gateway_url(self) -> str:
        return self._state.gateway.url

    @property
    def bot_token(self) -> str:
        return self._state.world.bot_token

    @property
    def application_id(self) -> int:
        return self._state.world.application_id

    @property
    def bot_user(self) -> User:
        return self._state.world.bot

    @property
    def bot_user_id(self) -> int:
        return self._state.world.bot.id

    @property
    def guild_id(self) -> int:
        """The default guild."""
        return self._state.defaults.guild.id

    @property
    def channel_id(self) -> int:
        """The default guild's ``general`` channel."""
        return self._state.defaults.channels["general"].id

    @property
    def results_channel_id(self) -> int:
        return self._state.defaults.channels["results"].id

    @property
    def users(self) -> dict[str, User]:
        """Users by name (``alice`` owner, ``bob``, ``carol`` admin, and the bot)."""
        world = self._state.world
        return {name: world.users[uid] for name, uid in world.user_names.items()}

    @property
    def channels(self) -> dict[str, Channel]:
        """Guild text channels by name."""
        world = self._state.world
        return {name: world.channels[cid] for name, cid in world.channel_names.items()}

    @property
    def roles(self) -> dict[str, Role]:
        """Roles of the default guild by name (``@everyone``, ``admin``, the bot's role)."""
        return {r.name: r for r in self._state.defaults.guild.roles.values()}

    # -- world building ---------------------------------------------------
    def add_user(
        self,
        name: str,
        *,
        in_guild: bool = True,
        roles: Iterable[str | int] = (),
        dms_open: bool = True,
    ) -> User:
        """Create a user; ``in_guild=False`` makes them share no guild with the bot."""
        world = self._state.world
        user = world.add_user(name, dms_open=dms_open)
        if in_guild:
            role_ids = [self._role_id(r) for r in roles]
            member = world.add_member(self.guild_id, user.id, role_ids)
            data = {**payloads.member(world, member), "guild_id": str(self.guild_id)}
            self._dispatch_later("GUILD_MEMBER_ADD", data)
        return user

    def add_role(self, name: str, role_permissions: int = 0) -> Role:
        """Add a role to the default guild (see ``notifier.testing.permissions``)."""
        role = self._state.world.add_role(self.guild_id, name, role_permissions)
        data = {"guild_id": str(self.guild_id), "role": payloads.role(role)}
        self._dispatch_later("GUILD_ROLE_CREATE", data)
        return role

    def add_channel(
        self, name: str, *, topic: str | None = None, bot_can_post: bool = True
    ) -> Channel:
        """Add a text channel to the default guild."""
        world = self._state.world
        channel = world.add_text_channel(self.guild_id, name, topic)
        world.set_bot_posting(channel, bot_can_post)
        self._dispatch_later("CHANNEL_CREATE", payloads.channel(world, channel))
        return channel

    def add_guild(
        self,
        name: str,
        *,
        shard: int | None = None,
        owner: UserRef = "alice",
        members: Iterable[UserRef] = ("bob", "carol"),
    ) -> Guild:
        """Add a guild the bot is in, with one text channel (``general``).

        ``shard`` picks its id so that its events go to that shard of
        ``sharding.shards`` (``(id >> 22) % shards == shard``). Users act there
        with ``trigger_command(..., guild=guild.id)``.
        """
        world = self._state.world
        guild_id = self._guild_id_on(shard)
        owner_user = world.resolve_user(owner)
        guild = Guild(id=guild_id, name=name, owner_id=owner_user.id)
        guild.roles[guild.id] = Role(
            id=guild.id, name="@everyone", permissions=permissions.DEFAULT_EVERYONE
        )
        world.guilds[guild.id] = guild
        for user in (owner_user, *(world.resolve_user(m) for m in members), world.bot):
            world.add_member(guild.id, user.id)
        world.add_text_channel(guild.id, "general")
        self._dispatch_later("GUILD_CREATE", payloads.guild(world, guild))
        return guild

    def forbid_channel(self, channel: ChannelRef) -> None:
        """Deny the bot SEND_MESSAGES there: bot-token posts/edits get 403/50013."""
        self._set_posting(channel, allowed=False)

    def allow_channel(self, channel: ChannelRef) -> None:
        """Undo :meth:`forbid_channel`."""
        self._set_posting(channel, allowed=True)

    def close_dms(self, user: UserRef) -> None:
        """DMs to this user fail with 403/50007 "Cannot send messages to this user"."""
        self._state.world.resolve_user(user).dms_open = False

    def open_dms(self, user: UserRef) -> None:
        self._state.world.resolve_user(user).dms_open = True

    def create_incoming_webhook(
        self, channel: ChannelRef | None = None, name: str = "Notifier"
    ) -> tuple[int, str]:
        """A channel webhook for Apprise/``Webhook.from_url``; returns ``(id, token)``."""
        world = self._state.world
        target = world.resolve_channel(channel if channel is not None else self.channel_id)
        token = "".join(secrets.choice(_WEBHOOK_TOKEN_ALPHABET) for _ in range(68))
        hook = IncomingWebhook(
            id=world.ids.next(),
            token=token,
            channel_id=target.id,
            guild_id=target.guild_id,
            name=name,
        )
        world.webhooks[hook.id] = hook
        return hook.id, token

    def webhook_url(self, webhook_id: int) -> str:
        """The public ``https://discord.com/api/webhooks/...`` form (for ``from_url``/Apprise).

        nextcord resolves it against ``Route.BASE``, so it reaches the emulator.
        """
        hook = self._state.world.webhooks[webhook_id]
        return f"https://discord.com/api/webhooks/{hook.id}/{hook.token}"

    def local_webhook_url(self, webhook_id: int) -> str:
        """The same webhook on the emulator's own address (for plain HTTP clients)."""
        hook = self._state.world.webhooks[webhook_id]
        return f"{self.api_base}/webhooks/{hook.id}/{hook.token}"

    # -- commands ---------------------------------------------------------
    @property
    def commands(self) -> list[ApplicationCommand]:
        """All registered application commands (global and guild)."""
        return list(self._state.world.commands.values())

    def command_named(self, name: str, *, guild_id: int | None = None) -> ApplicationCommand | None:
        """The command a user in ``guild_id`` (default guild) would invoke by that name."""
        return self._state.commands.named(name, guild_id or self.guild_id)

    async def wait_for_commands(
        self, *names: str, timeout_s: float | None = None
    ) -> list[ApplicationCommand]:
        """Wait until every named command is registered."""

        def check() -> list[ApplicationCommand] | None:
            found = [self.command_named(n) for n in names]
            return [c for c in found if c is not None] if all(found) else None

        return await self._state.feed.wait_for(
            check, self._timeout(timeout_s), f"commands {names} to be registered"
        )

    # -- interactions -----------------------------------------------------
    async def trigger_command(
        self,
        name: str,
        options: Mapping[str, object] | None = None,
        *,
        user: UserRef = "alice",
        channel: ChannelRef | None = None,
        guild: int | None = None,
        subcommand: str | None = None,
        dm: bool = False,
        locale: str = "en-US",
    ) -> InteractionHandle:
        """Invoke ``/name`` as ``user`` and dispatch INTERACTION_CREATE to the bot.

        ``subcommand`` is ``"status"`` or ``"group status"``; ``dm=True`` runs
        it in the bot's DM with the user. Option values are typed by the
        registered schema (users/channels/roles may be given by name).
        """
        who = self._state.world.resolve_user(user)
        where = self._where(who, channel, guild, dm)
        record = command_interaction(
            self._state,
            name=name,
            options=options or {},
            user=who,
            channel=where,
            subcommand=subcommand,
            locale=locale,
        )
        return await self._dispatch_interaction(record)

    async def trigger_autocomplete(
        self,
        name: str,
        options: Mapping[str, object] | None = None,
        *,
        focused: str,
        user: UserRef = "alice",
        channel: ChannelRef | None = None,
        subcommand: str | None = None,
        dm: bool = False,
        timeout_s: float | None = None,
    ) -> list[JsonObject]:
        """Type into option ``focused`` and return the bot's autocomplete choices."""
        who = self._state.world.resolve_user(user)
        where = self._where(who, channel, None, dm)
        record = command_interaction(
            self._state,
            name=name,
            options=options or {},
            user=who,
            channel=where,
            subcommand=subcommand,
            focused=focused,
        )
        handle = await self._dispatch_interaction(record)
        return await handle.wait_for_autocomplete(timeout_s=timeout_s)

    async def click_button(
        self, message: Message | int, custom_id: str, *, user: UserRef = "alice"
    ) -> InteractionHandle:
        """Press a button on a message the bot sent (MESSAGE_COMPONENT interaction)."""
        record = component_interaction(
            self._state,
            message=self._message_of(message),
            custom_id=custom_id,
            user=self._state.world.resolve_user(user),
        )
        return await self._dispatch_interaction(record)

    async def select_menu(
        self,
        message: Message | int,
        custom_id: str,
        values: Sequence[str],
        *,
        user: UserRef = "alice",
    ) -> InteractionHandle:
        """Choose ``values`` in a select menu on a message the bot sent."""
        record = component_interaction(
            self._state,
            message=self._message_of(message),
            custom_id=custom_id,
            user=self._state.world.resolve_user(user),
            values=values,
        )
        return await self._dispatch_interaction(record)

    async def submit_modal(
        self, handle: InteractionHandle, values: Mapping[str, str], *, user: UserRef | None = None
    ) -> InteractionHandle:
        """Submit the modal the bot answered ``handle`` with (text inputs by custom id)."""
        if handle.modal is None:
            raise LookupError(f"{handle!r} was not answered with a modal")
        world = self._state.world
        record = modal_interaction(
            self._state,
            modal=handle.modal,
            values=values,
            user=world.resolve_user(user if user is not None else handle.user_id),
            channel=world.channel(handle.channel_id),
        )
        return await self._dispatch_interaction(record)

    @property
    def interactions(self) -> list[InteractionHandle]:
        """Every interaction created so far, oldest first."""
        return [InteractionHandle(self._state, r) for r in self._state.world.interactions.values()]

    # -- messages ---------------------------------------------------------
    def message(self, message_id: int) -> Message:
        return self._state.world.message(message_id)

    def channel_messages(
        self, channel: ChannelRef | None = None, *, include_deleted: bool = True
    ) -> list[Message]:
        """Messages of a channel in order (default: ``general``), ephemeral ones included."""
        target = self._state.world.resolve_channel(
            channel if channel is not None else self.channel_id
        )
        messages = self._state.world.messages_in(target.id)
        return [m for m in messages if include_deleted or not m.deleted]

    def dm_messages(self, user: UserRef, *, include_deleted: bool = True) -> list[Message]:
        """Messages in the bot's DM with ``user``."""
        world = self._state.world
        channel_id = world.dm_channels.get(world.resolve_user(user).id)
        if channel_id is None:
            return []
        return [m for m in world.messages_in(channel_id) if include_deleted or not m.deleted]

    def webhook_messages(self, webhook_id: int) -> list[Message]:
        """Messages posted through an incoming webhook."""
        hook = self._state.world.webhooks[webhook_id]
        return [
            m for m in self._state.world.messages_in(hook.channel_id) if m.webhook_id == hook.id
        ]

    def delete_message(
        self, where: ChannelRef | InteractionHandle, message_id: int | None = None
    ) -> Message:
        """Simulate a person deleting a message (later edits/fetches get 404/10008).

        ``where`` is the channel or the interaction; with an interaction and no
        ``message_id`` the original response is deleted.
        """
        world = self._state.world
        if isinstance(where, InteractionHandle):
            target_id = message_id if message_id is not None else where.record.original_message_id
            allowed = {where.record.original_message_id, *where.record.followup_ids}
            if target_id is None or target_id not in allowed:
                raise LookupError(f"message {target_id} does not belong to {where!r}")
            message = world.message(target_id)
        else:
            if message_id is None:
                raise ValueError("message_id is required when deleting from a channel")
            message = world.message(message_id)
            if message.channel_id != world.resolve_channel(where).id:
                raise LookupError(f"message {message_id} is not in that channel")
        self._state.messages.delete(message)
        return message

    async def wait_for_channel_message(
        self,
        channel: ChannelRef | None = None,
        predicate: MessagePredicate | None = None,
        *,
        timeout_s: float | None = None,
    ) -> Message:
        """First non-deleted message in the channel matching ``predicate``."""

        def check() -> Message | None:
            for message in self.channel_messages(channel, include_deleted=False):
                if not message.loading and (predicate is None or predicate(message)):
                    return message
            return None

        return await self._state.feed.wait_for(
            check, self._timeout(timeout_s), f"a message in channel {channel or 'general'}"
        )

    async def wait_for_dm(
        self,
        user: UserRef,
        predicate: MessagePredicate | None = None,
        *,
        timeout_s: float | None = None,
    ) -> Message:
        """First non-deleted DM to ``user`` matching ``predicate``."""

        def check() -> Message | None:
            for message in self.dm_messages(user, include_deleted=False):
                if predicate is None or predicate(message):
                    return message
            return None

        return await self._state.feed.wait_for(check, self._timeout(timeout_s), f"a DM to {user}")

    # -- requests, faults, time -----------------------------------------------
    @property
    def requests(self) -> list[RequestRecord]:
        """Every REST request in arrival order, with the status answered."""
        return self._state.requests

    def requests_to(
        self, method: str | None = None, route: str | None = None, *, status: int | None = None
    ) -> list[RequestRecord]:
        """Filter the log by method, route template (``/channels/{channel_id}/messages``), status."""
        return [
            r
            for r in self._state.requests
            if (method is None or r.method == method.upper())
            and (route is None or r.route == route)
            and (status is None or r.status == status)
        ]

    @property
    def stats(self) -> EmulatorStats:
        """Counts over the request log (total, 429s, faults, per status/route)."""
        return summarize(self._state.requests)

    def inject_fault(
        self,
        method: str,
        path_pattern: str | re.Pattern[str],
        kind: FaultKind = "status",
        *,
        count: int | None = 1,
        status: int = 500,
        delay_s: float | None = None,
    ) -> Fault:
        """Make the next ``count`` matching requests fail (``None`` = all of them).

        ``path_pattern`` is a glob (``"/channels/*/messages"``) or a compiled regex
        on the path after ``/api/v10``; ``method`` may be ``"*"``. ``kind``:
        ``"status"`` answers ``status``; ``"hang"`` answers nothing for
        ``delay_s`` (forever when ``None``) and then proceeds normally;
        ``"drop"`` closes the connection without an answer.
        """
        fault = Fault(
            method=method.upper(),
            pattern=path_pattern,
            kind=kind,
            remaining=count,
            status=status,
            delay_s=delay_s,
        )
        return self._state.faults.add(fault)

    def clear_faults(self) -> None:
        self._state.faults.clear()

    def advance_time(self, seconds: float) -> None:
        """Jump the emulator clock (token lifetimes, deadlines, nonce window)."""
        self._state.clock.advance(seconds)
        self._state.feed.notify()

    def reset_rate_limits(self) -> None:
        """Forget every bucket's and the global limit's counts."""
        self._state.limiter.reset()
        self._state.global_limiter.reset()

    # -- gateway ----------------------------------------------------------
    @property
    def identify_count(self) -> int:
        return self._state.gateway.identify_count

    @property
    def resume_count(self) -> int:
        return self._state.gateway.resume_count

    @property
    def ready_count(self) -> int:
        """READY events sent (one per successful IDENTIFY)."""
        return self._state.gateway.ready_count

    @property
    def gateway_connections(self) -> list[GatewayConnection]:
        """Every websocket ever opened (``mode`` tells identify vs resume)."""
        return list(self._state.gateway.connections)

    async def wait_until_ready_count(self, count: int, *, timeout_s: float | None = None) -> None:
        """Wait until ``count`` READYs have been sent."""
        await self._state.feed.wait_until(
            lambda: self.ready_count >= count, self._timeout(timeout_s), f"{count} READY"
        )

    async def wait_until_resume_count(self, count: int, *, timeout_s: float | None = None) -> None:
        """Wait until ``count`` RESUMEs have succeeded."""
        await self._state.feed.wait_until(
            lambda: self.resume_count >= count, self._timeout(timeout_s), f"{count} RESUMED"
        )

    async def wait_until_disconnected(self, *, timeout_s: float | None = None) -> None:
        """Wait until no gateway websocket is open (e.g. after the bot shut down)."""
        await self._state.feed.wait_until(
            lambda: not self._state.gateway.live_connections,
            self._timeout(timeout_s),
            "every gateway connection to close",
        )

    @property
    def sharding(self) -> ShardingConfig:
        """Shards announced by ``/gateway/bot`` and the IDENTIFY rules (mutable, read live)."""
        return self._state.gateway.sharding

    @sharding.setter
    def sharding(self, sharding: ShardingConfig) -> None:
        self._state.gateway.sharding = sharding

    def shard_of(self, guild_id: int) -> int:
        """The shard that receives ``guild_id``'s events (``(guild_id >> 22) % shards``)."""
        return shard_of(guild_id, self.sharding.shards)

    @property
    def connected_shards(self) -> list[int]:
        """Shard ids held by a session with an open websocket, ascending."""
        return self._state.gateway.connected_shards

    @property
    def identify_times(self) -> dict[int, list[float]]:
        """Accepted IDENTIFYs per bucket (``shard_id % max_concurrency``), on the
        emulator's clock; an unsharded IDENTIFY counts as shard 0."""
        return {bucket: list(t) for bucket, t in self._state.gateway.identify_times.items()}

    @property
    def identify_refusals(self) -> list[IdentifyRefusal]:
        """IDENTIFYs refused: close 4010/4011, or op 9 (``close_code=None``) when too early."""
        return list(self._state.gateway.identify_refusals)

    def events_sent_to_shard(self, shard_id: int) -> list[tuple[str, JsonObject]]:
        """``(event, data)`` dispatched to the sessions (still known) of that shard, in order."""
        return [
            (frame["t"], frame["d"])
            for session in self._state.gateway.sessions.values()
            if session.shard is not None and session.shard[0] == shard_id
            for frame in session.sent
        ]

    async def wait_until_shards_connected(
        self, *shard_ids: int, timeout_s: float | None = None
    ) -> None:
        """Wait until every listed shard is held by a session with an open websocket."""
        await self._state.feed.wait_until(
            lambda: set(shard_ids) <= set(self.connected_shards),
            self._timeout(timeout_s),
            f"shards {sorted(shard_ids)} to be connected",
        )

    async def drop_gateway(self, code: int = 4000, *, abrupt: bool = False) -> int:
        """Close the bot's websocket(s); the session stays resumable.

        nextcord resumes after 4000 (or 1000, or an ``abrupt`` TCP drop);
        events dispatched meanwhile are replayed on RESUME.
        """
        return await self._state.gateway.drop(code, abrupt=abrupt)

    async def request_gateway_reconnect(self) -> None:
        """Send op 7 RECONNECT (nextcord resumes)."""
        await self._state.gateway.request_reconnect()

    async def invalidate_gateway_session(self, *, resumable: bool = False) -> None:
        """Send op 9 INVALID_SESSION (nextcord re-identifies after a 5 s pause)."""
        await self._state.gateway.invalidate_sessions(resumable=resumable)

    async def dispatch_event(self, event: str, data: JsonObject) -> int:
        """Send any gateway event to the bot; returns the number of sessions reached."""
        return await self._state.gateway.dispatch(event, data)

    # -- internals --------------------------------------------------------
    def _timeout(self, timeout_s: float | None) -> float:
        return self.config.default_timeout_s if timeout_s is None else timeout_s

    def _role_id(self, ref: str | int) -> int:
        roles = self._state.defaults.guild.roles
        if isinstance(ref, int):
            return ref
        for role in roles.values():
            if role.name == ref:
                return role.id
        raise KeyError(f"no role named {ref!r}")

    def _set_posting(self, ref: ChannelRef, *, allowed: bool) -> None:
        world = self._state.world
        channel = world.resolve_channel(ref)
        if channel.type == DM:
            raise ValueError("DM channels have no permissions; use close_dms()")
        world.set_bot_posting(channel, allowed)
        self._dispatch_later("CHANNEL_UPDATE", payloads.channel(world, channel))

    def _where(
        self, user: User, channel: ChannelRef | None, guild: int | None, dm: bool
    ) -> Channel:
        world = self._state.world
        if dm:
            return world.dm_channel(user.id)
        if channel is not None:
            return world.resolve_channel(channel)
        if guild is not None:
            return world.channel(world.guild(guild).channel_ids[0])
        return world.channel(self.channel_id)

    def _guild_id_on(self, shard: int | None) -> int:
        """A fresh snowflake; with ``shard``, one whose events go to that shard."""
        minted = self._state.world.ids.next()
        if shard is None:
            return minted
        count = self.sharding.shards
        if not 0 <= shard < count:
            raise ValueError(
                f"add_guild(shard={shard}): must be in [0, {count}) with sharding.shards={count}"
            )
        timestamp_ms = minted >> 22
        timestamp_ms -= (timestamp_ms - shard) % count
        self._pinned_guild_ids += 1
        return (timestamp_ms << 22) | _PINNED_WORKER_BITS | self._pinned_guild_ids

    def _message_of(self, message: Message | int) -> Message:
        return message if isinstance(message, Message) else self._state.world.message(message)

    def _dispatch_later(self, event: str, data: JsonObject) -> None:
        if self._state.gateway.sessions:
            self._state.spawn(self._state.gateway.dispatch(event, data))

    async def _dispatch_interaction(self, record: InteractionRecord) -> InteractionHandle:
        gateway = self._state.gateway
        if not gateway.sessions:
            raise RuntimeError("no bot is connected to the gateway; call connect_client() first")
        if not gateway.sessions_for_guild(record.guild_id):
            held = sorted({s.shard[0] for s in gateway.sessions.values() if s.shard})
            shard = shard_of(record.guild_id, self.sharding.shards)
            where = "DMs go" if record.guild_id is None else f"guild {record.guild_id} is on"
            raise RuntimeError(
                f"no gateway session holds shard {shard}, where {where}; shards held: {held}"
            )
        await gateway.dispatch("INTERACTION_CREATE", record.payload)
        return InteractionHandle(self._state, record)


__all__ = ["DiscordEmulator", "permissions"]
