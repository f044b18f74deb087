"""What a notifier plugin file imports: ``from notifier.plugins import Plugin, SendOutcome, ...``.

The names live in `notifier.fanout.plugin` (the base class, what a plugin is handed and returns)
and `notifier.fanout.templates`; this module is the stable place plugin authors import them from,
whatever the fanout's own layout becomes.
"""

from __future__ import annotations

from .fanout.plugin import (
    PermanentSendError,
    Plugin,
    PluginContext,
    RenderedNotice,
    SendDM,
    SendError,
    SendOutcome,
    SendStatus,
    TargetResult,
    TargetStatus,
    TransientSendError,
)
from .fanout.templates import DEFAULT_TEMPLATES, MessageTemplate

__all__ = [
    "DEFAULT_TEMPLATES",
    "MessageTemplate",
    "PermanentSendError",
    "Plugin",
    "PluginContext",
    "RenderedNotice",
    "SendDM",
    "SendError",
    "SendOutcome",
    "SendStatus",
    "TargetResult",
    "TargetStatus",
    "TransientSendError",
]
