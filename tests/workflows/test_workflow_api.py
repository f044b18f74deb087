"""`@workflow` and `Context`: what a signature becomes (the command's options, as Discord would
get them), how option text is read and refused, and how a run sees its Context."""

from __future__ import annotations

import enum
import math
import subprocess
import sys
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import pytest

from notifier import Context, workflow
from notifier.config import Settings
from notifier.workflows import (
    InvalidWorkflowOptions,
    Workflow,
    WorkflowDefinitionError,
    WorkflowFailed,
)


class Colour(enum.Enum):
    RED = "red"
    GREEN = "green"


@workflow(description="Every kind of option", estimate_s={"fast": 5.0, "slow": 600.0})
async def kinds(
    ctx: Context,
    name: Annotated[str, "Who to greet"],
    n: int = 3,
    ratio: float = 0.5,
    loud: bool = False,
    speed: Literal["fast", "slow"] = "fast",
    colour: Colour = Colour.RED,
    size: Literal[1, 2, 3] | None = None,
) -> dict[str, Any]:
    return {
        "summary": f"{name} {n} {ratio} {loud} {speed} {colour.name} {size}",
        "values": [name, n, ratio, loud, speed, colour.value, size],
        "facts": [ctx.workflow_id, ctx.user_id, ctx.guild_id, ctx.private, dict(ctx.options)],
    }


class Recorder:
    def __init__(self) -> None:
        self.reports: list[tuple[str, float, str]] = []

    def __call__(self, *, stage: str, progress: float, detail: str = "") -> None:
        self.reports.append((stage, progress, detail))


def test_the_signature_becomes_the_command() -> None:
    assert isinstance(kinds, Workflow)
    assert (kinds.name, kinds.description) == ("kinds", "Every kind of option")
    assert kinds.estimate_s == {"fast": 5.0, "slow": 600.0}
    table = [
        (o.name, o.kind, o.required, o.default, [c.label for c in o.choices], o.description)
        for o in kinds.options
    ]
    assert table == [
        ("name", str, True, None, [], "Who to greet"),
        ("n", int, False, 3, [], "a whole number"),
        ("ratio", float, False, 0.5, [], "a number"),
        ("loud", bool, False, False, [], "true or false"),
        ("speed", str, False, "fast", ["fast", "slow"], "one of fast, slow"),
        ("colour", str, False, Colour.RED, ["RED", "GREEN"], "one of RED, GREEN"),
        ("size", int, False, None, ["1", "2", "3"], "one of 1, 2, 3"),
    ]
    assert [c.value for c in kinds.options[5].choices] == ["red", "green"]
    # `private` is not an option of the workflow: every command has it; this one does not take it.
    assert (kinds.takes_private, kinds.private_default) == (False, False)


def test_required_options_come_first_as_discord_wants() -> None:
    @workflow(description="d")
    async def late(ctx: Context, *, a: int = 1, b: str, c: bool = True, d: float) -> dict[str, Any]:
        return {}

    assert [(o.name, o.required) for o in late.options] == [
        ("b", True),
        ("d", True),
        ("a", False),
        ("c", False),
    ]


def test_an_optional_option_without_a_value_is_left_out() -> None:
    assert "size" not in kinds.parse({"name": "a"})
    assert kinds.as_text(kinds.parse({"name": "a"})) == {
        "name": "a",
        "n": "3",
        "ratio": "0.5",
        "loud": "false",
        "speed": "fast",
        "colour": "red",
    }


@pytest.mark.parametrize(
    ("given", "typed"),
    [
        ({"name": "ann"}, {"name": "ann", "n": 3, "ratio": 0.5, "loud": False, "speed": "fast"}),
        ({"name": " ann ", "n": " 12 "}, {"name": " ann ", "n": 12}),
        ({"name": "a", "n": "-4", "ratio": "1e2"}, {"n": -4, "ratio": 100.0}),
        ({"name": "a", "loud": "Yes"}, {"loud": True}),
        ({"name": "a", "loud": "off"}, {"loud": False}),
        ({"name": "a", "speed": " SLOW "}, {"speed": "slow"}),
        ({"name": "a", "colour": "green"}, {"colour": Colour.GREEN}),
        ({"name": "a", "colour": "GREEN"}, {"colour": Colour.GREEN}),
        ({"name": "a", "size": "2"}, {"size": 2}),
    ],
)
def test_option_text_is_read_into_typed_values(
    given: dict[str, str], typed: dict[str, Any]
) -> None:
    values = kinds.parse(given)
    for key, value in typed.items():
        assert values[key] == value and type(values[key]) is type(value)


