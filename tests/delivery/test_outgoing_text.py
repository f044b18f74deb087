"""Text sent to Discord never holds a lone surrogate (nextcord with orjson refuses it)."""

from __future__ import annotations

import nextcord.utils
import pytest

from notifier.discord.io import OutgoingMessage


def test_nextcord_here_encodes_with_orjson_which_refuses_lone_surrogates() -> None:
    # The fact the sanitizing exists for: this project installs orjson, so nextcord uses it.
    assert nextcord.utils.HAS_ORJSON
    with pytest.raises(TypeError, match="surrogates"):
        nextcord.utils.to_json({"content": "half a pair: \ud83d"})


def test_every_text_of_a_message_loses_its_lone_surrogates_and_keeps_the_rest() -> None:
    message = OutgoingMessage(
        content="half a pair: \ud83d, whole: 🚀",
        embeds=[{"title": "\udfff", "fields": [{"name": "ключ", "value": "a\ud800z"}]}],
        extra={"components": [{"label": "x\udc00"}]},
    )

    payload = message.payload()

    assert payload["content"] == "half a pair: ?, whole: 🚀"
    assert payload["embeds"] == [{"title": "?", "fields": [{"name": "ключ", "value": "a?z"}]}]
    assert payload["components"] == [{"label": "x?"}]
    nextcord.utils.to_json(payload)  # and nextcord can send it
