"""The ladder's choice of rung is a pure function of its state: one row per case."""

from __future__ import annotations

import pytest

from notifier.discord.delivery import LadderState, Rung, choose_rung

INT, C, D, N = Rung.INTERACTION, Rung.CHANNEL, Rung.DM, Rung.NONE


@pytest.mark.parametrize(
    ("usable", "ephemeral", "has_channel", "failed", "expected"),
    [
        (True, False, True, set(), INT),
        (True, True, True, set(), INT),
        (False, False, True, set(), C),  # token gone: the channel, with the bot token
        (False, True, True, set(), D),  # ephemeral never goes public: straight to DM
        (False, False, False, set(), D),  # no channel (a DM interaction)
        (False, False, True, {C}, D),  # 50013 in the channel
        (False, False, True, {C, D}, N),  # and DMs closed: only the store has it
        (True, False, True, {INT}, C),  # the token answered 401 early
        (True, True, True, {INT}, D),
        (False, True, True, {D}, N),
    ],
)
def test_choose_rung(
    usable: bool, ephemeral: bool, has_channel: bool, failed: set[Rung], expected: Rung
) -> None:
    state = LadderState(
        interaction_usable=usable,
        ephemeral=ephemeral,
        has_channel=has_channel,
        failed=frozenset(failed),
    )
    assert choose_rung(state) is expected


def test_skip_moves_down_without_marking_failed() -> None:
    state = LadderState(
        interaction_usable=False, ephemeral=False, has_channel=True, skip=frozenset({C})
    )
    assert choose_rung(state) is D
