"""`json://` and `jsons://` targets, posted natively with aiohttp.

The body is the one Apprise's NotifyJSON sends and the URL syntax is Apprise's (parsed by Apprise's
own parser); posting it ourselves instead of through Apprise's blocking `send()` keeps many notices
to many JSON sinks concurrent. The request carries the notice's idempotency key as an
`Idempotency-Key` header unless the URL sets that header itself.
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass
from typing import Any

import aiohttp

from ...events import Notice
from ..plugin import PluginContext, RenderedNotice, TargetResult, TargetStatus
from .apprise import apprise_secrets
from .common import _connection_error, _http_result, _result, notify_type_for

__all__ = ["JsonTarget"]


@dataclass(frozen=True, slots=True)
class JsonTarget:
    """A `json://` / `jsons://` URL, posted natively with the body Apprise's NotifyJSON sends.

    `service` is an Apprise NotifyJSON instance used only for its parsed fields (host, port, path,
    method, auth, `+header`, `-param`, `:payload` mappings): the syntax stays Apprise's.
    """

    target_id: str
    display: str
    service: Any

    def secrets(self) -> list[str]:
        return apprise_secrets(self.service)

    def payload(self, notice: Notice, message: RenderedNotice) -> dict[str, Any]:
        """Exactly NotifyJSON.send's payload: version, title, message, attachments, type, with the
        URL's `:key=value` remapping (rename a field, drop it with an empty value, or add one)."""
        payload: dict[str, Any] = {
            "version": self.service.json_version,
            "title": message.title,
            "message": message.body,
            "attachments": [],
            "type": notify_type_for(notice.event),
        }
        for key, value in self.service.payload_extras.items():
            if key in payload:
                if not value:
                    del payload[key]
                else:
                    payload[value] = payload.pop(key)
            else:
                payload[key] = value
        return payload

    async def send(
        self, context: PluginContext, notice: Notice, message: RenderedNotice, timeout_s: float
    ) -> TargetResult:
        svc = self.service
        url = f"{'https' if svc.secure else 'http'}://{svc.host}"
        if isinstance(svc.port, int):
            url += f":{svc.port}"
        url += svc.fullpath or ""
        headers = {"User-Agent": svc.app_id, "Content-Type": "application/json"}
        headers.update(svc.headers)
        if message.idempotency_key:
            headers.setdefault("Idempotency-Key", message.idempotency_key)
        if svc.user:
            credentials = f"{svc.user}:{svc.password or ''}".encode()
            headers["Authorization"] = f"Basic {base64.b64encode(credentials).decode()}"
        try:
            async with (
                asyncio.timeout(timeout_s),
                context.http.request(
                    svc.method,
                    url,
                    data=json.dumps(self.payload(notice, message)),
                    params=dict(svc.params) or None,
                    headers=headers,
                    ssl=bool(svc.verify_certificate),
                ) as response,
            ):
                body = await response.read()
                return _http_result(self, response.status, response.headers, body)
        except TimeoutError:
            return _result(
                self, TargetStatus.TIMEOUT, f"no answer within {timeout_s:.1f}s (outcome unknown)"
            )
        except (aiohttp.ClientError, OSError) as exc:
            return _connection_error(self, exc)
