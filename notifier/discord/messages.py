"""The words the bot says about a workflow (progress, hand-off, warnings, errors), in one place.

Results themselves are drawn by `notifier.discord.embeds`; these are the short status messages around them.
Every builder is pure and returns an `OutgoingMessage` within Discord's limits. What a workflow
reports (its stage and detail, its error) comes from pages and from the URL a user typed, so it is
made `inert` here: it can ping nobody and hide no link.
"""

from __future__ import annotations

import time

from ..records import ProgressState, StoredResult, WorkflowRecord
from .io import OutgoingMessage
from .text import inert

__all__ = [
    "error_message",
    "handoff_message",
    "interrupted_message",
    "progress_message",
    "retrieval_hint",
    "timeout_warning_message",
]

_BLUE = 0x5865F2
_GREEN = 0x57F287
_YELLOW = 0xFEE75C
_RED = 0xED4245


def retrieval_hint(workflow_id: str) -> str:
    return f"`/retrieve_results workflow_id:{workflow_id}`"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(max(0, round(seconds)), 60)
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def _where(rung: str, channel_id: int | None) -> str:
    if rung == "channel" and channel_id is not None:
        return f"in <#{channel_id}>"
    if rung == "dm":
        return "by DM"
    return "here"


def progress_message(
    record: WorkflowRecord, state: ProgressState, *, now: float | None = None
) -> OutgoingMessage:
    elapsed = (now or time.time()) - record.created_at
    done = state.progress >= 1.0
    stage, detail = inert(state.stage), inert(state.detail[:200])
    title = f"/{record.command}: {'finished' if done else stage or 'working'}"
    lines = [
        f"`{state.bar()}` {state.progress:.0%}",
        f"Stage: **{stage or '-'}**" + (f" — {detail}" if detail else ""),
        f"Elapsed: {_duration(elapsed)}",
        f"Workflow id: `{record.workflow_id}`",
    ]
    if record.url:
        lines.insert(0, inert(record.url[:300]))
    embed = {
        "title": title[:256],
        "description": "\n".join(lines),
        "color": _GREEN if done else _BLUE,
    }
    return OutgoingMessage(embeds=[embed])


def handoff_message(
    record: WorkflowRecord, *, rung: str, channel_id: int | None
) -> OutgoingMessage:
    where = _where(rung, channel_id)
    text = (
        f"⏳ Still working on `/{record.command}`. Discord lets me update this message for 15 "
        f"minutes only, so progress and the result will continue {where}.\n"
        f"Workflow id: `{record.workflow_id}` — at any time: {retrieval_hint(record.workflow_id)}"
    )
    if rung == "none":
        text = (
            f"⏳ Still working on `/{record.command}`. I can't reach you after this message, "
            f"so the result will be kept for you: {retrieval_hint(record.workflow_id)}"
        )
    return OutgoingMessage(content=text)


def timeout_warning_message(
    record: WorkflowRecord,
    *,
    estimate_s: float,
    ttl_s: float,
    ephemeral: bool,
    channel_id: int | None = None,
) -> OutgoingMessage:
    """The private warning at start. `channel_id` is where the workflow continues after the
    hand-off when that is not the command's channel (`workflows.<name>.results_channel_id`)."""
    if ephemeral:
        route = "by DM"
    elif channel_id is not None and channel_id != record.channel_id:
        route = f"in <#{channel_id}> (or by DM)"
    else:
        route = "in this channel (or by DM)"
    embed = {
        "title": "⚠️ Long workflow",
        "description": (
            f"Estimated duration: about {_duration(estimate_s)}.\n"
            f"Discord lets a bot update a command's reply for {_duration(ttl_s)} only.\n"
            f"Before that runs out I'll tell you here, then keep you posted {route}. "
            f"The result is saved as soon as it is ready: {retrieval_hint(record.workflow_id)}"
        ),
        "color": _YELLOW,
    }
    return OutgoingMessage(embeds=[embed], ephemeral=True)


def error_message(record: WorkflowRecord, error: str) -> OutgoingMessage:
    embed = {
        "title": f"/{record.command} failed"[:256],
        "description": (
            f"{inert(error[:1500])}\n\nWorkflow id: `{record.workflow_id}` — details: "
            f"{retrieval_hint(record.workflow_id)}"
        ),
        "color": _RED,
    }
    return OutgoingMessage(embeds=[embed])


def interrupted_message(stored: StoredResult) -> OutgoingMessage:
    """A workflow stopped by a shutdown (or a process that died): where it was, as stored."""
    record, result = stored.record, stored.result or {}
    stage, progress = result.get("last_stage"), result.get("last_progress")
    where = ""
    if isinstance(stage, str) and stage and isinstance(progress, int | float):
        where = f" at **{inert(stage[:100])}** ({max(0.0, min(1.0, float(progress))):.0%})"
    embed = {
        "title": f"/{record.command} was interrupted"[:256],
        "description": (
            f"The bot is shutting down, so this workflow stopped{where}. "
            f"Its last state is saved: {retrieval_hint(record.workflow_id)}. "
            f"Please run the command again once the bot is back."
        ),
        "color": _YELLOW,
    }
    return OutgoingMessage(embeds=[embed])
