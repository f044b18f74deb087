"""Text as Discord will take it. No nextcord import here: the CLI renders results too."""

from __future__ import annotations

import re

__all__ = ["without_lone_surrogates"]

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


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
