"""Who may see or control a workflow (its owner, or an admin of the guild it ran in), and who may
change the bot itself (its operators)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import nextcord

from ..config import DiscordSettings
from ..records import WorkflowRecord

__all__ = ["NOT_FOUND_TEXT", "can_access", "is_admin", "is_operator"]

# One answer for "no such id" and "not yours", so existence is never leaked.
NOT_FOUND_TEXT = "No workflow with that id is available to you."


def is_admin(interaction: nextcord.Interaction[Any], admin_role_ids: Iterable[int]) -> bool:
    """Manage Guild in this channel, or one of the configured admin roles."""
    if interaction.guild_id is None:
        return False
    if interaction.permissions.manage_guild:
        return True
    roles = getattr(interaction.user, "roles", None) or []
    wanted = set(admin_role_ids)
    return any(role.id in wanted for role in roles)


def is_operator(interaction: nextcord.Interaction[Any], discord: DiscordSettings) -> bool:
    """May change the bot itself (reload the configuration every guild shares): a user listed in
    `discord.operator_user_ids`, anywhere; or a member holding a role of `discord.admin_role_ids`
    in one of `discord.guild_ids`, the bot's own servers. Manage Server is not enough: any server
    that added the bot has admins, and they are not its operators."""
    user = interaction.user
    if user is None:
        return False
    if user.id in discord.operator_user_ids:
        return True
    if interaction.guild_id is None or interaction.guild_id not in discord.guild_ids:
        return False
    roles = getattr(user, "roles", None) or []
    wanted = set(discord.admin_role_ids)
    return any(role.id in wanted for role in roles)


def can_access(
    record: WorkflowRecord | None,
    interaction: nextcord.Interaction[Any],
    admin_role_ids: Iterable[int],
) -> bool:
    """True when the caller owns the workflow or administers the guild it ran in."""
    if record is None or interaction.user is None:
        return False
    if record.user_id == interaction.user.id:
        return True
    return (
        record.guild_id is not None
        and record.guild_id == interaction.guild_id
        and is_admin(interaction, admin_role_ids)
    )
