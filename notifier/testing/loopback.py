"""Serving an aiohttp app on 127.0.0.1: the one way the emulator's neighbours (sites, sinks) start."""

from __future__ import annotations

from aiohttp import web

__all__ = ["serve_loopback"]


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
