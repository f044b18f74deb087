"""Serving an aiohttp app on 127.0.0.1: the one way the emulator's neighbours (sites, sinks) start."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from aiohttp import web

__all__ = ["LoopbackServer", "serve_loopback"]


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
    """A small HTTP server on a free 127.0.0.1 port that sends every request to `_handle`.

    Test sites and sinks subclass it and write only `_handle` (and what they record); starting,
    stopping and ``async with`` are here. `METHOD` limits the methods routed ("*": all).
    """

    METHOD = "*"
    port: int = 0
    _runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raise NotImplementedError

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route(self.METHOD, "/{tail:.*}", self._handle)
        self._runner, self.port = await serve_loopback(app)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

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
