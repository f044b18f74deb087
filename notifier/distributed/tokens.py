"""Interaction tokens the gateway hands to the worker that runs the workflow.

A slash command's interaction token lets whoever holds it follow up on the command for 15
minutes, without the gateway: the worker that runs the workflow posts its progress and result
there, and hands off to the channel or a DM before it dies (`notifier.discord.delivery`). The
token is a credential: it is stored only here (never in a job's arguments, which procrastinate
shows in its tables and logs), given to the redactor by the worker that reads it, and deleted
when its workflow concludes or the token expires (`sweep`), whichever comes first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..logs import redactor

if TYPE_CHECKING:
    from psycopg import AsyncConnection

__all__ = ["StoredInteraction", "forget", "put", "read", "sweep"]


@dataclass(frozen=True, slots=True)
class StoredInteraction:
    token: str
    created_at: float
    attachment_limit_bytes: int


async def put(
    conn: AsyncConnection[Any],
    workflow_id: str,
    interaction: StoredInteraction,
    *,
    ttl_s: float,
) -> None:
    """Store the token on `conn` (the gateway's transaction, with the workflow's row)."""
    await conn.execute(
        "INSERT INTO notifier_interaction_tokens "
        "(workflow_id, token, created_at, expires_at, attachment_limit_bytes) "
        "VALUES (%s, %s, %s, %s, %s)",
        [
            workflow_id,
            interaction.token,
            interaction.created_at,
            interaction.created_at + ttl_s,
            interaction.attachment_limit_bytes,
        ],
    )


async def read(
    conn: AsyncConnection[Any], workflow_id: str, *, now: float
) -> StoredInteraction | None:
    """The workflow's token if it still lives (None once expired: the ladder's other rungs
    remain); masked in every log line of this process from now on."""
    cursor = await conn.execute(
        "SELECT token, created_at, attachment_limit_bytes FROM notifier_interaction_tokens "
        "WHERE workflow_id = %s AND expires_at > %s",
        [workflow_id, now],
    )
    row = await cursor.fetchone()
    if row is None:
        return None
    token, created_at, limit = row
    redactor.add([str(token)])
    return StoredInteraction(str(token), float(created_at), int(limit))


async def forget(conn: AsyncConnection[Any], workflow_id: str) -> None:
    """Delete the workflow's token (it concluded)."""
    await conn.execute(
        "DELETE FROM notifier_interaction_tokens WHERE workflow_id = %s", [workflow_id]
    )


async def sweep(conn: AsyncConnection[Any], *, now: float) -> int:
    """Delete every expired token; how many."""
    cursor = await conn.execute(
        "DELETE FROM notifier_interaction_tokens WHERE expires_at <= %s", [now]
    )
    return cursor.rowcount
