"""A nextcord bot toolkit whose long-running workflows never lose their results.

A workflow author needs one line: ``from notifier import workflow, Context``; a bot that exists
adds the notifier with ``await notifier.setup(bot, "config.yaml")`` (`notifier.ext`). These names
are looked up when first used (module `__getattr__`), so importing `notifier` (which every
`notifier.*` import does) stays cheap and never pulls in nextcord: the CLI and the kernel stay
free of it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .ext import setup_async as setup
    from .workflows import (
        Context,
        InvalidWorkflowOptions,
        WorkflowFailed,
        workflow,
    )

# name -> (the module that defines it, its name there)
_LAZY: dict[str, tuple[str, str]] = {
    "Context": ("notifier.workflows.api", "Context"),
    "workflow": ("notifier.workflows.api", "workflow"),
    "InvalidWorkflowOptions": ("notifier.workflows.contract", "InvalidWorkflowOptions"),
    "WorkflowFailed": ("notifier.workflows.contract", "WorkflowFailed"),
    "setup": ("notifier.ext", "setup_async"),
}

__all__ = [
    "Context",
    "InvalidWorkflowOptions",
    "WorkflowFailed",
    "__version__",
    "setup",
    "workflow",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'notifier' has no attribute {name!r}")
    module, attribute = _LAZY[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # found once; later lookups do not come here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
