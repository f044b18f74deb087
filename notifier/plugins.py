"""What a notifier plugin file imports: ``from notifier.plugins import Plugin, SendOutcome, ...``.

The names live in `notifier.fanout.plugin` (the base class, what a plugin is handed and returns),
`notifier.fanout.templates` and `notifier.fanout.transports` (the targets a plugin sending to
several places builds, `send_all` and `outcome_from_results`); this module is the stable place
plugin authors import them from, whatever the fanout's own layout becomes.
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
from .fanout.transports.apprise import apprise_secrets
from .fanout.transports.common import Target, mask_url, outcome_from_results, send_all
from .fanout.transports.discord_webhook import DiscordWebhookTarget
from .fanout.transports.dm import DMTarget
from .fanout.transports.urls import AppriseUrl, parse_apprise_url

__all__ = [
    "DEFAULT_TEMPLATES",
    "AppriseUrl",
    "DMTarget",
    "DiscordWebhookTarget",
    "MessageTemplate",
    "PermanentSendError",
    "Plugin",
    "PluginContext",
    "RenderedNotice",
    "SendDM",
    "SendError",
    "SendOutcome",
    "SendStatus",
    "Target",
    "TargetResult",
    "TargetStatus",
    "TransientSendError",
    "apprise_secrets",
    "mask_url",
    "outcome_from_results",
    "parse_apprise_url",
    "send_all",
]
