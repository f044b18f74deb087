"""The emulator's shared state and services, wired together once.

REST handlers, the gateway and the public facade all receive this object,
so there is exactly one world, one clock and one request log per emulator.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from . import payloads
from .clock import Clock
from .commands import CommandRegistry
from .config import EmulatorConfig
from .defaults import build_default_world
from .faults import FaultInjector
from .gateway import GatewayServer
from .interactions import InteractionService
from .messaging import MessageService
from .model import JsonObject, Message
from .ratelimit import GlobalLimiter, RateLimiter
from .recording import RequestRecord
from .snowflake import SnowflakeFactory
from .waiting import ChangeFeed
from .world import World

API_PREFIX = "/api/v10"


class EmulatorState:
    """Everything one emulator instance knows and does."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.clock = Clock()
        self.feed = ChangeFeed()
        self.ids = SnowflakeFactory()
        self.world = World(self.ids, config.bot_username)
        self.defaults = build_default_world(self.world)
        self.base_url = "http://127.0.0.1:0"
        self.messages = MessageService(self.world, config, self.clock, self.feed)
        self.interactions = InteractionService(
            self.world, config, self.clock, self.feed, self.messages, lambda: self.base_url
        )
        self.commands = CommandRegistry(self.world, self.feed)
        self.gateway = GatewayServer(
            world=self.world,
            config=config,
            clock=self.clock,
            feed=self.feed,
            base_url=lambda: self.base_url,
        )
        self.faults = FaultInjector()
        self.limiter = RateLimiter(
            lambda: self.config.rate_limits, lambda: self.config.rate_limits_enabled
        )
        self.global_limiter = GlobalLimiter(
            lambda: self.config.global_rate_limit,
            lambda: self.config.rate_limits_enabled,
            self.clock.now,
        )
        self.requests: list[RequestRecord] = []
        self.closing = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def api_base(self) -> str:
        return self.base_url + API_PREFIX

    def message_json(self, message: Message) -> JsonObject:
        return payloads.message(self.world, self.base_url, message)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run background work (e.g. gateway dispatch from sync code), awaited at close."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for background work started with :meth:`spawn`."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
