"""aiohttp application wiring: REST routes, gateway sockets, attachment downloads."""

from __future__ import annotations

from aiohttp import web

from .rest import all_routes
from .routing import Pipeline
from .state import API_PREFIX, EmulatorState

MAX_REQUEST_BYTES = 1024**3


async def _attachment(request: web.Request, state: EmulatorState) -> web.Response:
    """Serve uploaded bytes so ``Attachment.read()`` works in the bot."""
    try:
        attachment = state.world.attachments[int(request.match_info["attachment_id"])]
    except (KeyError, ValueError):
        return web.Response(status=404, text="Not Found")
    return web.Response(
        body=attachment.content,
        content_type=attachment.content_type or "application/octet-stream",
    )


def build_app(state: EmulatorState) -> web.Application:
    """An application serving the emulator's routes (not started)."""
    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    pipeline = Pipeline(state)
    for spec in all_routes():
        app.router.add_route(spec.method, API_PREFIX + spec.template, pipeline.wrap(spec))
    app.router.add_route("*", API_PREFIX + "/{tail:.*}", pipeline.wrap(None))
    app.router.add_get("/gateway", state.gateway.handle)
    app.router.add_get("/resume-gateway", state.gateway.handle)

    async def attachment(request: web.Request) -> web.Response:
        return await _attachment(request, state)

    app.router.add_get("/attachments/{channel_id}/{attachment_id}/{filename}", attachment)
    return app
