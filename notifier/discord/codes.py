"""Discord's numbers, named once: logic compares against these names, never a bare 50027."""

from __future__ import annotations

from typing import Final

# JSON error codes (https://discord.com/developers/docs/topics/opcodes-and-status-codes).
UNKNOWN_MESSAGE: Final = 10008
UNKNOWN_WEBHOOK: Final = 10015
UNKNOWN_INTERACTION: Final = 10062
TOO_MANY_EDITS_OLD_MESSAGE: Final = 30046
REQUEST_ENTITY_TOO_LARGE: Final = 40005
INTERACTION_ALREADY_ACKNOWLEDGED: Final = 40060
TOO_MANY_FOLLOWUPS: Final = 40094
CANNOT_DM_USER: Final = 50007
MISSING_PERMISSIONS: Final = 50013
INVALID_WEBHOOK_TOKEN: Final = 50027
INVALID_FORM_BODY: Final = 50035
NO_MUTUAL_GUILDS: Final = 50278

# Interaction callback types.
CHANNEL_MESSAGE_WITH_SOURCE: Final = 4
DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE: Final = 5

# Message flags.
EPHEMERAL_FLAG: Final = 1 << 6

# Limits (characters unless named otherwise).
CONTENT_MAX: Final = 2000
EMBEDS_PER_MESSAGE_MAX: Final = 10
EMBED_TITLE_MAX: Final = 256
EMBED_DESCRIPTION_MAX: Final = 4096
EMBED_FIELDS_MAX: Final = 25
EMBED_FIELD_NAME_MAX: Final = 256
EMBED_FIELD_VALUE_MAX: Final = 1024
EMBED_FOOTER_MAX: Final = 2048
EMBED_AUTHOR_MAX: Final = 256
EMBED_TOTAL_MAX: Final = 6000
ATTACHMENT_SIZE_DEFAULT_BYTES: Final = 10 * 1024 * 1024
REQUEST_SIZE_MAX_BYTES: Final = 25 * 1024 * 1024

# Time.
INITIAL_RESPONSE_DEADLINE_S: Final = 3.0
INTERACTION_TOKEN_TTL_S: Final = 15 * 60
