"""Pointing a real nextcord client at the emulator.

nextcord builds every REST URL (bot routes *and* webhooks) from the class
attribute ``nextcord.http.Route.BASE`` and discovers the gateway through
``GET /gateway``, so redirecting ``Route.BASE`` is all it takes. Because it
is process-global, :func:`patch_route_base` always restores it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from types import TracebackType
from typing import Any, Self

from ..discord.compat import api_base, set_api_base
from .emulator import DiscordEmulator

_COMMAND_SYNC_POLL_S = 0.02


@contextlib.contextmanager
def patch_route_base(emulator: DiscordEmulator) -> Iterator[None]:
    """Send nextcord's REST traffic to ``emulator`` inside the ``with`` block."""
    previous = api_base()
    set_api_base(emulator.api_base)
    try:
        yield
    finally:
        set_api_base(previous)


class ConnectedClient:
    """A nextcord client running ``connect()`` in a task; close it with :meth:`close`."""

    def __init__(self, client: Any, task: asyncio.Task[None]) -> None:
        self.client = client
        self.task = task

    async def close(self, *, timeout_s: float = 5.0) -> None:
        """Close the client and wait for its connect loop to end."""
        await self.client.close()
        try:
            await asyncio.wait_for(asyncio.shield(self.task), timeout_s)
        except TimeoutError:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        except Exception:  # noqa: BLE001 - a failed connect loop must not mask the test result
            return

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def _commands_synced(client: Any) -> bool:
    getter = getattr(client, "get_all_application_commands", None)
    if getter is None:
        return True
    return all(command.command_ids for command in getter())


async def connect_client(
    client: Any,
    emulator: DiscordEmulator,
    *,
    timeout_s: float | None = None,
    wait_for_commands: bool = True,
) -> ConnectedClient:
    """Log ``client`` in, start ``client.connect()`` and wait until it is ready.

    With ``wait_for_commands`` it also waits until nextcord has associated an
    id with each of its application commands (the sync nextcord runs at READY
    and per guild), so ``trigger_command`` can be used right away.
    """
    if emulator.api_base != api_base():
        raise RuntimeError(
            "nextcord.http.Route.BASE does not point at the emulator; use the "
            "discord_emulator fixture or `with patch_route_base(emulator):`"
        )
    timeout = emulator.config.default_timeout_s if timeout_s is None else timeout_s
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    await client.login(emulator.bot_token)
    task: asyncio.Task[None] = loop.create_task(client.connect(reconnect=True))
    connected = ConnectedClient(client, task)
    ready = loop.create_task(client.wait_until_ready())
    try:
        done, _ = await asyncio.wait({task, ready}, timeout=timeout, return_when="FIRST_COMPLETED")
        if task in done:
            task.result()
            raise RuntimeError("client.connect() returned before the client became ready")
        if ready not in done:
            raise TimeoutError(f"nextcord client not ready after {timeout}s")
        while wait_for_commands and not _commands_synced(client):
            if task.done():
                task.result()
            if loop.time() > deadline:
                raise TimeoutError(f"application commands not synced after {timeout}s")
            await asyncio.sleep(_COMMAND_SYNC_POLL_S)
    except BaseException:
        ready.cancel()
        await connected.close()
        raise
    return connected
