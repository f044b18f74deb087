"""Users' own channels in the fanout: what `notifier.usernotify` hands the `Fanout`.

An operator's notifier is a config entry; a user's channel (``/notify``) is one `Notifier` per
kind, named ``user:dm``, ``user:email`` and ``user:webhook`` (a ``:`` no config name may hold),
whose plugin reads the user's current target from their settings at send time. So a user's
notice takes exactly the operators' path: an outbox row written before anything is sent, its
idempotency key (the webhook's ``webhook-id``), retries with backoff, redaction, the notifier
metrics; a changed or forgotten setting is honoured by the next attempt of a row already queued.

`route` decides which of them a notice goes to (the user's choices, what the operator allows,
the daily limit); the fanout never imports the store, so the settings stay behind this protocol.
The protocol is defined beside `Fanout` (it names `Notifier`) and named here for its users.
"""

from __future__ import annotations

from .dispatch import USER_NOTIFIER_PREFIX, UserRoutes, is_user_notifier

__all__ = ["USER_NOTIFIER_PREFIX", "UserRoutes", "is_user_notifier"]
