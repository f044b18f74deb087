"""The Discord REST calls the delivery ladder makes, each one request, through `client.http`.

Every call rides the client's *current* HTTP session (nextcord's `HTTPClient.request` recreates a
closed session before each request), never the session an `Interaction` object captured when it was
created; that is what keeps a long workflow clear of `RuntimeError: Session is closed`. Calls here
do no retrying and no classification: `notifier.discord.session.call_discord` wraps them.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import nextcord

from . import codes
from .compat import Route, request
from .text import allowed_mentions, without_lone_surrogates

__all__ = ["DiscordIO", "FileLike", "OutgoingMessage"]


class FileLike(Protocol):
    """An attachment to send: the renderer's `RenderedFile` fits."""

    @property
    def filename(self) -> str: ...

    @property
    def data(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A message as the ladder wants it shown, independent of the rung that carries it."""

    content: str | None = None
    embeds: Sequence[dict[str, Any]] = ()
    files: Sequence[FileLike] = ()
    ephemeral: bool = False
    mention_user_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def size_bytes(self) -> int:
        return sum(len(f.data) for f in self.files)

    def payload(self, *, for_edit: bool = False) -> dict[str, Any]:
        """The JSON body of the request. It always says `allowed_mentions`, last so `extra` cannot
        change it: nobody is pinged but `mention_user_id` (the requester, named on purpose in a
        channel), whatever mention a result's text may still hold."""
        body: dict[str, Any] = {"content": self.content or "", "embeds": list(self.embeds)}
        if self.ephemeral and not for_edit:
            body["flags"] = codes.EPHEMERAL_FLAG
        if for_edit:
            body["attachments"] = []
        body.update(self.extra)
        body["allowed_mentions"] = allowed_mentions(self.mention_user_id)
        return without_lone_surrogates(body)


class DiscordIO:
    """Single Discord requests for one bot: interaction webhook, channel messages, DMs."""

    def __init__(self, client: nextcord.Client) -> None:
        self._client = client
        self._dm_channels: dict[int, int] = {}

    @property
    def application_id(self) -> int:
        app_id = self._client.application_id
        if app_id is None:
            raise RuntimeError("the client has not logged in yet (no application id)")
        return int(app_id)

    @property
    def client_closed(self) -> bool:
        """Public nextcord API: True once `client.close()` ran (a restart re-opens it)."""
        return self._client.is_closed()

    async def _request(
        self, route: Route, message: OutgoingMessage | None, *, auth: bool, for_edit: bool = False
    ) -> Any:
        client = self._client
        if message is None:
            return await request(client, route, auth=auth)
        payload = message.payload(for_edit=for_edit)
        if not message.files:
            return await request(client, route, auth=auth, json=payload)
        files = [nextcord.File(io.BytesIO(f.data), filename=f.filename) for f in message.files]
        payload["attachments"] = [
            {"id": index, "filename": f.filename} for index, f in enumerate(files)
        ]
        form: list[dict[str, Any]] = [
            {
                "name": f"files[{index}]",
                "value": f.fp,
                "filename": f.filename,
                "content_type": "application/octet-stream",
            }
            for index, f in enumerate(files)
        ]
        form.append({"name": "payload_json", "value": json.dumps(payload)})
        return await request(client, route, auth=auth, form=form, files=files)

    # -- rung 1: the interaction webhook (token auth) ------------------------------------------

    async def edit_original(self, token: str, message: OutgoingMessage) -> None:
        route = Route(
            "PATCH",
            "/webhooks/{webhook_id}/{webhook_token}/messages/@original",
            webhook_id=self.application_id,
            webhook_token=token,
        )
        await self._request(route, message, auth=False, for_edit=True)

    async def delete_original(self, token: str) -> None:
        route = Route(
            "DELETE",
            "/webhooks/{webhook_id}/{webhook_token}/messages/@original",
            webhook_id=self.application_id,
            webhook_token=token,
        )
        await self._request(route, None, auth=False)

    async def followup(self, token: str, message: OutgoingMessage) -> int:
        route = Route(
            "POST",
            "/webhooks/{webhook_id}/{webhook_token}?wait=true",
            webhook_id=self.application_id,
            webhook_token=token,
        )
        data = await self._request(route, message, auth=False)
        return int(data["id"])

    async def edit_followup(self, token: str, message_id: int, message: OutgoingMessage) -> None:
        route = Route(
            "PATCH",
            "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}",
            webhook_id=self.application_id,
            webhook_token=token,
            message_id=message_id,
        )
        await self._request(route, message, auth=False, for_edit=True)

    # -- rungs 3 and 4: channel and DM messages (bot token) ------------------------------------

    async def channel_send(self, channel_id: int, message: OutgoingMessage, *, nonce: str) -> int:
        """Post with `nonce` + `enforce_nonce`, so a retried send can not post twice."""
        route = Route("POST", "/channels/{channel_id}/messages", channel_id=channel_id)
        keyed = replace(
            message,
            ephemeral=False,
            extra={**message.extra, "nonce": nonce[:25], "enforce_nonce": True},
        )
        data = await self._request(route, keyed, auth=True)
        return int(data["id"])

    async def channel_edit(
        self, channel_id: int, message_id: int, message: OutgoingMessage
    ) -> None:
        route = Route(
            "PATCH",
            "/channels/{channel_id}/messages/{message_id}",
            channel_id=channel_id,
            message_id=message_id,
        )
        await self._request(route, replace(message, ephemeral=False), auth=True, for_edit=True)

    async def dm_channel(self, user_id: int) -> int:
        """The DM channel with a user, opened once and remembered."""
        cached = self._dm_channels.get(user_id)
        if cached is not None:
            return cached
        route = Route("POST", "/users/@me/channels")
        data = await request(self._client, route, auth=True, json={"recipient_id": str(user_id)})
        channel_id = int(data["id"])
        self._dm_channels[user_id] = channel_id
        return channel_id
