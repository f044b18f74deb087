"""Workflows: the author's API (`@workflow`, `Context`), the contract the runner drives
(`WorkflowSpec`), discovery, and the built-in `autointel`.

Authors import from here or from the package root (``from notifier import workflow, Context``);
the names live in `api`, `contract` and `discovery`. A workflow never touches Discord or the
store: it reports progress and returns a result, and the runner does the rest. Importing this
package is cheap and never imports nextcord (nor autointel, which its entry point loads).
"""

from __future__ import annotations

from .api import Choice, Context, Workflow, WorkflowOption, workflow
from .contract import (
    InvalidWorkflowOptions,
    ReportProgress,
    WorkflowDefinitionError,
    WorkflowError,
    WorkflowFailed,
    WorkflowSpec,
)
from .discovery import (
    DiscoveredWorkflows,
    WorkflowProblem,
    bind_workflows,
    close_workflows,
    discover_workflows,
    load_workflows,
)

__all__ = [
    "Choice",
    "Context",
    "DiscoveredWorkflows",
    "InvalidWorkflowOptions",
    "ReportProgress",
    "Workflow",
    "WorkflowDefinitionError",
    "WorkflowError",
    "WorkflowFailed",
    "WorkflowOption",
    "WorkflowProblem",
    "WorkflowSpec",
    "bind_workflows",
    "close_workflows",
    "discover_workflows",
    "load_workflows",
    "workflow",
]
