"""Workflows: the contract a workflow body is written against, and the example `autointel`.

Workflow authors import from here (``from notifier.workflows import WorkflowSpec``); the names
live in `contract`. A workflow never touches Discord or the store: it reports progress and
returns a result, and the runner does the rest.
"""

from __future__ import annotations

from .contract import InvalidWorkflowOptions, ReportProgress, WorkflowFailed, WorkflowSpec

__all__ = ["InvalidWorkflowOptions", "ReportProgress", "WorkflowFailed", "WorkflowSpec"]