@pytest.mark.parametrize(
    ("given", "field", "words"),
    [
        ({}, "name", "is required"),
        ({"name": "a", "n": "three"}, "n", "must be a whole number (got 'three')"),
        ({"name": "a", "n": "1.5"}, "n", "must be a whole number"),
        ({"name": "a", "n": "9" * 400}, "n", "must be a whole number"),
        ({"name": "a", "ratio": "nan"}, "ratio", "must be a number (got 'nan')"),
        ({"name": "a", "ratio": "inf"}, "ratio", "must be a number"),
        ({"name": "a", "loud": "maybe"}, "loud", "must be true or false (got 'maybe')"),
        ({"name": "a", "speed": "warp"}, "speed", "must be one of fast, slow (got 'warp')"),
        ({"name": "a", "colour": "blue"}, "colour", "must be one of RED, GREEN (got 'blue')"),
        ({"name": "a", "size": "4"}, "size", "must be one of 1, 2, 3 (got '4')"),
        ({"name": "a", "speed": "fast\nslow"}, "speed", "(got 'fast\\nslow')"),
        ({"name": "a", "private": "true"}, "private", "unknown option (kinds takes name, n,"),
        ({"name": "a", "colr": "red"}, "colr", "unknown option"),
    ],
)
async def test_bad_option_text_is_refused_naming_the_option(
    given: dict[str, str], field: str, words: str
) -> None:
    spec = kinds.bind(Settings())
    with pytest.raises(InvalidWorkflowOptions) as caught:
        await spec.validate(given)
    assert caught.value.field == field
    assert words in caught.value.message
    assert "\n" not in str(caught.value)


async def test_validation_returns_the_stored_text_and_a_run_reads_it_back() -> None:
    spec = kinds.bind(Settings())
    stored = await spec.validate({"name": "ann", "ratio": "2", "colour": "Green", "size": "3"})
    assert stored == {
        "name": "ann",
        "n": "3",
        "ratio": "2.0",
        "loud": "false",
        "speed": "fast",
        "colour": "green",
        "size": "3",
    }
    assert await spec.validate(stored) == stored  # the stored form is a fixed point
    ctx = Context(
        workflow_id="w1", user_id=7, guild_id=9, private=True, options=stored, report=Recorder()
    )
    result = await spec.run(stored, ctx)
    assert result["values"] == ["ann", 3, 2.0, False, "fast", "green", 3]
    assert result["facts"] == ["w1", 7, 9, True, stored]


async def test_a_run_outside_the_bot_gets_a_context_with_empty_facts() -> None:
    spec = kinds.bind(Settings())
    result = await spec.run({"name": "x"}, Recorder())
    assert result["facts"] == ["", 0, None, False, {"name": "x"}]


def test_context_progress_is_clamped_and_its_facts_are_read_only() -> None:
    recorder = Recorder()
    ctx = Context(
        workflow_id="w",
        user_id=1,
        guild_id=None,
        private=False,
        options={"n": "1"},
        report=recorder,
    )
    for fraction in (-0.5, 0.25, 1.7, math.nan, 1):
        ctx.progress(stage="s", fraction=fraction, detail=f"{fraction}")
    ctx(stage="old-style", progress=0.5)  # a Context is a ReportProgress too
    assert [p for _, p, _ in recorder.reports] == [0.0, 0.25, 1.0, 0.0, 1.0, 0.5]
    assert recorder.reports[-1] == ("old-style", 0.5, "")
    with pytest.raises(AttributeError):
        ctx.workflow_id = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        ctx.options["n"] = "2"  # type: ignore[index]


