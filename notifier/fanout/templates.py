"""Notice templates: a title and a body with `{field}` placeholders, checked when the config loads.

Fields are plain names (`{workflow_id}`); attribute and index access (`{user.__class__}`) is refused,
since a config file has no business reaching into objects. `DEFAULT_TEMPLATES` gives every event a
title and body; a notifier entry may override them per event.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass

from ..events import Event, Notice

__all__ = [
    "DEFAULT_TEMPLATES",
    "TRUSTED_FIELDS",
    "MessageTemplate",
    "TemplateFieldError",
    "notice_field_names",
    "template_field_names",
]


@dataclass(frozen=True, slots=True)
class MessageTemplate:
    """A title and body with `{field}` placeholders, filled with `str.format_map`."""

    title: str
    body: str


class TemplateFieldError(ValueError):
    """A template names a field no notice has, or is not a valid format string."""


_NOTICE_FIELDS: frozenset[str] = frozenset(
    Notice(event=Event.STARTED, workflow_id="", user_id=0, user_name="", command="")
    .template_fields()
    .keys()
)


# Fields the bot fills with its own words on purpose; every other field's value comes from outside
# (pages, users, sites) and is made inert before a template holds it (`RenderedNotice.render`).
# `user_mention` is the requester's `<@id>`: a template that names it pings them, and only them.
TRUSTED_FIELDS: frozenset[str] = frozenset({"user_mention"})


def notice_field_names() -> frozenset[str]:
    """Every field a template may name for any notice (`Notice.template_fields()` keys)."""
    return _NOTICE_FIELDS


def template_field_names(text: str) -> set[str]:
    """The field names `text` uses. Raises TemplateFieldError on bad syntax or on attribute and
    index access (`{user.__class__}`, `{options[0]}`), which a config file has no business doing."""
    names: set[str] = set()
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise TemplateFieldError(f"not a valid template ({exc})") from None
    for _, field_name, spec, _ in parsed:
        if field_name is None:
            continue
        if field_name == "" or not field_name.isidentifier():
            raise TemplateFieldError(
                f"template fields must be plain names like {{workflow_id}}, got {{{field_name}}}"
            )
        if spec and ("{" in spec):
            raise TemplateFieldError(f"nested fields in a format spec are not allowed ({spec!r})")
        names.add(field_name)
    return names


_T = MessageTemplate
DEFAULT_TEMPLATES: Mapping[Event, MessageTemplate] = {
    Event.STARTED: _T("Started: {command}", "{user} started {command} (workflow {workflow_id})."),
    Event.PROGRESS: _T(
        "Progress: {command} {progress}", "{command} for {user}: {progress} {stage}"
    ),
    Event.HANDOFF: _T(
        "Handed off: {command}",
        "{command} for {user} outlived the interaction window; its result will be delivered "
        "through {rung} (workflow {workflow_id}).",
    ),
    Event.SESSION_LOST: _T(
        "Discord session lost: {command}",
        "The Discord session of {command} for {user} was lost. The result is kept; retrieve it "
        "with {retrieval_command}.",
    ),
    Event.COMPLETED: _T(
        "Completed: {command}", "{command} for {user} completed in {duration}. {summary}"
    ),
    Event.FAILED: _T("Failed: {command}", "{command} for {user} failed: {error}"),
    Event.PERSISTED: _T(
        "Result saved: {command}",
        "The result of {command} for {user} is stored; retrieve it with {retrieval_command}.",
    ),
    Event.INTERRUPTED: _T(
        "Interrupted: {command}",
        "{command} for {user} was interrupted ({error}). Retrieve what was saved with "
        "{retrieval_command}.",
    ),
    Event.RESUMED: _T(
        "Resumed: {command}",
        "{command} for {user} was resumed after a restart (workflow {workflow_id}): {summary}",
    ),
    Event.STORAGE_ERROR: _T(
        "Storage error: {command}",
        "The result of {command} for {user} (workflow {workflow_id}) could not be stored: {error}",
    ),
}
