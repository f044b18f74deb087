"""Text as Discord will take it. No nextcord import here: the CLI renders results too.

Outside text (a page's title, a result's fields, a user's URL or name, an error a site caused) is
written by an attacker until shown otherwise. Two things in it would act on other people if it
reached Discord as it is:

- mentions: ``@everyone``, ``@here``, ``<@id>``, ``<@!id>`` and ``<@&id>`` ping whoever they name
  unless the request's ``allowed_mentions`` forbids it, and Apprise 2.3's Discord plugin copies any
  ``@word``, ``@123`` or ``<@&id>`` it finds in a body into the message's content under a misspelt
  ``allow_mentions`` key that Discord ignores (so they all ping; FIELD-NOTES). `inert` puts a
  zero-width space after every ``@``, which neither Discord nor Apprise reads as a mention, and
  every message the bot sends says `allowed_mentions` (nobody, or only the requester whom the bot
  names on purpose);
- masked links: ``[verify](https://evil.example)`` (and ``[verify](<https://evil.example>)``)
  shows "verify" as a link to anywhere, in embeds, webhook messages and bot messages alike.
  `inert` puts a zero-width space between ``]`` and ``(``, so the text shows as written and the
  URL, if Discord links it at all, shows its real target.

A zero-width space is invisible where the text is read, so the words stay the words the page wrote.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = [
    "ZERO_WIDTH_SPACE",
    "allowed_mentions",
    "inert",
    "user_mention",
    "without_lone_surrogates",
]

ZERO_WIDTH_SPACE: Final = "\u200b"

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# Every "@" not already defused: every mention form Discord or Apprise parses starts with one.
_AT = re.compile("@(?!\u200b)")
# A "]" that a "(" follows (after blanks, or later, from the next piece of text): a masked link.
_LINK_CLOSE = re.compile(r"\](?=\s*\(|\s*$)")


def without_lone_surrogates[T](value: T) -> T:
    """`value` (text, or dicts and lists of it) with every lone surrogate replaced by "?".

    Results may hold them (a string cut in the middle of a UTF-16 pair is valid in JSON and is
    stored exactly), but Discord cannot show one, and nextcord with orjson installed (its ``speed``
    extra, and this project, which encodes results with orjson) refuses to send such text, or to
    read it back in Discord's answer: the message was posted, the ladder saw a failure.
    """
    if isinstance(value, str):
        if value.isascii() or _LONE_SURROGATE.search(value) is None:
            return value
        return _LONE_SURROGATE.sub("?", value)  # type: ignore[return-value]
    if isinstance(value, dict):
        return {k: without_lone_surrogates(v) for k, v in value.items()}  # type: ignore[return-value]
    if isinstance(value, list):
        return [without_lone_surrogates(item) for item in value]  # type: ignore[return-value]
    return value


def inert(text: str) -> str:
    """Outside text that can neither ping anyone nor hide a link (module docstring), wherever it
    is shown: Discord content, embeds, Apprise's Discord plugin, e-mail, JSON.

    Idempotent, and it changes nothing else: text without "@" or "](" comes back as it was. A
    "]" at the very end also gets the space, so a template that puts "(" right after the field
    cannot complete a link either.
    """
    if "@" in text:
        text = _AT.sub("@" + ZERO_WIDTH_SPACE, text)
    if "]" in text:
        text = _LINK_CLOSE.sub("]" + ZERO_WIDTH_SPACE, text)
    return text


def user_mention(user_id: int) -> str:
    """How the bot names a user on purpose (the requester, in a channel): ``<@id>``."""
    return f"<@{user_id}>"


def allowed_mentions(user_id: int | None = None) -> dict[str, list[str]]:
    """The ``allowed_mentions`` every message carries: nobody may be pinged, or only `user_id`
    (the requester, whom the bot mentions on purpose). Without the key Discord pings every mention
    in the content; with it, only what it lists."""
    if user_id is None:
        return {"parse": []}
    return {"parse": [], "users": [str(user_id)]}
