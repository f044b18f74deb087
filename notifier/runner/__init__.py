"""Background workflows, from "stored as running" to "delivered" (theory of operation: `runner`)."""

from __future__ import annotations

from .progress import ProgressThrottle
from .runner import Runner, RunnerBusy, Slot, WorkflowBody, WorkflowRequest

__all__ = [
    "ProgressThrottle",
    "Runner",
    "RunnerBusy",
    "Slot",
    "WorkflowBody",
    "WorkflowRequest",
]
