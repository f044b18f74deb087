"""The request pipeline every REST route goes through.

Order mirrors Discord's edge: record -> parse body -> injected fault ->
authentication -> global limit (bot-token requests) -> rate-limit bucket ->
handler. Errors raised anywhere become Discord JSON errors; every answer is
logged with its status so tests can count 429s, faults and retries.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from . import errors
from .bodies import ParsedBody, parse_body
from .errors import DiscordError
from .faults import status_message
from .recording import AuthKind, RequestRecord
from .state import API_PREFIX, EmulatorState

AuthMode = Literal["bot", "token", "none"]


@dataclass
class ApiResponse:
    """What a handler answers: status and JSON body (``None`` for no body)."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def no_content() -> ApiResponse:
    return ApiResponse(status=204)


@dataclass
class RequestContext:
    """A parsed request as handlers see it."""

    state: EmulatorState
    request: web.Request
    params: dict[str, str]
    body: ParsedBody
    record: RequestRecord

    def snowflake(self, name: str) -> int:
        """A path parameter as a snowflake; 400/50035 like Discord when malformed."""
        raw = self.params[name]
        try:
            return int(raw)
        except ValueError:
            raise errors.invalid_form_body(
                {name: errors.field_error("NUMBER_TYPE_COERCE", f'Value "{raw}" is not snowflake.')}
            ) from None

    def flag(self, name: str) -> bool:
        """A boolean query parameter (``?wait=true`` / ``?wait=1``)."""
        return self.request.query.get(name, "").lower() in ("true", "1")


Handler = Callable[[RequestContext], Awaitable[ApiResponse]]


@dataclass(frozen=True)
class RouteSpec:
    """A REST route: template relative to ``/api/v10``, auth mode and bucket."""

    method: str
    template: str
    handler: Handler
    auth: AuthMode = "bot"
    bucket: str | None = None
    major: tuple[str, ...] = ()


def _render(response: ApiResponse) -> web.Response:
    if response.body is None:
        return web.Response(status=response.status, headers=response.headers)
    headers = {**response.headers, "Content-Type": "application/json"}
    return web.Response(
        status=response.status, body=json.dumps(response.body).encode(), headers=headers
    )


def _auth_kind(state: EmulatorState, request: web.Request, spec: RouteSpec) -> AuthKind:
    token = request.match_info.get("webhook_token") or request.match_info.get("interaction_token")
    if spec.auth == "token" and token is not None:
        return "interaction-token" if state.interactions.is_interaction_token(token) else "webhook"
    header = request.headers.get("Authorization")
    if header is None:
        return "none"
    return "bot" if header == f"Bot {state.world.bot_token}" else "invalid"


async def _hang(state: EmulatorState, delay_s: float | None) -> bool:
    """Hold the request; True when the delay elapsed, False when the emulator is closing."""
    try:
        await asyncio.wait_for(state.closing.wait(), timeout=delay_s)
    except TimeoutError:
        return True
    return False


def _drop(request: web.Request) -> None:
    """Close the TCP connection without answering."""
    if request.transport is not None:
        request.transport.close()


class _Dropped(Exception):
    """An injected fault closed the connection; there is nothing to answer."""


class Pipeline:
    """Turns a :class:`RouteSpec` into an aiohttp handler."""

    def __init__(self, state: EmulatorState) -> None:
        self._state = state

    def wrap(
        self, spec: RouteSpec | None
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            return await self._handle(request, spec)

        return handler

    async def _handle(self, request: web.Request, spec: RouteSpec | None) -> web.StreamResponse:
        state = self._state
        record = RequestRecord(
            method=request.method,
            path=request.path.removeprefix(API_PREFIX),
            route=spec.template if spec else None,
            at=state.clock.now(),
            query=dict(request.query),
        )
        state.requests.append(record)
        try:
            response = await self._process(request, spec, record)
        except DiscordError as exc:
            response = ApiResponse(exc.status, exc.body())
            record.error_code = exc.code
        except _Dropped:
            state.feed.notify()
            return web.Response(status=204)
        record.status = response.status
        record.response = response.body
        state.feed.notify()
        return _render(response)

    async def _process(
        self, request: web.Request, spec: RouteSpec | None, record: RequestRecord
    ) -> ApiResponse:
        state = self._state
        body = await parse_body(request)
        record.json = body.json
        record.files = [f.filename for f in body.files]
        await self._inject_fault(request, record)
        if spec is None:
            raise errors.route_not_found()
        record.auth = _auth_kind(state, request, spec)
        if spec.auth == "bot" and record.auth != "bot":
            raise errors.unauthorized()
        limited = self._global_limit(request, record)
        if limited is not None:
            return limited
        rate_headers, limited = self._rate_limit(request, spec)
        if limited is not None:
            return limited
        ctx = RequestContext(
            state=state, request=request, params=dict(request.match_info), body=body, record=record
        )
        try:
            response = await spec.handler(ctx)
        except DiscordError as exc:
            record.error_code = exc.code
            response = ApiResponse(exc.status, exc.body())
        response.headers = {**rate_headers, **response.headers}
        return response

    async def _inject_fault(self, request: web.Request, record: RequestRecord) -> None:
        """Apply the first matching injected fault, if any."""
        fault = self._state.faults.take(request.method, record.path)
        if fault is None:
            return
        record.fault = fault.kind
        if fault.kind == "status":
            raise DiscordError(fault.status, 0, status_message(fault.status))
        if fault.kind == "drop" or not await _hang(self._state, fault.delay_s):
            _drop(request)
            raise _Dropped

    def _global_limit(self, request: web.Request, record: RequestRecord) -> ApiResponse | None:
        """The global 429 for a bot-token request over the bot's global limit, else None (the
        request counts; a refused one does not)."""
        if record.auth != "bot":
            return None
        verdict = self._state.global_limiter.check(request.headers["Authorization"])
        if verdict is None or verdict.allowed:
            return None
        body = {
            "message": "You are being rate limited.",
            "retry_after": verdict.retry_after,
            "global": True,
        }
        return ApiResponse(429, body, verdict.headers)

    def _rate_limit(
        self, request: web.Request, spec: RouteSpec
    ) -> tuple[dict[str, str], ApiResponse | None]:
        """The bucket headers for this answer, and the 429 to send if the bucket is empty."""
        major = "|".join(request.match_info.get(k, "") for k in spec.major)
        verdict = self._state.limiter.check(spec.bucket, major)
        if verdict is None:
            return {}, None
        if verdict.allowed:
            return verdict.headers, None
        body = {
            "message": "You are being rate limited.",
            "retry_after": verdict.retry_after,
            "global": False,
        }
        return verdict.headers, ApiResponse(429, body, verdict.headers)
