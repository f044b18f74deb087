"""Discord permission bits and the resolution rules the emulator enforces.

Only the bits a notification bot trips over are named; the arithmetic
(owner and ADMINISTRATOR bypass, @everyone then roles then member
overwrites) follows Discord's documented algorithm so ``forbid_channel``
shows up identically in nextcord's cache and in REST answers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

CREATE_INSTANT_INVITE = 1 << 0
ADMINISTRATOR = 1 << 3
MANAGE_CHANNELS = 1 << 4
MANAGE_GUILD = 1 << 5
ADD_REACTIONS = 1 << 6
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
MENTION_EVERYONE = 1 << 17
USE_EXTERNAL_EMOJIS = 1 << 18
USE_APPLICATION_COMMANDS = 1 << 31
SEND_MESSAGES_IN_THREADS = 1 << 38

ALL_PERMISSIONS = (1 << 51) - 1

DEFAULT_EVERYONE = (
    CREATE_INSTANT_INVITE
    | ADD_REACTIONS
    | VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | USE_EXTERNAL_EMOJIS
    | USE_APPLICATION_COMMANDS
    | SEND_MESSAGES_IN_THREADS
)

POSTING = SEND_MESSAGES | EMBED_LINKS | ATTACH_FILES

ROLE_OVERWRITE = 0
MEMBER_OVERWRITE = 1


@dataclass
class Overwrite:
    """A channel permission overwrite for a role (kind 0) or a member (kind 1)."""

    target_id: int
    kind: int
    allow: int = 0
    deny: int = 0


def base_permissions(*, is_owner: bool, everyone: int, role_permissions: Iterable[int]) -> int:
    """Guild-level permissions of a member."""
    if is_owner:
        return ALL_PERMISSIONS
    total = everyone
    for value in role_permissions:
        total |= value
    return ALL_PERMISSIONS if total & ADMINISTRATOR else total


def apply_overwrites(
    base: int,
    overwrites: Iterable[Overwrite],
    *,
    guild_id: int,
    member_id: int,
    role_ids: Iterable[int],
) -> int:
    """Channel-level permissions: @everyone, then role, then member overwrites."""
    if base & ADMINISTRATOR or base == ALL_PERMISSIONS:
        return ALL_PERMISSIONS
    roles = set(role_ids)
    listed = list(overwrites)
    result = base
    for ow in listed:
        if ow.kind == ROLE_OVERWRITE and ow.target_id == guild_id:
            result = (result & ~ow.deny) | ow.allow
    allow = deny = 0
    for ow in listed:
        if ow.kind == ROLE_OVERWRITE and ow.target_id in roles:
            allow |= ow.allow
            deny |= ow.deny
    result = (result & ~deny) | allow
    for ow in listed:
        if ow.kind == MEMBER_OVERWRITE and ow.target_id == member_id:
            result = (result & ~ow.deny) | ow.allow
    return result
