"""Users' own channels in the fanout: what `notifier.usernotify` hands the `Fanout`.

An operator's notifier is a config entry; a user's channel (``/notify``) is one `Notifier` per
kind, named ``user:dm``, ``user:email`` and ``user:webhook`` (a ``:`` no config name may hold),
whose plugin reads the user's current target from their settings at send time. So a user's
notice takes exactly the operators' path: an outbox row written before anything is sent, its
idempotency key (the webhook's ``webhook-id``), retries with backoff, redaction, the notifier
metrics; a changed or forgotten setting is honoured by the next attempt of a row already queued.

`route` decides which of them a notice goes to (the user's choices, what the operator allows,
the daily limit); the fanout never imports the store, so the settings stay behind this protocol.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Final, Protocol

from ..events import Notice

if TYPE_CHECKING:
    from .dispatch import Notifier

__all__ = ["USER_NOTIFIER_PREFIX", "UserRoutes", "is_user_notifier"]

USER_NOTIFIER_PREFIX: Final = "user:"


def is_user_notifier(name: str) -> bool:
    return name.startswith(USER_NOTIFIER_PREFIX)


class UserRoutes(Protocol):
    def notifiers(self) -> Mapping[str, Notifier]:
        """The users' channel notifiers by name (``user:email`` ...), fixed for the process."""

    async def route(self, notice: Notice) -> Sequence[str]:
        """The names of the user channels `notice` goes to (none when the user chose nothing)."""

    def sent(self, notifier: str, outcome: str) -> None:
        """Count an attempt's outcome for ``notifier_user_notifications_total{via,outcome}``."""
