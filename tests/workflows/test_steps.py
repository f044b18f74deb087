"""`ctx.step`: recorded values, replay after a restart, the determinism check, retries, and the
errors an author sees. The journal here is the in-memory one (the store's is tested with the
runner); what is asserted is what a workflow author observes: values, calls, messages."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import REGISTRY

from notifier.config import Settings
from notifier.errors import NotifierError
from notifier.runner.journal import steps_done_text
from notifier.workflows import Context, WorkflowFailed, workflow
from notifier.workflows.contract import MemoryJournal


def _ctx(journal: Any) -> Context:
    return Context(
        workflow_id="w" * 32,
        user_id=1,
        guild_id=None,
        private=False,
        options={},
        report=lambda **_: None,
        journal=journal,
    )


class Calls:
    """An async step function that counts its calls and returns what it was given."""

    def __init__(self, fail_times: int = 0) -> None:
        self.calls = 0
        self.fail_times = fail_times

    async def __call__(self, value: Any) -> Any:
        self.calls += 1
        if self.calls <= self.fail_times:
            raise ConnectionError(f"attempt {self.calls} failed")
        return value


async def test_a_step_runs_once_records_its_value_and_returns_it_as_recorded() -> None:
    journal = MemoryJournal()
    ctx = _ctx(journal)
    fn = Calls()
    value = await ctx.step("page:0", fn, {"title": "T", "pair": (1, 2)})
    assert value == {"title": "T", "pair": [1, 2]}  # a tuple comes back a list, as on replay
    assert fn.calls == 1
    assert journal.recorded == [(0, "page:0", {"title": "T", "pair": [1, 2]})]
    assert ctx.steps_done == 1


def _steps_counted(outcome: str) -> float:
    return REGISTRY.get_sample_value("notifier_workflow_steps_total", {"outcome": outcome}) or 0.0


async def test_a_resumed_run_gets_recorded_values_back_without_running_them() -> None:
    journal = MemoryJournal(replayed=[("plan", ["a", "b"]), ("page:0", {"n": 1})])
    ctx = _ctx(journal)
    fn = Calls()
    replayed, recorded = _steps_counted("replayed"), _steps_counted("recorded")
    assert await ctx.step("plan", fn, ["other"]) == ["a", "b"]
    assert ctx.replaying
    assert await ctx.step("page:0", fn, {"n": 99}) == {"n": 1}
    assert not ctx.replaying
    assert fn.calls == 0
    assert await ctx.step("page:1", fn, {"n": 2}) == {"n": 2}
    assert fn.calls == 1
    assert journal.recorded == [(2, "page:1", {"n": 2})]
    # Operators see the same on /metrics.
    assert _steps_counted("replayed") == replayed + 2
    assert _steps_counted("recorded") == recorded + 1


async def test_a_step_named_otherwise_on_replay_fails_the_run_naming_both() -> None:
    ctx = _ctx(MemoryJournal(replayed=[("plan", 1), ("page:0", 2), ("page:1", 3), ("page:2", 4)]))
    fn = Calls()
    for name in ("plan", "page:0", "page:1"):
        await ctx.step(name, fn, 0)
    with pytest.raises(WorkflowFailed) as caught:
        await ctx.step("page:5", fn, 0)
    assert caught.value.message == (
        "the workflow is not deterministic: step 3 was 'page:2' when recorded and is 'page:5' now"
    )
    assert fn.calls == 0  # no recorded value was handed to the wrong step, nothing ran


async def test_a_workflow_that_ends_before_its_recorded_steps_fails() -> None:
    @workflow(description="Ends early on replay")
    async def early(ctx: Context) -> dict:
        await ctx.step("one", Calls(), 1)
        return {"done": True}

    journal = MemoryJournal(replayed=[("one", 1), ("two", 2)])
    ctx = _ctx(journal)
    spec = early.bind(Settings())
    with pytest.raises(WorkflowFailed, match="recorded 2 steps before the restart and ended"):
        await spec.run({}, ctx)


async def test_a_failing_step_is_retried_in_place_then_recorded_once() -> None:
    journal = MemoryJournal()
    fn = Calls(fail_times=2)
    value = await _ctx(journal).step("fetch", fn, "ok", retries=2, backoff_s=0.0)
    assert value == "ok"
    assert fn.calls == 3
    assert journal.recorded == [(0, "fetch", "ok")]


async def test_a_step_that_still_fails_is_not_recorded_and_its_error_reaches_the_workflow() -> None:
    journal = MemoryJournal()
    ctx = _ctx(journal)
    fn = Calls(fail_times=5)
    with pytest.raises(ConnectionError, match="attempt 2 failed"):
        await ctx.step("fetch", fn, "ok", retries=1, backoff_s=0.0)
    assert journal.recorded == []
    # The next step takes the failed one's place: recorded steps stay contiguous.
    assert await ctx.step("other", Calls(), 5) == 5
    assert journal.recorded == [(0, "other", 5)]


async def test_a_value_that_is_not_json_fails_the_step_with_a_clear_message() -> None:
    journal = MemoryJournal()
    with pytest.raises(WorkflowFailed, match="step 'odd' returned a value that is not JSON"):
        await _ctx(journal).step("odd", Calls(), {1, 2})
    assert journal.recorded == []


class RefusingJournal(MemoryJournal):
    async def record(self, index: int, name: str, value: object) -> None:
        raise NotifierError("the step's value is 2,000,000 bytes; the limit is 1,048,576")


async def test_a_value_the_journal_refuses_fails_the_run_with_the_journals_words() -> None:
    with pytest.raises(WorkflowFailed) as caught:
        await _ctx(RefusingJournal()).step("big", Calls(), "x")
    assert caught.value.message == (
        "step 'big' could not be recorded: the step's value is 2,000,000 bytes; the limit is "
        "1,048,576"
    )


def plain(value: int) -> int:
    return value


@pytest.mark.parametrize(
    ("name", "fn", "kwargs", "message"),
    [
        ("sync", plain, {}, "plain is not an async function"),
        ("", Calls(), {}, "a step's name must be 1-100 characters"),
        ("x" * 101, Calls(), {}, "a step's name must be 1-100 characters"),
        ("neg", Calls(), {"retries": -1}, "retries must be a whole number"),
    ],
)
async def test_a_step_called_wrongly_is_a_type_error_naming_the_mistake(
    name: str, fn: Any, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(TypeError, match=message):
        await _ctx(MemoryJournal()).step(name, fn, 1, **kwargs)


async def test_steps_run_one_at_a_time() -> None:
    ctx = _ctx(MemoryJournal())

    async def nested() -> int:
        return await ctx.step("inner", Calls(), 1)

    with pytest.raises(RuntimeError, match="started while step 'outer' was running"):
        await ctx.step("outer", nested)


def test_resumable_is_on_by_default_and_can_be_declared_off() -> None:
    @workflow(description="Resumes")
    async def resumes(ctx: Context) -> dict:
        return {}

    @workflow(description="Never resumes", resumable=False)
    async def once(ctx: Context) -> dict:
        return {}

    assert resumes.bind(Settings()).resumable is True
    assert once.bind(Settings()).resumable is False


def test_the_resume_notice_counts_done_steps_against_the_most_a_run_records() -> None:
    @workflow(description="Crawls", max_steps=lambda depth="quick": {"quick": 3, "deep": 15}[depth])
    async def crawl(ctx: Context, depth: str = "quick") -> dict:
        return {}

    @workflow(description="Open-ended")
    async def open_ended(ctx: Context) -> dict:
        return {}

    spec = crawl.bind(Settings())
    assert spec.max_steps is not None
    assert spec.max_steps({"depth": "deep"}) == 15
    assert spec.max_steps({}) == 3
    assert open_ended.bind(Settings()).max_steps is None
    pages = [f"page:{i}" for i in range(7)]
    assert steps_done_text(pages, of=15) == "7 of up to 15 pages"
    assert steps_done_text(pages) == "7 pages"
    assert steps_done_text(["page:0"], of=1) == "1 of up to 1 page"
    assert steps_done_text(["plan", "page:0"], of=3) == "2 of up to 3 steps"
    assert steps_done_text(pages, of=5) == "7 of up to 7 pages"  # never fewer than were done


def test_autointel_says_its_page_budget_is_the_most_steps_a_run_records() -> None:
    from notifier.config import AutointelSettings
    from notifier.workflows.autointel import build_autointel

    spec = build_autointel(AutointelSettings(pages={"deep": 15, "quick": 2}))
    assert spec.max_steps is not None
    assert spec.max_steps({"url": "https://example.com/", "depth": "deep"}) == 15
    assert spec.max_steps({"url": "https://example.com/", "depth": "quick"}) == 2


def test_max_steps_must_be_a_function() -> None:
    with pytest.raises(NotifierError, match="max_steps must be a function of the options"):

        @workflow(description="Bad", max_steps=15)  # type: ignore[arg-type]
        async def bad(ctx: Context) -> dict:
            return {}
