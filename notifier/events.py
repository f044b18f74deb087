"""What the fanout hears about: the events of a workflow's life and the notice that carries one."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["Event", "Notice"]


class Event(StrEnum):
    """A moment in a workflow's life that an operator may want to hear about."""

    STARTED = "started"
    PROGRESS = "progress"
    HANDOFF = "handoff"
    SESSION_LOST = "session_lost"
    COMPLETED = "completed"
    FAILED = "failed"
    PERSISTED = "persisted"
    INTERRUPTED = "interrupted"
    RESUMED = "resumed"
    STORAGE_ERROR = "storage_error"


@dataclass(frozen=True, slots=True)
class Notice:
    """One event of one workflow, with every field a template may name.

    Built by the runner, handed to every notifier whose `on:` list holds the event. Frozen and made
    of plain values so it can be written to the outbox as JSON and rebuilt after a crash.
    """

    event: Event
    workflow_id: str
    user_id: int
    user_name: str
    command: str
    guild_id: int | None = None
    channel_id: int | None = None
    options: dict[str, str] = field(default_factory=dict)
    summary: str = ""
    duration_s: float | None = None
    estimate_s: float | None = None
    error: str = ""
    rung: str = ""
    progress: float | None = None
    stage: str = ""
    occurred_at: float = field(default_factory=time.time)

    @property
    def retrieval_command(self) -> str:
        return f"/retrieve_results workflow_id:{self.workflow_id}"

    def template_fields(self) -> dict[str, str]:
        """The named fields a notifier template may use, all as display strings."""

        def seconds(value: float | None) -> str:
            if value is None:
                return ""
            minutes, secs = divmod(round(value), 60)
            return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"

        return {
            "event": self.event.value,
            "workflow_id": self.workflow_id,
            "user": self.user_name,
            "user_id": str(self.user_id),
            "user_mention": f"<@{self.user_id}>",
            "guild_id": "" if self.guild_id is None else str(self.guild_id),
            "channel_id": "" if self.channel_id is None else str(self.channel_id),
            "command": self.command,
            "url": self.options.get("url", ""),
            "depth": self.options.get("depth", ""),
            "duration": seconds(self.duration_s),
            "estimate": seconds(self.estimate_s),
            "summary": self.summary,
            "error": self.error,
            "rung": self.rung,
            "stage": self.stage,
            "progress": "" if self.progress is None else f"{self.progress:.0%}",
            "retrieval_command": self.retrieval_command,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "event": self.event.value,
            "workflow_id": self.workflow_id,
            "user_id": self.user_id,
            "user_name": self.user_name,
            "command": self.command,
            "guild_id": self.guild_id,
            "channel_id": self.channel_id,
            "options": dict(self.options),
            "summary": self.summary,
            "duration_s": self.duration_s,
            "estimate_s": self.estimate_s,
            "error": self.error,
            "rung": self.rung,
            "progress": self.progress,
            "stage": self.stage,
            "occurred_at": self.occurred_at,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Notice:
        return cls(
            event=Event(data["event"]),
            workflow_id=str(data["workflow_id"]),
            user_id=int(data["user_id"]),
            user_name=str(data["user_name"]),
            command=str(data["command"]),
            guild_id=data.get("guild_id"),
            channel_id=data.get("channel_id"),
            options={str(k): str(v) for k, v in (data.get("options") or {}).items()},
            summary=str(data.get("summary", "")),
            duration_s=data.get("duration_s"),
            estimate_s=data.get("estimate_s"),
            error=str(data.get("error", "")),
            rung=str(data.get("rung", "")),
            progress=data.get("progress"),
            stage=str(data.get("stage", "")),
            occurred_at=float(data.get("occurred_at", time.time())),
        )
