"""The notifier fanout: runner events -> operators' notifiers, through a durable outbox.

`dispatch` (the `Fanout`: which notifiers hear which event, sends and retries), `outbox` (every
notice written before it is sent; theory of operation there), `plugin` (the API a plugin author
writes against, re-exported as `notifier.plugins`), `templates`, `discovery` (plugin files and entry
points) and `transports/` (native HTTP, Discord webhook and DM senders, and Apprise for the rest).

Modules are imported by name; this ``__init__`` re-exports nothing, so that the operator CLI,
which reads the outbox, does not import Apprise and aiohttp's senders with it.
"""
