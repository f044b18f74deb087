"""Serving an aiohttp app on 127.0.0.1: the one way the emulator's neighbours (sites, sinks) start."""

from __future__ import annotations

import socket
from types import TracebackType
from typing import Self

from aiohttp import web

__all__ = ["LoopbackServer", "free_port", "serve_loopback"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now: the address of a server that is
    down, or one a test starts later on a port it had to name first."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def serve_loopback(
    app: web.Application, *, port: int = 0, reuse_address: bool = False
) -> tuple[web.AppRunner, int]:
    """Start `app` on 127.0.0.1 (`port` 0: a free one); return its runner and the bound port.

    The caller stops it with `await runner.cleanup()`.
    """
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, reuse_address=reuse_address or None)
    await site.start()
    return runner, int(runner.addresses[0][1])


class LoopbackServer:
    """A small HTTP server on 127.0.0.1 that sends every request to `_handle`.

    Test sites and sinks subclass it and write only `_handle` (and what they record); starting,
    stopping and ``async with`` are here. `METHOD` limits the methods routed ("*": all). It binds
    `port` (0: a free one, kept afterwards), so after `close()` a `start()` opens it again on the
    same port: a server that went down and came back.
    """

    METHOD = "*"
    port: int = 0
    _runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raise NotImplementedError

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route(self.METHOD, "/{tail:.*}", self._handle)
        self._runner, self.port = await serve_loopback(app, port=self.port, reuse_address=True)

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
