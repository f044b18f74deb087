"""Discord's JSON error answers.

Handlers raise :class:`DiscordError`; the HTTP pipeline turns it into the
exact status and ``{"message", "code"[, "errors"]}`` body Discord sends, so
nextcord raises the same exception class with the same ``.code`` it would
in production.
"""

from __future__ import annotations

from typing import Any


class DiscordError(Exception):
    """An API error answer (status, Discord JSON error code, message)."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        errors: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors

    def body(self) -> dict[str, Any]:
        """The JSON body Discord would answer with."""
        body: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors is not None:
            body["errors"] = self.errors
        return body


def unauthorized() -> DiscordError:
    return DiscordError(401, 0, "401: Unauthorized")


def route_not_found() -> DiscordError:
    return DiscordError(404, 0, "404: Not Found")


def unknown_channel() -> DiscordError:
    return DiscordError(404, 10003, "Unknown Channel")


def unknown_guild() -> DiscordError:
    return DiscordError(404, 10004, "Unknown Guild")


def unknown_member() -> DiscordError:
    return DiscordError(404, 10007, "Unknown Member")


def unknown_message() -> DiscordError:
    return DiscordError(404, 10008, "Unknown Message")


def unknown_user() -> DiscordError:
    return DiscordError(404, 10013, "Unknown User")


def unknown_webhook() -> DiscordError:
    return DiscordError(404, 10015, "Unknown Webhook")


def unknown_command() -> DiscordError:
    return DiscordError(404, 10063, "Unknown application command")


def unknown_interaction() -> DiscordError:
    return DiscordError(404, 10062, "Unknown interaction")


def not_your_application() -> DiscordError:
    return DiscordError(
        403, 20012, "You are not authorized to perform this action on this application"
    )


def entity_too_large() -> DiscordError:
    return DiscordError(413, 40005, "Request entity too large")


def already_acknowledged() -> DiscordError:
    return DiscordError(400, 40060, "Interaction has already been acknowledged")


def missing_access() -> DiscordError:
    return DiscordError(403, 50001, "Missing Access")


def cannot_edit_foreign_message() -> DiscordError:
    return DiscordError(403, 50005, "Cannot edit a message authored by another user")


def empty_message() -> DiscordError:
    return DiscordError(400, 50006, "Cannot send an empty message")


def cannot_message_user() -> DiscordError:
    return DiscordError(403, 50007, "Cannot send messages to this user")


def missing_permissions() -> DiscordError:
    return DiscordError(403, 50013, "Missing Permissions")


def invalid_webhook_token() -> DiscordError:
    return DiscordError(401, 50027, "Invalid Webhook Token")


def invalid_form_body(errors: dict[str, Any]) -> DiscordError:
    return DiscordError(400, 50035, "Invalid Form Body", errors)


def invalid_json() -> DiscordError:
    return DiscordError(400, 50109, "The request body contains invalid JSON.")


def no_mutual_guilds() -> DiscordError:
    return DiscordError(
        403, 50278, "Cannot send messages to this user due to having no mutual guilds"
    )


def field_error(code: str, message: str) -> dict[str, Any]:
    """One leaf of a 50035 ``errors`` tree."""
    return {"_errors": [{"code": code, "message": message}]}


def too_long(limit: int) -> dict[str, Any]:
    return field_error("BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")


def required() -> dict[str, Any]:
    return field_error("BASE_TYPE_REQUIRED", "This field is required")


def nest(path: list[str], leaf: dict[str, Any]) -> dict[str, Any]:
    """Wrap ``leaf`` in Discord's nested error tree at ``path`` (e.g. embeds.0.title)."""
    tree = leaf
    for key in reversed(path):
        tree = {key: tree}
    return tree


def merge(into: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge two error trees so several violations are reported together."""
    for key, value in other.items():
        existing = into.get(key)
        if isinstance(existing, dict) and isinstance(value, dict):
            merge(existing, value)
        elif isinstance(existing, list) and isinstance(value, list):
            existing.extend(value)
        else:
            into[key] = value
    return into