async def test_private_is_passed_only_to_a_workflow_that_declares_it() -> None:
    @workflow(description="d")
    async def shy(ctx: Context, private: bool = True) -> dict[str, Any]:
        return {"private": private}

    assert (shy.takes_private, shy.private_default, shy.options) == (True, True, ())
    spec = shy.bind(Settings())
    assert await spec.validate({}) == {}
    ctx = Context(
        workflow_id="w", user_id=1, guild_id=None, private=False, options={}, report=Recorder()
    )
    assert await spec.run({}, ctx) == {"private": False}


async def test_a_validator_refuses_before_anything_starts_or_normalises() -> None:
    @workflow(description="d")
    async def bounded(ctx: Context, n: int, label: str = "x") -> dict[str, Any]:
        return {"n": n, "label": label}

    @bounded.validator
    async def check(n: int, label: str) -> Mapping[str, Any]:
        if n > 100:
            raise InvalidWorkflowOptions("n", "must be at most 100")
        return {"label": label.strip().lower()}

    spec = bounded.bind(Settings())
    assert await spec.validate({"n": "5", "label": "  ABC "}) == {"n": "5", "label": "abc"}
    with pytest.raises(InvalidWorkflowOptions) as caught:
        await spec.validate({"n": "101"})
    assert (caught.value.field, caught.value.message) == ("n", "must be at most 100")


async def test_a_result_that_is_not_a_dict_fails_the_run() -> None:
    @workflow(description="d")
    async def wrong(ctx: Context) -> Any:
        return ["not", "a", "dict"]

    with pytest.raises(WorkflowFailed, match="returned list, not a dict"):
        await wrong.bind(Settings()).run({}, Recorder())


async def test_a_class_workflow_is_built_once_per_bot_with_its_settings_and_closed() -> None:
    events: list[str] = []

    class Pool:
        def __init__(self, settings: Settings) -> None:
            self.workers = settings.runner.max_concurrent
            events.append("built")

        async def validate(self, size: int) -> None:
            if size > self.workers:
                raise InvalidWorkflowOptions("size", f"at most {self.workers}")

        async def run(self, ctx: Context, size: int = 2) -> dict[str, Any]:
            ctx.progress(stage="pooling", fraction=0.5)
            return {"summary": f"{size} of {self.workers}"}

        async def close(self) -> None:
            events.append("closed")

    pooled = workflow(name="pooled", description="d")(Pool)
    spec = pooled.bind(Settings.model_validate({"runner": {"max_concurrent": 4}}))
    assert events == ["built"]
    with pytest.raises(InvalidWorkflowOptions, match="at most 4"):
        await spec.validate({"size": "5"})
    assert await spec.run(await spec.validate({}), Recorder()) == {"summary": "2 of 4"}
    assert spec.close is not None
    await spec.close()
    assert events == ["built", "closed"]


class _NotAnOption:
    pass


async def _plain(ctx: Context) -> dict[str, Any]:
    return {}


@pytest.mark.parametrize(
    ("define", "words"),
    [
        (lambda: workflow(description="d")(lambda ctx: {}), "must be 1-32 lowercase"),
        (lambda: workflow(name="sync", description="d")(lambda ctx: {}), "must be an `async def`"),
        (lambda: workflow(name="CountSlowly", description="d")(_plain), "lowercase letters"),
        (lambda: workflow(name="x", description="")(_plain), "description must be 1-100"),
        (lambda: workflow(name="x", description="d" * 101)(_plain), "description must be 1-100"),
        (lambda: workflow(name="x", description="d", estimate_s=0)(_plain), "estimate_s must be"),
        (lambda: workflow(name="x", description="d", estimate_s={"a": -1})(_plain), "estimate_s"),
    ],
)
def test_a_workflow_discord_cannot_show_is_refused_when_defined(define: Any, words: str) -> None:
    with pytest.raises(WorkflowDefinitionError) as caught:
        define()
    assert words in str(caught.value)


