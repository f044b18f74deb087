"""A nextcord bot toolkit whose long-running workflows never lose their results.

A workflow author needs one line: ``from notifier import workflow, Context``. Those names are
looked up when first used (module `__getattr__`), so importing `notifier` (which every
`notifier.*` import does) stays cheap and never pulls in nextcord: the CLI and the kernel stay
free of it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .workflows import (
        Context,
        InvalidWorkflowOptions,
        WorkflowFailed,
        workflow,
    )

# name -> the module that defines it
_LAZY: dict[str, str] = {
    "Context": "notifier.workflows.api",
    "workflow": "notifier.workflows.api",
    "InvalidWorkflowOptions": "notifier.workflows.contract",
    "WorkflowFailed": "notifier.workflows.contract",
}

__all__ = ["Context", "InvalidWorkflowOptions", "WorkflowFailed", "__version__", "workflow"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'notifier' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # found once; later lookups do not come here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
