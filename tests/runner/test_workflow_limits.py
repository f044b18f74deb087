"""The runner's per-workflow operator settings (`workflows.<name>` in config.yaml) that need no
Discord: the estimate (configured, fallback, the workflow's own default, history), the places a
user may hold (`max_per_user` per workflow beside the runner-wide one) and where hand-offs and
late results go (`results_channel_id`). The runner is the real one, on a real store."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import nextcord
import pytest

from notifier.config import Settings, StorageSettings
from notifier.discord.io import DiscordIO
from notifier.events import Notice
from notifier.records import WorkflowRecord, WorkflowStatus, new_workflow_id
from notifier.runner import EstimateSource, Runner, RunnerBusy, WorkflowRequest, results_channel
from notifier.store import ResultStore

RunnerFor = Callable[[Mapping[str, Any]], Runner]


async def _ignore(notice: Notice) -> None:
    del notice


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[ResultStore]:
    opened = await ResultStore.open(StorageSettings(path=tmp_path / "data"))
    yield opened
    await opened.close()


@pytest.fixture
def runner_for(store: ResultStore) -> RunnerFor:
    """A runner with config.yaml-shaped settings (it never talks to Discord here)."""
    io = DiscordIO(nextcord.Client(intents=nextcord.Intents.none()))

    def build(raw: Mapping[str, Any]) -> Runner:
        return Runner(settings=Settings.model_validate(raw), store=store, io=io, notify=_ignore)

    return build


NO_TABLE: dict[str, Any] = {"default_estimates": {}}


@pytest.mark.parametrize(
    ("config", "options", "default_s", "expected"),
    [
        # workflows.<name>.estimate_s: one number for every run.
        ({"workflows": {"count": {"estimate_s": 1200}}}, {"n": "3"}, None, 1200.0),
        # A map: the first option (in the command's order) whose value is a key decides.
        (
            {"workflows": {"count": {"estimate_s": {"fast": 5, "slow": 900}}}},
            {"mode": "slow", "speed": "fast"},
            None,
            900.0,
        ),
        # No option's value is a key: the next source (the workflow's own default) answers.
        ({"workflows": {"count": {"estimate_s": {"slow": 900}}}}, {"mode": "x"}, 42, 42.0),
        # The operator's setting wins over the workflow's own default.
        ({"workflows": {"count": {"estimate_s": 700}}}, {}, 30, 700.0),
        # The workflow's own default, as a map, when the operator set nothing.
        ({"warnings": NO_TABLE}, {"depth": "deep"}, {"quick": 30, "deep": 900}, 900.0),
        # Nothing known: no estimate (and so no warning).
        ({"warnings": NO_TABLE}, {"n": "3"}, None, None),
    ],
)
async def test_the_estimate_comes_from_the_workflows_settings_then_the_workflows_default(
    runner_for: RunnerFor,
    config: dict[str, Any],
    options: dict[str, str],
    default_s: EstimateSource,
    expected: float | None,
) -> None:
    runner = runner_for(config)
    assert await runner.estimate_s("count", options, default_s=default_s) == expected


async def test_warnings_default_estimates_is_the_fallback_and_workflows_estimate_s_wins(
    runner_for: RunnerFor,
) -> None:
    table = {"default_estimates": {"autointel": {"deep": 100, "quick": 10}}}
    older = runner_for({"warnings": table})
    assert await older.estimate_s("autointel", {"url": "u", "depth": "deep"}) == 100.0
    assert await older.estimate_s("autointel", "quick") == 10.0  # the older call form: depth
    both = runner_for(
        {"warnings": table, "workflows": {"autointel": {"estimate_s": {"deep": 1500}}}}
    )
    assert await both.estimate_s("autointel", {"url": "u", "depth": "deep"}) == 1500.0
    # The workflow's map has no key for "quick": the older table still answers.
    assert await both.estimate_s("autointel", {"url": "u", "depth": "quick"}) == 10.0


async def _finished_run(
    store: ResultStore, command: str, options: dict[str, str], took_s: float
) -> None:
    workflow_id = new_workflow_id()
    await store.create(
        WorkflowRecord(
            workflow_id=workflow_id,
            command=command,
            user_id=1,
            user_name="alice",
            options=options,
            guild_id=None,
            channel_id=None,
            ephemeral=False,
            created_at=time.time() - took_s,
        )
    )
    await store.finish(workflow_id, status=WorkflowStatus.COMPLETED, result={"summary": "done"})


async def test_history_wins_once_there_is_some_for_runs_with_the_same_deciding_value(
    runner_for: RunnerFor, store: ResultStore
) -> None:
    runner = runner_for({"workflows": {"render": {"estimate_s": {"slow": 5000, "fast": 60}}}})
    await _finished_run(store, "render", {"mode": "slow"}, 300)
    await _finished_run(store, "render", {"mode": "slow"}, 500)
    # "slow" has history: its median, not the configured 5000.
    slow = await runner.estimate_s("render", {"mode": "slow"})
    assert slow == pytest.approx(400, abs=5)
    # "fast" has none of its own (the slow runs do not count for it): the configured number.
    assert await runner.estimate_s("render", {"mode": "fast"}) == 60.0


async def test_a_workflows_own_limit_refuses_in_words_that_name_it_and_the_runner_caps_all(
    runner_for: RunnerFor,
) -> None:
    runner = runner_for(
        {
            "runner": {"max_per_user": 3},
            "workflows": {"render": {"max_per_user": 1}, "count": {"max_per_user": 5}},
        }
    )
    first = runner.reserve(7, "render")
    with pytest.raises(RunnerBusy) as refused:
        runner.reserve(7, "render")
    assert "/render" in str(refused.value)
    assert "1 /render run" in str(refused.value)
    other_user = runner.reserve(8, "render")  # per user: someone else may
    counts = [runner.reserve(7, "count"), runner.reserve(7, "count")]
    # Three places in all for user 7: the runner-wide limit speaks, not /count's 5.
    with pytest.raises(RunnerBusy) as capped:
        runner.reserve(7, "count")
    assert "You already have 3 workflows running" in str(capped.value)
    first.release()
    runner.reserve(7, "render").release()  # the place given back can be taken again
    for slot in (other_user, *counts):
        slot.release()


async def test_a_slot_reserved_without_a_name_is_held_to_the_workflows_limit_at_start(
    runner_for: RunnerFor, store: ResultStore
) -> None:
    """The cog may reserve before it knows the workflow; `start` names it, checking its limit
    and taking its place before anything is awaited, so the limit holds for commands arriving
    together too."""
    runner = runner_for({"workflows": {"render": {"max_per_user": 1}}})
    held = runner.reserve(7, "render")
    unnamed = runner.reserve(7)  # the runner-wide limit (3) has room
    request = WorkflowRequest(
        command="render",
        options={},
        user_id=7,
        user_name="alice",
        guild_id=None,
        channel_id=None,
        ephemeral=False,
        token=None,
        interaction_created_at=time.time(),
        attachment_limit_bytes=0,
    )

    async def body(options: Mapping[str, str], report: Callable[..., None]) -> dict[str, Any]:
        raise AssertionError("a refused workflow must not run")

    with pytest.raises(RunnerBusy, match="/render"):
        await runner.start(request, body, slot=unnamed)
    assert not unnamed.held  # given back
    assert await store.running() == []  # nothing stored for the refused start
    held.release()
    runner.reserve(7, "render").release()  # the place is free again


@pytest.mark.parametrize(
    ("configured", "guild_id", "ephemeral", "expected"),
    [
        (None, 10, False, 100),  # not configured: the command's channel
        (555, 10, False, 555),  # one channel
        ({10: 555, 20: 666}, 20, False, 666),  # per guild
        ({20: 666}, 10, False, 100),  # a guild not in the map: the command's channel
        (555, None, False, 100),  # a DM: unaffected
        (555, 10, True, 100),  # a private run: never a public channel
        ({10: 555}, 10, True, 100),
    ],
)
def test_the_results_channel(
    configured: int | dict[int, int] | None, guild_id: int | None, ephemeral: bool, expected: int
) -> None:
    assert (
        results_channel(configured, guild_id=guild_id, channel_id=100, ephemeral=ephemeral)
        == expected
    )