def _define(signature: str, extra: str = "") -> None:
    """Define `async def odd(ctx: Context, <signature>)` as a workflow file would."""
    source = (
        "import enum\nfrom datetime import datetime\nfrom typing import Annotated, Literal\n"
        "from notifier import workflow, Context\n"
        f"{extra}\n"
        '@workflow(description="d")\n'
        f"async def odd(ctx: Context, {signature}) -> dict:\n    return {{}}\n"
    )
    exec(compile(source, "odd.py", "exec"), {"__name__": "odd_module"})


@pytest.mark.parametrize(
    ("signature", "extra", "words"),
    [
        ("when: datetime", "", "parameter 'when' has the annotation datetime, which Discord"),
        ("tags: list[str]", "", "parameter 'tags' has the annotation list"),
        ("n", "", "parameter 'n' has no annotation"),
        ("flag: Literal[True, False]", "", "parameter 'flag' has a Literal whose values are not"),
        ("mix: Literal['a', 1]", "", "parameter 'mix' has choices that mix text and numbers"),
        ("c: Literal['a', 'A']", "", "parameter 'c' has two choices that differ only in case"),
        (
            "depth: Literal['a', 'b'] = 'c'",
            "",
            "parameter 'depth' has the default 'c': must be one",
        ),
        ("n: int = 'ten'", "", "parameter 'n' has the default 'ten', which is not a whole number"),
        ("n: int | None", "", "parameter 'n' is optional (`| None`) but has no default"),
        ("n: int = None", "", "parameter 'n' defaults to None but its annotation"),
        ("Big: int", "", "parameter 'Big': an option's name must be 1-32 lowercase"),
        ("*rest: int", "", "parameter 'rest': *args, **kwargs"),
        ("interaction: str", "", "parameter 'interaction': the command's own callback uses"),
        ("private: str = 'no'", "", "parameter 'private': `private` is the visibility switch"),
        ("x: Annotated[int, '" + "w" * 101 + "']", "", "'x' has a description longer than 100"),
        ("e: E", "class E(enum.Enum):\n    A = 1.5j\n", "the Enum E, whose values are not all"),
        ("e: E = 'a'", "class E(enum.Enum):\n    A = 'a'\n", "which is not a member of E"),
    ],
)
def test_an_unsupported_parameter_is_an_error_naming_the_workflow_and_the_parameter(
    signature: str, extra: str, words: str
) -> None:
    with pytest.raises(WorkflowDefinitionError) as caught:
        _define(signature, extra)
    assert str(caught.value).startswith("workflow 'odd': ")
    assert words in str(caught.value)
    assert caught.value.line is not None


def test_the_first_parameter_must_be_the_context() -> None:
    with pytest.raises(WorkflowDefinitionError, match="first parameter 'n' must be annotated"):

        @workflow(description="d")
        async def backwards(n: int) -> dict[str, Any]:
            return {}


def test_a_class_workflow_needs_a_name_and_an_async_run() -> None:
    class NoName:
        async def run(self, ctx: Context) -> dict[str, Any]:
            return {}

    class SyncRun:
        def run(self, ctx: Context) -> dict[str, Any]:
            return {}

    with pytest.raises(WorkflowDefinitionError, match="needs `name=`"):
        workflow(description="d")(NoName)
    with pytest.raises(WorkflowDefinitionError, match="`run` must be an `async def`"):
        workflow(name="sync-run", description="d")(SyncRun)


def test_importing_the_author_api_does_not_import_nextcord() -> None:
    """The CLI and the kernel stay free of nextcord: `from notifier import workflow, Context`
    is cheap."""
    code = (
        "import sys\n"
        "from notifier import workflow, Context\n"
        "import notifier.workflows\n"
        "heavy = [m for m in ('nextcord', 'notifier.workflows.autointel', 'aiohttp') "
        "if m in sys.modules]\n"
        "print(heavy)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == "[]", done.stderr


def test_the_unused_type_is_not_an_option() -> None:
    """Guard for the table above: a class that is neither an Enum nor a base type is refused."""
    with pytest.raises(WorkflowDefinitionError, match="_NotAnOption"):

        @workflow(description="d")
        async def other(ctx: Context, thing: _NotAnOption) -> dict[str, Any]:
            return {}
