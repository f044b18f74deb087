"""The bot: wiring config, store, fanout, runner and commands into one nextcord client.

One place starts everything (`NotifierBot.open`) and one place drains it (`NotifierBot.close`):
running workflows are interrupted and their users told, then the fanout drains, then the store
closes, then the gateway.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import time
from pathlib import Path
from typing import Any

import aiohttp
import nextcord
from loguru import logger
from nextcord.ext import commands

from .cogs import Services, add_cogs
from .config import Settings, load_config, secret_values
from .discord.compat import TrackedInteraction, is_session_closed, recreate_session, set_api_base
from .discord.io import DiscordIO, OutgoingMessage
from .discord.replies import reply_ephemeral
from .discord.session import call_discord
from .errors import ConfigError, NotifierError
from .fanout.dispatch import Fanout
from .fanout.plugin import PluginContext
from .logs import redactor
from .metrics import DISCORD_SESSION_CLOSED, serve_metrics
from .runner.runner import Runner
from .store import ResultStore
from .workflows.autointel import build_autointel
from .workflows.contract import WorkflowSpec

__all__ = ["NotifierBot"]


class NotifierBot(commands.Bot):
    """A nextcord bot whose workflows never lose their results."""

    def __init__(
        self,
        settings: Settings,
        *,
        config_path: Path | None = None,
        guild_ready_timeout_s: float = 2.0,
    ) -> None:
        intents = nextcord.Intents.none()
        intents.guilds = True
        guild_ids = list(settings.discord.guild_ids) or None
        super().__init__(
            intents=intents,
            default_guild_ids=guild_ids,
            guild_ready_timeout=guild_ready_timeout_s,
            # Everything nextcord sends for us (command replies, followups) pings nobody unless a
            # call says otherwise; the ladder's own requests say it in every payload (io.py).
            allowed_mentions=nextcord.AllowedMentions.none(),
        )
        self.settings = settings
        self.config_path = config_path
        self.io = DiscordIO(self)
        self.workflows: dict[str, WorkflowSpec] = {}
        self._store: ResultStore | None = None
        self._fanout: Fanout | None = None
        self._runner: Runner | None = None
        self._http_session: aiohttp.ClientSession | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._reload_lock = asyncio.Lock()
        self._opened = False
        self._recovery: asyncio.Task[None] | None = None
        # Set once the recovery pass after the latest connect or resume has run (workflows a dead
        # process left running marked interrupted, stored results delivered); clear while one
        # runs. Tools and tests wait on it instead of polling.
        self.recovered = asyncio.Event()
        redactor.add(secret_values(settings))

    # -- services ------------------------------------------------------------------------------

    @property
    def store(self) -> ResultStore:
        if self._store is None:
            raise RuntimeError("NotifierBot.open() has not run, or the bot is closed")
        return self._store

    @property
    def fanout(self) -> Fanout:
        if self._fanout is None:
            raise RuntimeError("NotifierBot.open() has not run, or the bot is closed")
        return self._fanout

    @property
    def runner(self) -> Runner:
        if self._runner is None:
            raise RuntimeError("NotifierBot.open() has not run, or the bot is closed")
        return self._runner

    def get_interaction(self, data: Any, *, cls: type[Any] = TrackedInteraction) -> Any:
        return super().get_interaction(data, cls=cls)

    async def open(self) -> None:
        """Open the store, the fanout and the runner, and add the commands. Call before start.

        A failure (the metrics port taken, the storage path unusable or held by another bot, a
        broken plugin under ``fanout.strict``) raises a NotifierError whose message is the one
        line to show, after closing whatever had been opened: no thread is left running, so the
        process can exit at once.
        """
        if self._opened:
            return
        try:
            await self._open_services()
        except BaseException:
            await self._close_services()
            raise
        self._opened = True

    async def _open_services(self) -> None:
        settings = self.settings
        set_api_base(settings.discord.api_base)
        if settings.metrics.listen:
            try:
                serve_metrics(settings.metrics.listen)
            except OSError as exc:
                raise ConfigError(
                    "metrics.listen",
                    f"cannot serve metrics on {settings.metrics.listen}: {exc.strerror or exc}",
                ) from None
            logger.info("metrics served on http://{}/metrics", settings.metrics.listen)
        self._store = await ResultStore.open(
            settings.storage, on_storage_error=self._on_storage_error
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
        self._fanout = await Fanout.open(settings, context)
        self._runner = Runner(
            settings=settings, store=self._store, io=self.io, notify=self._fanout.emit
        )
        autointel = build_autointel(settings.autointel)
        self.workflows[autointel.name] = autointel
        add_cogs(
            self,
            Services(
                settings=settings,
                store=self._store,
                runner=self._runner,
                io=self.io,
                workflows=self.workflows,
                reload_config=self.reload_config,
            ),
        )

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
        """DM a user (the `dm` notifier plugin's transport). The fanout's nonce is the same on
        every retry of one notice, so `enforce_nonce` keeps a retry from posting twice."""
        channel_id = await call_discord(lambda: self.io.dm_channel(user_id), stage="notifier")
        message = OutgoingMessage(content=content, embeds=[embed] if embed else ())
        nonce = nonce or f"n{user_id}{int(time.time() * 1000)}"[-25:]
        await call_discord(
            lambda: self.io.channel_send(channel_id, message, nonce=nonce), stage="notifier"
        )

    # -- lifecycle -----------------------------------------------------------------------------

    async def connect(self, *, reconnect: bool = True) -> None:
        """nextcord's connect loop, restarted when the HTTP session closed under it.

        nextcord reconnects the gateway on network errors, but a closed aiohttp session makes its
        `ws_connect` raise `RuntimeError: Session is closed`, which ends the loop for good. Here the
        session is recreated and the connection started again (a new IDENTIFY; `on_ready` then
        delivers whatever was stored meanwhile).
        """
        delay_s = 1.0
        while True:
            try:
                await super().connect(reconnect=reconnect)
                return
            except RuntimeError as exc:
                if not is_session_closed(exc) or not reconnect or self.is_closed():
                    raise
            DISCORD_SESSION_CLOSED.labels(stage="gateway").inc()
            logger.warning("HTTP session closed under the gateway: recreating it and reconnecting")
            await recreate_session(self)
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, 60.0)

    async def on_ready(self) -> None:
        logger.info(
            "ready as {} ({} guild(s), {} command(s))",
            self.user,
            len(self.guilds),
            len(self.get_all_application_commands()),
        )
        self._start_recovery()

    def _start_recovery(self) -> None:
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

    async def on_application_command_error(
        self, interaction: nextcord.Interaction, exception: Exception
    ) -> None:
        """A command's own bug: logged once with its traceback, and the caller gets a private,
        honest answer instead of a spinner (never a second error)."""
        original = getattr(exception, "original", exception)
        command = getattr(interaction.application_command, "qualified_name", "?")
        logger.opt(exception=original).error("command /{} failed", command)
        await reply_ephemeral(
            interaction,
            "❌ Something went wrong on our side; it has been logged. Any workflow result is "
            "safe in the store (`/retrieve_results`).",
        )

    async def on_connect(self) -> None:
        await super().on_connect()
        logger.info("application commands registered")

    async def on_resumed(self) -> None:
        self._start_recovery()

    async def reload_config(self) -> Settings:
        """Re-read config.yaml and apply its notifiers; an invalid file changes nothing."""
        if self.config_path is None:
            raise ConfigError("", "the bot was not started from a config file")
        async with self._reload_lock:
            path = self.config_path
            new = await asyncio.to_thread(load_config, path)
            await self.fanout.reload(new)
            redactor.add(secret_values(new))
            logger.info("configuration reloaded from {}", path)
            return new

    async def close(self) -> None:
        try:
            await self._close_services()
        finally:
            await super().close()

    async def _close_workflows(self) -> None:
        """Release what workflows hold across runs (autointel's page worker processes), once the
        runner has ended every run. Each `close` is idempotent; one failing does not stop the rest."""
        for spec in list(self.workflows.values()):
            if spec.close is None:
                continue
            try:
                await spec.close()
            except Exception:  # noqa: BLE001 - shutdown goes on; the cause is logged
                logger.exception("closing workflow {!r} failed", spec.name)

    async def _close_services(self) -> None:
        """Stop what `open` started, in order: running workflows are interrupted and their users
        told, the workflows' page workers stop, the fanout drains, the store closes, then the shared HTTP session and threads.
        Each service is closed once, however often this runs."""
        recovery, self._recovery = self._recovery, None
        runner, self._runner = self._runner, None
        fanout, self._fanout = self._fanout, None
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
            await self._close_workflows()
            if fanout is not None:
                await fanout.drain(timeout_s=self.settings.runner.shutdown_grace)
                await fanout.close()
            if store is not None:
                await store.close()
        finally:
            if http_session is not None:
                await http_session.close()
            if executor is not None:
                executor.shutdown(wait=False, cancel_futures=True)
