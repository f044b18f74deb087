"""Knobs for the emulator's Discord behaviours.

Defaults are Discord's; tests shrink the time-based ones (token lifetime,
heartbeat) to keep runs fast. The config object stays mutable and is read
at the moment a rule is checked, so a test may change it mid-run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .limits import MessageLimits
from .ratelimit import GLOBAL_RATE_LIMIT, RateLimitRule, default_rate_limits


@dataclass
class EmulatorConfig:
    """Configuration of a :class:`~notifier.testing.DiscordEmulator`.

    Attributes:
        interaction_ttl_s: lifetime of an interaction token; afterwards every
            webhook call answers 401/50027 "Invalid Webhook Token".
        initial_response_deadline_s: the callback must arrive within this
            many seconds of the interaction, else 404/10062.
        heartbeat_interval_ms: sent in the gateway HELLO.
        attachment_size_limit: per-file upload limit (413/40005 above it),
            also announced as ``attachment_size_limit`` in interactions.
        message_limits: content/embed limits (400/50035).
        rate_limits: rule per bucket group (``message_create``,
            ``message_edit``, ``message_delete``, ``webhook_execute``,
            ``webhook_message``); a missing or ``None`` entry is unlimited.
        rate_limits_enabled: master switch for rate limiting (global included).
        global_rate_limit: Discord's global limit per bot token, over every
            route, connection and process (default 50 per 1 s, in any window
            of that length); beyond it 429 with ``global: true`` and
            ``X-RateLimit-Global``. ``None`` turns it off. Interaction
            callbacks and webhook calls are exempt, as on Discord.
        nonce_window_s: how long ``enforce_nonce`` deduplicates.
        require_mutual_guild_for_dm: DMs to users sharing no guild with the
            bot fail with 403/50278.
        gateway_close_timeout_s: how long a server-side close waits for the
            client's close frame (nextcord never sends one).
        default_timeout_s: default for the ``wait_*`` helpers.
        bot_username: the bot account's name.
    """

    interaction_ttl_s: float = 900.0
    initial_response_deadline_s: float = 3.0
    heartbeat_interval_ms: int = 41250
    attachment_size_limit: int = 10 * 1024 * 1024
    message_limits: MessageLimits = field(default_factory=MessageLimits)
    rate_limits: dict[str, RateLimitRule | None] = field(default_factory=default_rate_limits)
    rate_limits_enabled: bool = True
    global_rate_limit: RateLimitRule | None = GLOBAL_RATE_LIMIT
    nonce_window_s: float = 300.0
    require_mutual_guild_for_dm: bool = True
    gateway_close_timeout_s: float = 0.5
    default_timeout_s: float = 10.0
    bot_username: str = "notifier-bot"
