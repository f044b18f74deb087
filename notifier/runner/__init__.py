"""Background workflows, from "stored as running" to "delivered" (theory of operation: `runner`)."""

from __future__ import annotations

from .progress import ProgressThrottle
from .runner import (
    EstimateSource,
    JobTicket,
    Runner,
    RunnerBusy,
    Slot,
    WorkflowBody,
    WorkflowRequest,
    results_channel,
)

__all__ = [
    "EstimateSource",
    "JobTicket",
    "ProgressThrottle",
    "Runner",
    "RunnerBusy",
    "Slot",
    "WorkflowBody",
    "WorkflowRequest",
    "results_channel",
]
