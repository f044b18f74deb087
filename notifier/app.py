"""The notifier, attached to a nextcord bot: config, store, fanout, runner and commands, wired.

Theory of operation. `Notifier` owns the services (the result store, the fanout and its outbox,
the runner, the workflows, and with ``user_notifications.enabled`` the users' own notices: their
settings store and `UserNotifications`, whose channels ride the fanout) and one place starts them
(`open`) and drains them (`close`): running workflows are interrupted and their users told, the
workflows' resources (autointel's page workers) released, the fanout drained, the users'
settings and the store closed, then the shared HTTP session and threads.

`Notifier.attach(bot)` installs it into any `commands.Bot` or `AutoShardedBot` without
subclassing (the `notifier.ext` extension and `await notifier.setup(bot, config)` call it):

- the commands (one cog per concern), rolled out to `discord.guild_ids` when it is set;
- the session safety the ladder relies on: interactions are created as `TrackedInteraction`
  (they ride the client's live HTTP session; see `discord/compat.py`), and the gateway's
  connect loop is restarted when the HTTP session closed under it;
- the lifecycle: the services open inside the bot's own loop just before its first connect
  (so a start-up failure ends `bot.start()` with the one-line NotifierError), and close before
  the bot's own `close`;
- recovery (workflows a dead process left running, results stored but not delivered) after
  every READY and RESUME, and a private answer when one of the notifier's own commands fails;
- the gateway's state from its events (READY, RESUMED, disconnects, per shard), shown as
  `notifier_gateway_connected` and, with the store's and the outbox's, on ``/healthz``
  (`Notifier.health`, registered on the metrics listener while the services are open).

The bot's `connect`, `close` and `get_interaction` are wrapped on the instance: the bot's own
overrides, if it has any, still run inside the wrappers. `detach` undoes all of it. `NotifierBot`
is a `commands.Bot` with a Notifier attached and its services as properties: the convenience
`bot.py` runs. With `discord.shard_count` set, `build_bot` makes a `ShardedNotifierBot` instead:
the same, as an `AutoShardedBot` holding `discord.shard_ids`, whose processes take turns to
IDENTIFY (`notifier.discord.identify`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, Literal, cast

import aiohttp
import nextcord
from loguru import logger
from nextcord.ext import commands

from .cogs import build_cogs
from .cogs.notify import notify_cog
from .config import Settings, load_config, secret_values
from .discord.compat import (
    TrackedInteraction,
    heartbeat_ack_age_s,
    is_session_closed,
    recreate_session,
    set_api_base,
)
from .discord.delivery import send_notice_dm
from .discord.identify import IdentifyPacer
from .discord.io import DiscordIO
from .discord.replies import reply_ephemeral
from .errors import ConfigError, NotifierError
from .fanout.dispatch import Fanout, NotifierReport
from .fanout.outbox import OutboxStatus
from .fanout.plugin import PluginContext
from .logs import redactor
from .metrics import (
    DISCORD_SESSION_CLOSED,
    GATEWAY_CONNECTED,
    OUTBOX_PENDING,
    Health,
    MetricsServer,
    serve_metrics,
)
from .runner.runner import Runner
from .store import Store, open_store
from .store.user_settings import UserSettingsStore, open_user_settings
from .usernotify.channels import stored_result_loader
from .usernotify.service import UserNotifications
from .workflows import Workflow, WorkflowSpec, bind_workflows, close_workflows, load_workflows

__all__ = ["Notifier", "NotifierBot", "Role", "ShardedNotifierBot", "build_bot"]

# Where workflows run: in this process ("all"), or on workers ("gateway": notifier.distributed).
Role = Literal["all", "gateway"]

# Which notifier is attached to which bot. Here, not in `notifier.ext`: nextcord executes an
# extension's module afresh on every load, so state kept there would not be shared.
_ATTACHED: weakref.WeakKeyDictionary[commands.Bot, Notifier] = weakref.WeakKeyDictionary()

_NOT_OPEN = "the notifier is not open (it opens with the bot's first connect), or it is closed"

# /healthz looks a workflow id up in the store's index: a real read through the store's threads.
# The id is well formed and never issued (ids are random), so the answer is always "none".
_HEALTH_PROBE_ID = "0" * 32
_HEALTH_PROBE_TIMEOUT_S = 2.0


async def keep_connected(
    bot: nextcord.Client, connect: Callable[..., Awaitable[None]], *, reconnect: bool
) -> None:
    """`connect` (nextcord's connect loop), restarted when the HTTP session closed under it.

    nextcord reconnects the gateway on network errors, but a closed aiohttp session makes its
    `ws_connect` raise `RuntimeError: Session is closed`, which ends the loop for good. Here the
    session is recreated and the connection started again (a new IDENTIFY; READY then delivers
    whatever was stored meanwhile).
    """
    delay_s = 1.0
    while True:
        try:
            await connect(reconnect=reconnect)
            return
        except RuntimeError as exc:
            if not is_session_closed(exc) or not reconnect or bot.is_closed():
                raise
        DISCORD_SESSION_CLOSED.labels(stage="gateway").inc()
        logger.warning("HTTP session closed under the gateway: recreating it and reconnecting")
        await recreate_session(bot)
        await asyncio.sleep(delay_s)
        delay_s = min(delay_s * 2, 60.0)


class Notifier:
    """The services of one bot and their wiring; see the module docstring.

    It is also what the cogs see as their `Services`: settings, store, runner, io, workflows and
    reload_config. `workflows` is a live mapping (command name -> spec): a workflow registered
    after the cogs were added is found.
    """

    def __init__(
        self, settings: Settings, *, config_path: Path | None = None, role: Role = "all"
    ) -> None:
        if role not in ("all", "gateway"):
            raise ValueError(f"role is 'all' or 'gateway', not {role!r}")
        self.settings = settings
        self.config_path = config_path
        # "all": workflows run in this process; "gateway": they are queued for workers
        # (``notifier worker``) through PostgreSQL (notifier.distributed).
        self.role = role
        self._queue_app: Any = None  # the gateway's procrastinate app (`notifier.distributed`)
        # With storage.backend: postgres, this process's share of the bot's REST budget.
        self._stop_sharing: Callable[[], Awaitable[None]] | None = None
        self.workflows: dict[str, WorkflowSpec] = {}
        # The workflows whose commands are offered (discovered in `attach`) and the specs built
        # for them in `open` (closed and dropped in `close`).
        self._found: dict[str, Workflow] = {}
        self._bound: dict[str, WorkflowSpec] = {}
        self._bot: commands.Bot | None = None
        self._io: DiscordIO | None = None
        self._store: Store | None = None
        self._fanout: Fanout | None = None
        # Users' own notices (/notify), with user_notifications.enabled only.
        self._user_settings: UserSettingsStore | None = None
        self._user_notifications: UserNotifications | None = None
        self._runner: Runner | None = None
        self._http_session: aiohttp.ClientSession | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._reload_lock = asyncio.Lock()
        self._opened = False
        self._recovery: asyncio.Task[None] | None = None
        self._cogs: list[commands.Cog] = []
        self._listeners: list[tuple[Callable[..., Coroutine[Any, Any, None]], str]] = []
        self._metrics: MetricsServer | None = None
        # The gateway as its events tell it: up from READY until a disconnect (per shard).
        self._gateway_ready = False
        self._shards_down: set[int] = set()
        self._wrapped: dict[str, Any] = {}
        # Set once the recovery pass after the latest connect or resume has run (workflows a dead
        # process left running marked interrupted, stored results delivered); clear while one
        # runs. Tools and tests wait on it instead of polling.
        self.recovered = asyncio.Event()
        redactor.add(secret_values(settings))

    # -- services ------------------------------------------------------------------------------

    @property
    def store(self) -> Store:
        if self._store is None:
            raise RuntimeError(_NOT_OPEN)
        return self._store

    @property
    def fanout(self) -> Fanout:
        if self._fanout is None:
            raise RuntimeError(_NOT_OPEN)
        return self._fanout

    @property
    def runner(self) -> Runner:
        if self._runner is None:
            raise RuntimeError(_NOT_OPEN)
        return self._runner

    @property
    def user_notifications(self) -> UserNotifications:
        """The users' own notices (`/notify`); RuntimeError when not open or not enabled."""
        if self._user_notifications is None:
            raise RuntimeError(_NOT_OPEN + " (or user_notifications is not enabled)")
        return self._user_notifications

    @property
    def user_settings(self) -> UserSettingsStore:
        """What the users chose (`/notify`), stored; RuntimeError when not open or not enabled."""
        if self._user_settings is None:
            raise RuntimeError(_NOT_OPEN + " (or user_notifications is not enabled)")
        return self._user_settings

    @property
    def io(self) -> DiscordIO:
        if self._io is None:
            raise RuntimeError("the notifier is not attached to a bot")
        return self._io

    @property
    def bot(self) -> commands.Bot:
        if self._bot is None:
            raise RuntimeError("the notifier is not attached to a bot")
        return self._bot

    # -- attaching -----------------------------------------------------------------------------

    def attach(self, bot: commands.Bot) -> None:
        """Install the notifier into `bot` (see the module docstring). Call before the bot
        connects; the services open with its first connect (or call `open` yourself)."""
        if self._bot is not None:
            raise RuntimeError("this notifier is already attached to a bot")
        if bot in _ATTACHED:
            raise RuntimeError("a notifier is already attached to this bot")
        # Before anything is installed: a broken workflow file (or any other workflow problem)
        # is a WorkflowError in one line, and the bot is left as it was.
        self._found = load_workflows(self.settings)
        _ATTACHED[bot] = self
        self._bot = bot
        self._io = DiscordIO(bot)
        set_api_base(self.settings.discord.api_base)

        original_connect = bot.connect
        original_close = bot.close
        original_get_interaction = bot.get_interaction

        async def connect(*, reconnect: bool = True) -> None:
            await self.open()
            await keep_connected(bot, original_connect, reconnect=reconnect)

        async def close() -> None:
            try:
                await self.close()
            finally:
                await original_close()

        def get_interaction(data: Any, *, cls: type[Any] = TrackedInteraction) -> Any:
            return original_get_interaction(data, cls=cls)

        self._wrapped = {
            "connect": original_connect,
            "close": original_close,
            "get_interaction": original_get_interaction,
        }
        # Per instance, so nothing is subclassed and the bot's own overrides run inside.
        setattr(bot, "connect", connect)  # noqa: B010
        setattr(bot, "close", close)  # noqa: B010
        setattr(bot, "get_interaction", get_interaction)  # noqa: B010

        self._listeners = [
            (self._on_ready, "on_ready"),
            (self._on_resumed, "on_resumed"),
            (self._on_application_command_error, "on_application_command_error"),
            # The gateway's state, for notifier_gateway_connected and /healthz.
            (self._on_gateway_ready, "on_ready"),
            (self._on_gateway_resumed, "on_resumed"),
            (self._on_gateway_disconnect, "on_disconnect"),
            (self._on_shard_up, "on_shard_ready"),
            (self._on_shard_up, "on_shard_resumed"),
            (self._on_shard_disconnect, "on_shard_disconnect"),
        ]
        for listener, event in self._listeners:
            bot.add_listener(listener, event)

        self._cogs = build_cogs(self, self._found.values())
        if self.settings.user_notifications.enabled:
            self._cogs.append(notify_cog(self))
        guild_ids = self.settings.discord.guild_ids
        for cog in self._cogs:
            if guild_ids:
                for command in cog.application_commands:
                    if command.use_default_guild_ids:
                        command.use_default_guild_ids = False
                        for guild_id in guild_ids:
                            command.add_guild_rollout(guild_id)
            bot.add_cog(cog)

    def detach(self) -> None:
        """Undo `attach`: the commands, listeners and wrappers go. The services stay as they
        are (close them first, or let the bot's close do it before detaching)."""
        bot = self._bot
        if bot is None:
            return
        for cog in self._cogs:
            with contextlib.suppress(Exception):
                bot.remove_cog(cog.__cog_name__)
        for listener, event in self._listeners:
            bot.remove_listener(listener, event)
        for name in self._wrapped:
            with contextlib.suppress(AttributeError):
                delattr(bot, name)  # the class's method shows through again
        self._cogs, self._listeners, self._wrapped = [], [], {}
        self._bot = None
        if _ATTACHED.get(bot) is self:
            del _ATTACHED[bot]

    @staticmethod
    def of(bot: commands.Bot) -> Notifier | None:
        """The notifier attached to `bot`, if any."""
        return _ATTACHED.get(bot)

    # -- lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        """Open the store, the fanout and the runner, and build the workflows. Runs once (the
        first connect calls it; later calls return at once).

        A failure (the metrics port taken, the storage path unusable or held by another bot, a
        broken plugin under ``fanout.strict``) raises a NotifierError whose message is the one
        line to show, after closing whatever had been opened: no thread is left running, so the
        process can exit at once.
        """
        if self._opened:
            return
        if self._bot is None:
            raise RuntimeError("attach the notifier to a bot before opening it")
        try:
            await self._open_services()
        except BaseException:
            await self.close()
            raise
        self._opened = True

    async def _open_services(self) -> None:
        settings = self.settings
        if settings.metrics.listen:
            try:
                self._metrics = serve_metrics(settings.metrics.listen)
            except OSError as exc:
                raise ConfigError(
                    "metrics.listen",
                    f"cannot serve metrics on {settings.metrics.listen}: {exc.strerror or exc}",
                ) from None
            logger.info("metrics served on http://{}/metrics", settings.metrics.listen)
        if self.role == "gateway" and settings.storage.backend != "postgres":
            raise ConfigError(
                "storage.backend",
                "a gateway (notifier run --role gateway) queues workflows in PostgreSQL: set "
                "backend: postgres and storage.postgres_dsn",
            )
        self._store = await open_store(
            settings.storage,
            on_storage_error=self._on_storage_error,
            max_step_bytes=settings.runner.max_step_bytes,
        )
        token, dsn = settings.discord.token, settings.storage.postgres_dsn
        if settings.storage.backend == "postgres" and token is not None and dsn is not None:
            from .discord.rest_budget import share_rest_budget

            # Discord's 50 requests/s are the bot's, shared with its other processes.
            self._stop_sharing = await share_rest_budget(
                self.bot,
                dsn=dsn.get_secret_value(),
                bot_token=token.get_secret_value(),
                discord=settings.discord,
            )
        self._http_session = aiohttp.ClientSession()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=settings.fanout.executor_workers, thread_name_prefix="apprise"
        )
        context = PluginContext(
            http=self._http_session,
            executor=self._executor,
            send_dm=self.send_dm,
            discord_api_base=settings.discord.api_base,
        )
        users = None
        if settings.user_notifications.enabled:
            self._user_settings = await open_user_settings(settings.storage)
            self._user_notifications = UserNotifications(
                settings,
                self._user_settings,
                context,
                load_result=stored_result_loader(self._store),
            )
            users = self._user_notifications.routes
        self._fanout = await Fanout.open(settings, context, users=users)
        if self._user_notifications is not None:
            self._user_notifications.bind_outbox(self._fanout.outbox)
        if self.role == "gateway":
            self._runner = await self._gateway_runner(self._store, self._fanout)
        else:
            self._runner = Runner(
                settings=settings,
                store=self._store,
                io=self.io,
                notify=self._fanout.emit,
                workflows=self.workflows,
            )
        if self._metrics is not None:
            self._metrics.set_health_source(self.health, asyncio.get_running_loop())
        # A spec already in `workflows` (installed by hand, or by a test) is kept; the others
        # are built now (a class workflow's resources, such as autointel's page workers).
        missing = {name: found for name, found in self._found.items() if name not in self.workflows}
        self._bound = await bind_workflows(missing, settings)
        self.workflows.update(self._bound)

    async def _gateway_runner(self, store: Store, fanout: Fanout) -> Runner:
        """The gateway's runner: commands stored and queued for workers in one transaction
        (imported here: psycopg and procrastinate are the ``postgres`` extra's)."""
        from .distributed.gateway import GatewayRunner
        from .distributed.queue import build_app
        from .store.postgres import PostgresStore

        assert isinstance(store, PostgresStore)
        dsn = self.settings.storage.postgres_dsn
        assert dsn is not None
        app = build_app(dsn.get_secret_value())
        await app.open_async()
        self._queue_app = app
        return GatewayRunner(
            settings=self.settings,
            store=store,
            io=self.io,
            notify=fanout.emit,
            app=app,
            workflows=self.workflows,
        )

    async def close(self) -> None:
        """Stop what `open` started, in order: running workflows are interrupted and their users
        told, the workflows' resources released, the fanout drains, the store closes, then the
        shared HTTP session and threads. Each service is closed once, however often this runs."""
        self._opened = False
        metrics, self._metrics = self._metrics, None
        if metrics is not None:
            metrics.clear_health_source()  # /healthz answers 503 while the services close
        self._gateway_ready = False  # the bot's own close ends the gateway next
        self._gateway_changed()
        recovery, self._recovery = self._recovery, None
        runner, self._runner = self._runner, None
        fanout, self._fanout = self._fanout, None
        user_settings, self._user_settings = self._user_settings, None
        user_notifications, self._user_notifications = self._user_notifications, None
        store, self._store = self._store, None
        http_session, self._http_session = self._http_session, None
        executor, self._executor = self._executor, None
        try:
            if recovery is not None and not recovery.done():
                recovery.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await recovery
            if runner is not None:
                await runner.shutdown()
            queue_app, self._queue_app = self._queue_app, None
            if queue_app is not None:
                await queue_app.close_async()
            await self._close_workflows()
            if fanout is not None:
                await fanout.drain(timeout_s=self.settings.runner.shutdown_grace)
                await fanout.close()
            if user_notifications is not None:
                await user_notifications.close()
            if user_settings is not None:
                await user_settings.close()
            if store is not None:
                await store.close()
        finally:
            stop_sharing, self._stop_sharing = self._stop_sharing, None
            if stop_sharing is not None:
                await stop_sharing()
            if http_session is not None:
                await http_session.close()
            if executor is not None:
                executor.shutdown(wait=False, cancel_futures=True)
            if metrics is not None:
                await asyncio.to_thread(metrics.close)  # waits out the listener's poll

    async def _close_workflows(self) -> None:
        """Release what workflows hold across runs (autointel's page worker processes), once the
        runner has ended every run: every spec in `workflows`, and those `open` built even if
        one was replaced since. Each is closed once; one failing does not stop the rest. The
        specs `open` built are dropped (a later `open` builds them anew)."""
        bound, self._bound = self._bound, {}
        specs = {id(spec): spec for spec in [*self.workflows.values(), *bound.values()]}
        await close_workflows(specs.values())
        for name, spec in bound.items():
            if self.workflows.get(name) is spec:
                del self.workflows[name]

    async def _on_storage_error(self, workflow_id: str, exc: BaseException) -> None:
        """The store could not write a result (it is kept in memory and retried): tell operators."""
        if self._runner is not None:
            await self._runner.report_storage_error(workflow_id, exc)

    async def send_dm(
        self,
        user_id: int,
        content: str,
        embed: dict[str, Any] | None,
        *,
        nonce: str | None = None,
    ) -> None:
        """DM a user (the `dm` notifier plugin's transport: `send_notice_dm`)."""
        await send_notice_dm(self.io, user_id, content, embed, nonce=nonce)

    async def reload_config(self) -> NotifierReport:
        """Re-read config.yaml and apply its notifiers by the rules of a start: an invalid file
        (or, with `fanout.strict`, an invalid notifier) raises ConfigError holding every problem
        and changes nothing; otherwise the report says which notifiers run and which were left
        out, as the start would have said it."""
        if self.config_path is None:
            raise ConfigError("", "the bot was not started from a config file")
        async with self._reload_lock:
            path = self.config_path
            new = await asyncio.to_thread(load_config, path)
            report = await self.fanout.reload(new)
            redactor.add(secret_values(new))
            logger.info("configuration reloaded from {}: {}", path, report.line)
            return report

    # -- health --------------------------------------------------------------------------------

    @property
    def gateway_connected(self) -> bool:
        """Whether the bot is connected to Discord's gateway: READY seen, and no connection (no
        shard, for an AutoShardedBot) down since without a RESUME or a new READY."""
        bot = self._bot
        ready = self._gateway_ready and not self._shards_down
        return ready and bot is not None and not bot.is_closed()

    async def health(self) -> Health:
        """What /healthz reports (the listener runs this on the bot's loop): healthy when the
        gateway is connected and the store is usable; the outbox backlog and the heartbeat's age
        are there to read, not judged."""
        try:
            backlog = await self.fanout.outbox.count(OutboxStatus.PENDING)
        except (NotifierError, RuntimeError):  # closing, or the outbox cannot be read
            backlog = int(next(iter(OUTBOX_PENDING.collect())).samples[0].value)
        return Health(
            gateway_connected=self.gateway_connected,
            store_error=await self._store_problem(),
            outbox_backlog=backlog,
            last_heartbeat_s=heartbeat_ack_age_s(self.bot),
        )

    async def _store_problem(self) -> str | None:
        """None when the store is usable: it answers a lookup through its index and no finished
        result is held in memory because its write keeps failing. Otherwise what is wrong."""
        store = self._store
        if store is None:
            return "not open"
        try:
            await asyncio.wait_for(store.get(_HEALTH_PROBE_ID), _HEALTH_PROBE_TIMEOUT_S)
        except TimeoutError:
            return f"the index did not answer within {_HEALTH_PROBE_TIMEOUT_S:g} s"
        except NotifierError as exc:
            return f"the index cannot be read: {exc}"
        unwritten = len(store.pending_writes)
        if unwritten:
            return (
                f"{unwritten} finished result(s) not on disk yet: writes are failing and "
                "retried (see the log)"
            )
        return None

    def _gateway_changed(self) -> None:
        GATEWAY_CONNECTED.set(1 if self.gateway_connected else 0)

    @property
    def _sharded(self) -> bool:
        return isinstance(self.bot, nextcord.AutoShardedClient)

    async def _on_gateway_ready(self) -> None:
        self._gateway_ready = True
        self._shards_down.clear()
        self._gateway_changed()

    async def _on_gateway_resumed(self) -> None:
        if not self._sharded:  # a sharded bot says which shard (on_shard_resumed)
            self._shards_down.discard(0)
            self._gateway_changed()

    async def _on_gateway_disconnect(self) -> None:
        if not self._sharded:
            self._shards_down.add(0)
            self._gateway_changed()

    async def _on_shard_up(self, shard_id: int) -> None:
        self._shards_down.discard(shard_id)
        self._gateway_changed()

    async def _on_shard_disconnect(self, shard_id: int) -> None:
        self._shards_down.add(shard_id)
        self._gateway_changed()

    # -- events --------------------------------------------------------------------------------

    async def _on_ready(self) -> None:
        bot = self.bot
        logger.info(
            "ready as {} ({} guild(s), {} command(s))",
            bot.user,
            len(bot.guilds),
            len(bot.get_all_application_commands()),
        )
        self._start_recovery()

    async def _on_resumed(self) -> None:
        self._start_recovery()

    def _start_recovery(self) -> None:
        if self._runner is None:
            return
        if self._recovery is None or self._recovery.done():
            self.recovered.clear()
            self._recovery = asyncio.create_task(self._recover(), name="recovery")

    async def _recover(self) -> None:
        """Mark workflows a dead process left running, deliver results stored but not delivered."""
        try:
            await self._recover_once()
        finally:
            self.recovered.set()

    async def _recover_once(self) -> None:
        if self._runner is None:
            return
        try:
            recovered, delivered = await self._runner.recover()
        except NotifierError as exc:
            logger.error("recovery after (re)connect failed, will retry on the next one: {}", exc)
            return
        if recovered or delivered:
            logger.info(
                "recovery: {} interrupted workflow(s) marked, {} stored result(s) delivered",
                recovered,
                delivered,
            )

    async def _on_application_command_error(
        self, interaction: nextcord.Interaction, exception: Exception
    ) -> None:
        """One of the notifier's own commands failed (a bug): logged once with its traceback,
        and the caller gets a private, honest answer instead of a spinner. Other commands of the
        bot are its own business."""
        name = getattr(interaction.application_command, "qualified_name", "") or "?"
        ours = {command.name for cog in self._cogs for command in cog.application_commands}
        if name.split(" ", 1)[0] not in ours:
            return
        original = getattr(exception, "original", exception)
        logger.opt(exception=original).error("command /{} failed", name)
        await reply_ephemeral(
            interaction,
            "❌ Something went wrong on our side; it has been logged. Any workflow result is "
            "safe in the store (`/retrieve_results`).",
        )


def _client_options(settings: Settings, guild_ready_timeout_s: float) -> dict[str, Any]:
    """What both bot classes ask of nextcord: intents kept to what the notifier needs, the
    commands rolled out to `discord.guild_ids` when set, and mentions off by default."""
    intents = nextcord.Intents.none()
    intents.guilds = True
    return {
        "intents": intents,
        "default_guild_ids": list(settings.discord.guild_ids) or None,
        "guild_ready_timeout": guild_ready_timeout_s,
        # Everything nextcord sends for us (command replies, followups) pings nobody unless a
        # call says otherwise; the ladder's own requests say it in every payload (io.py).
        "allowed_mentions": nextcord.AllowedMentions.none(),
    }


class _NotifierBotServices:
    """What NotifierBot and ShardedNotifierBot share besides nextcord's base class: the Notifier
    attached (`bot.notifier`) and its services as properties. Listed before the nextcord class
    in their bases, so its `on_connect` runs nextcord's and then logs."""

    settings: Settings
    config_path: Path | None
    notifier: Notifier

    def _attach_notifier(
        self, bot: commands.Bot, settings: Settings, config_path: Path | None, role: Role
    ) -> None:
        self.settings = settings
        self.config_path = config_path
        self.notifier = Notifier(settings, config_path=config_path, role=role)
        self.notifier.attach(bot)

    @property
    def io(self) -> DiscordIO:
        return self.notifier.io

    @property
    def workflows(self) -> dict[str, WorkflowSpec]:
        return self.notifier.workflows

    @property
    def recovered(self) -> asyncio.Event:
        return self.notifier.recovered

    @property
    def store(self) -> Store:
        return self.notifier.store

    @property
    def fanout(self) -> Fanout:
        return self.notifier.fanout

    @property
    def runner(self) -> Runner:
        return self.notifier.runner

    async def open(self) -> None:
        """Open the services now (the first connect would otherwise); see `Notifier.open`."""
        await self.notifier.open()

    async def reload_config(self) -> NotifierReport:
        return await self.notifier.reload_config()

    async def send_dm(
        self, user_id: int, content: str, embed: dict[str, Any] | None, *, nonce: str | None = None
    ) -> None:
        await self.notifier.send_dm(user_id, content, embed, nonce=nonce)

    async def on_connect(self) -> None:
        await super().on_connect()  # type: ignore[misc]  # nextcord's, next in the bot's MRO
        logger.info("application commands registered")


# The ignore on both classes: nextcord's BotBase and Client disagree on add_cog, dispatch
# and remove_cog, which mypy reports for any class with a second base besides nextcord's bot.
class NotifierBot(_NotifierBotServices, commands.Bot):  # type: ignore[misc]
    """A nextcord bot whose workflows never lose their results: a `commands.Bot` with a
    `Notifier` attached (`bot.notifier`), its services as properties, intents kept to what the
    notifier needs, and mentions off by default. One gateway connection, unsharded; see
    `ShardedNotifierBot` and `build_bot` for `discord.shard_count`."""

    def __init__(
        self,
        settings: Settings,
        *,
        config_path: Path | None = None,
        guild_ready_timeout_s: float = 2.0,
        role: Role = "all",
    ) -> None:
        super().__init__(**_client_options(settings, guild_ready_timeout_s))
        self._attach_notifier(self, settings, config_path, role)


class ShardedNotifierBot(_NotifierBotServices, commands.AutoShardedBot):  # type: ignore[misc]
    """NotifierBot for a bot with gateway shards: an `AutoShardedBot` holding `discord.shard_ids`
    of `discord.shard_count` (every shard when no ids are given). Several processes, each with
    its own shards, serve one bot; each guild's commands reach the process holding its shard.

    With `storage.postgres_dsn` set, the processes take turns before each IDENTIFY through
    PostgreSQL (`notifier.discord.identify`, `identify_pacer`); without it, nextcord's own
    pacing of this process's shards stays.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        config_path: Path | None = None,
        guild_ready_timeout_s: float = 2.0,
        role: Role = "all",
    ) -> None:
        discord = settings.discord
        if discord.shard_count is None:
            raise ConfigError(
                "discord.shard_count", "is not set: an unsharded bot is a NotifierBot"
            )
        self.identify_pacer = IdentifyPacer.for_settings(settings)
        super().__init__(
            **_client_options(settings, guild_ready_timeout_s),
            shard_count=discord.shard_count,
            shard_ids=None if discord.shard_ids is None else list(discord.shard_ids),
        )
        # Notifier.attach takes any commands.Bot or AutoShardedBot (nextcord's two bot classes
        # share BotBase, not a base that says so).
        self._attach_notifier(cast(commands.Bot, self), settings, config_path, role)

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """Wait for this shard's turn to IDENTIFY: shared with the other processes through
        PostgreSQL, or nextcord's wait within this process."""
        if self.identify_pacer is None:
            await super().before_identify_hook(shard_id, initial=initial)
        else:
            await self.identify_pacer.wait_turn(self, shard_id or 0)


def build_bot(
    settings: Settings,
    *,
    config_path: Path | None = None,
    guild_ready_timeout_s: float = 2.0,
    role: Role = "all",
) -> NotifierBot | ShardedNotifierBot:
    """The bot the settings ask for: ShardedNotifierBot with `discord.shard_count`, otherwise
    NotifierBot (one unsharded connection, as before shards)."""
    bot_class = NotifierBot if settings.discord.shard_count is None else ShardedNotifierBot
    return bot_class(
        settings,
        config_path=config_path,
        guild_ready_timeout_s=guild_ready_timeout_s,
        role=role,
    )
