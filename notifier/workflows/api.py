"""The author's API: `@workflow` and `Context`.

A workflow is an async function whose signature is its slash command::

    @workflow(description="Count slowly", estimate_s=1200)
    async def count(ctx: Context, n: int = 10, private: bool = False) -> dict:
        ...

The first parameter is the `Context`; every other one is a command option. `str`, `int`,
`float` and `bool` become options of that type, a `typing.Literal[...]` of strings or numbers
and an `enum.Enum` become choices, `Annotated[T, "text"]` gives the option its description, a
default makes it optional (`T | None = None` too), and a parameter named `private` (a `bool`) is
the visibility switch every workflow command has: when true only the user sees the progress and
the result. `private` is never stored as an option; the function receives it only if it declares
it.

Everything Discord cannot show is refused when the decorator runs (so when the workflow file is
loaded), naming the workflow and the parameter: `WorkflowDefinitionError`.

The runner works with text: the options stored with a workflow are the canonical text of each
value (``{"n": "10"}``), which is what `/retrieve_results`, the CLI and the notifier templates
show. `Workflow.parse` turns text into typed values (a value outside the choices or one that does
not convert raises InvalidWorkflowOptions naming the option), `Workflow.as_text` turns typed
values back, and `Workflow.bind(settings)` builds the `WorkflowSpec` the runner runs.

A workflow that holds something across runs (a connection pool, worker processes) or needs the
bot's settings is a class instead of a function: ``workflow(...)(MyWorkflow)``, where
``MyWorkflow(settings)`` is built once per bot, its ``async def run(self, ctx, ...)`` is the
command (as above), and it may define ``async def validate(self, **options)`` (raise
InvalidWorkflowOptions, or return normalised values) and ``async def close(self)`` (awaited at
shutdown). A function workflow gets the same validation hook with ``@count.validator``.

Nothing here imports nextcord: the cogs turn a `Workflow`'s options into a slash command.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import math
import re
import types
import typing
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, Literal, cast

import orjson

from ..errors import NotifierError
from ..metrics import WORKFLOW_STEPS
from .contract import (
    InvalidWorkflowOptions,
    MemoryJournal,
    ReportProgress,
    StepJournal,
    WorkflowDefinitionError,
    WorkflowFailed,
    WorkflowSpec,
)

if TYPE_CHECKING:
    from ..config import Settings

__all__ = [
    "PRIVATE",
    "Choice",
    "Context",
    "Workflow",
    "WorkflowOption",
    "workflow",
]

#: The visibility switch every workflow command has.
PRIVATE: Final = "private"
PRIVATE_DESCRIPTION: Final = "Only you see the progress and the result"

# Discord's rules for command and option names (lowercase; config keys use the same pattern)
# and for descriptions, and its cap of 25 options a command.
_NAME = re.compile(r"^[a-z0-9_-]{1,32}$")
_MAX_DESCRIPTION: Final = 100
_MAX_OPTIONS: Final = 25
_MAX_CHOICES: Final = 25
_MAX_NUMBER_TEXT: Final = 40  # longer text is no number anyone typed (and int() of it is slow)
_TRUE: Final = frozenset({"true", "yes", "on", "1"})
_FALSE: Final = frozenset({"false", "no", "off", "0"})
# Parameter names of the generated command's callback (cogs/workflow_commands.py).
_TAKEN_NAMES: Final = frozenset({"self", "interaction"})
_BASE_KINDS: Final = (str, int, float, bool)
_KIND_WORDS: Final = {str: "text", int: "a whole number", float: "a number", bool: "true or false"}
_MAX_STEP_NAME: Final = 100


def _shown(value: object) -> str:
    """A value as the user typed it, quoted, one line, short enough for an error message."""
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


# ---------------------------------------------------------------------------------------------
# Context


class Context:
    """The workflow's one handle on the runner, built for each run.

    Read-only facts about the run (`workflow_id`, `user_id`, `guild_id`, `private`, and the
    `options` as stored, as text), `progress`, which the runner throttles before anything
    reaches Discord, and `step`, which records a unit of work so that a run resumed after a
    restart gets its value back instead of doing it again.

    It is also a `ReportProgress` (``ctx(stage=, progress=, detail=)``), so a workflow written
    against ``run(options, report)`` runs unchanged when handed a Context.
    """

    __slots__ = (
        "_fraction",
        "_guild_id",
        "_journal",
        "_options",
        "_private",
        "_report",
        "_stepping",
        "_steps_done",
        "_user_id",
        "_wid",
    )

    def __init__(
        self,
        *,
        workflow_id: str,
        user_id: int,
        guild_id: int | None,
        private: bool,
        options: Mapping[str, str],
        report: ReportProgress,
        journal: StepJournal | None = None,
    ) -> None:
        self._wid = workflow_id
        self._user_id = user_id
        self._guild_id = guild_id
        self._private = private
        self._options: Mapping[str, str] = MappingProxyType(dict(options))
        self._report = report
        self._fraction = 0.0
        self._journal: StepJournal = journal if journal is not None else MemoryJournal()
        self._steps_done = 0
        self._stepping: str | None = None

    @classmethod
    def outside_the_bot(cls, options: Mapping[str, str], report: ReportProgress) -> Context:
        """A Context for a run that no bot started (a test or a script calling `spec.run` with a
        plain callback): no workflow id (``""``), user 0, no guild, not private, its steps kept
        in memory only."""
        return cls(
            workflow_id="", user_id=0, guild_id=None, private=False, options=options, report=report
        )

    @property
    def workflow_id(self) -> str:
        return self._wid

    @property
    def user_id(self) -> int:
        return self._user_id

    @property
    def guild_id(self) -> int | None:
        return self._guild_id

    @property
    def private(self) -> bool:
        """True when only the user sees the progress and the result."""
        return self._private

    @property
    def options(self) -> Mapping[str, str]:
        """The options as stored with the workflow (text), read-only."""
        return self._options

    @property
    def steps_done(self) -> int:
        """Steps finished so far in this run, replayed ones included."""
        return self._steps_done

    @property
    def replaying(self) -> bool:
        """True while the run is still going through steps an earlier run recorded."""
        return self._steps_done < len(self._journal.replayed)

    def progress(self, *, stage: str, fraction: float, detail: str = "") -> None:
        """Report how far the run is: `fraction` of the work done (clamped to 0..1; not a
        number counts as no progress), `stage` a short word, `detail` one human line. Cheap and
        synchronous: call it as often as you like, the runner decides what is shown."""
        value = float(fraction)
        self._fraction = 0.0 if math.isnan(value) else max(0.0, min(1.0, value))
        self._report(stage=str(stage), progress=self._fraction, detail=str(detail))

    def __call__(self, *, stage: str, progress: float, detail: str = "") -> None:
        self.progress(stage=stage, fraction=progress, detail=detail)

    async def step[T](
        self,
        name: str,
        fn: Callable[..., Awaitable[T]],
        /,
        *args: Any,
        retries: int = 0,
        backoff_s: float = 1.0,
        **kwargs: Any,
    ) -> T:
        """Run ``await fn(*args, **kwargs)`` as a recorded step and return its value.

        The value (JSON: dicts, lists, text, numbers, true/false/null; at most
        `runner.max_step_bytes` once encoded) is written durably before the step counts as
        done, and this returns it as recorded (a tuple comes back a list), so a first run and a
        resumed one see the same values. In a run resumed after a restart, a step recorded
        before returns its recorded value without calling `fn`; its `name` must be the one
        recorded at that place, or the run fails (the body is not deterministic, and recorded
        values would be handed to the wrong steps).

        A step that raises is not recorded: with `retries`, it is called again up to that many
        times, waiting `backoff_s`, then twice that, and so on; then its exception goes on to
        the workflow. Steps run one at a time (await each before the next).
        """
        if not isinstance(name, str) or not 1 <= len(name) <= _MAX_STEP_NAME:
            raise TypeError(f"a step's name must be 1-{_MAX_STEP_NAME} characters of text")
        if not _is_async(fn):
            raise TypeError(
                f"step {name!r}: {getattr(fn, '__name__', repr(fn))} is not an async function; "
                "a step runs `await fn(...)` (wrap blocking work in asyncio.to_thread)"
            )
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise TypeError(f"step {name!r}: retries must be a whole number >= 0")
        if self._stepping is not None:
            raise RuntimeError(
                f"step {name!r} started while step {self._stepping!r} was running; steps run "
                "one at a time (await each before starting the next)"
            )
        index = self._steps_done
        replayed = self._journal.replayed
        if index < len(replayed):
            recorded_name, value = replayed[index]
            if recorded_name != name:
                WORKFLOW_STEPS.labels(outcome="failed").inc()
                raise WorkflowFailed(
                    f"the workflow is not deterministic: step {index} was {recorded_name!r} "
                    f"when recorded and is {name!r} now"
                )
            self._steps_done += 1
            WORKFLOW_STEPS.labels(outcome="replayed").inc()
            return cast(T, value)
        self._journal.began(index, name)
        self._stepping = name
        try:
            value = await self._attempts(name, fn, args, kwargs, retries, backoff_s)
            try:
                recorded = orjson.loads(orjson.dumps(value))
            except TypeError as exc:
                WORKFLOW_STEPS.labels(outcome="failed").inc()
                raise WorkflowFailed(
                    f"step {name!r} returned a value that is not JSON ({exc}); a step's value "
                    "must be JSON: dicts, lists, text, numbers, true/false/null"
                ) from None
            try:
                await self._journal.record(index, name, recorded)
            except NotifierError as exc:
                WORKFLOW_STEPS.labels(outcome="failed").inc()
                raise WorkflowFailed(f"step {name!r} could not be recorded: {exc}") from None
        finally:
            self._stepping = None
        self._steps_done += 1
        WORKFLOW_STEPS.labels(outcome="recorded").inc()
        return cast(T, recorded)

    @staticmethod
    async def _attempts[T](
        name: str,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        retries: int,
        backoff_s: float,
    ) -> T:
        attempt = 0
        while True:
            try:
                return await fn(*args, **kwargs)
            except Exception:
                if attempt >= retries:
                    WORKFLOW_STEPS.labels(outcome="failed").inc()
                    raise
            await asyncio.sleep(max(0.0, backoff_s) * 2**attempt)
            attempt += 1

    def check_replayed(self) -> None:
        """WorkflowFailed if the run ended before reaching every step an earlier run recorded
        (its body took another path: not deterministic)."""
        recorded = len(self._journal.replayed)
        if self._steps_done < recorded:
            raise WorkflowFailed(
                f"the workflow is not deterministic: it recorded {recorded} steps before the "
                f"restart and ended after {self._steps_done} now"
            )

    def __repr__(self) -> str:
        return f"Context(workflow_id={self._wid!r}, user_id={self._user_id})"


def _is_async(fn: object) -> bool:
    """An async function, a bound async method, a partial of one, or an object whose
    ``__call__`` is one."""
    if inspect.iscoroutinefunction(fn):
        return True
    return inspect.iscoroutinefunction(getattr(fn, "__call__", None))  # noqa: B004


def _context(options: Mapping[str, str], report: ReportProgress) -> Context:
    return report if isinstance(report, Context) else Context.outside_the_bot(options, report)


# ---------------------------------------------------------------------------------------------
# Options


@dataclass(frozen=True, slots=True)
class Choice:
    """One choice of an option: `label` is what Discord shows, `value` what it sends back."""

    label: str
    value: str | int | float


@dataclass(frozen=True, slots=True)
class WorkflowOption:
    """One command option, read from a parameter of the workflow.

    `kind` is the type Discord is told (str, int, float or bool); `choices`, if any, the only
    values it accepts; `enum` the Enum the value becomes (None: the value itself). `default` is
    what an omitted optional option is (None: absent from the stored options).
    """

    name: str
    kind: type
    description: str
    required: bool
    default: Any = None
    choices: tuple[Choice, ...] = ()
    enum: type[enum.Enum] | None = None

    def parse(self, text: object) -> Any:
        """The typed value of `text`; InvalidWorkflowOptions naming this option otherwise.

        Forgiving where people are (``" Deep "`` is the choice ``deep``, ``yes`` is true), strict
        about what the value is."""
        if not isinstance(text, str):
            raise InvalidWorkflowOptions(self.name, "must be text")
        if self.choices:
            return self._choose(text)
        return self._convert(text)

    def _convert(self, text: str) -> Any:
        kind = self.kind
        if kind is str:
            return text
        stripped = text.strip()
        if kind is bool:
            word = stripped.casefold()
            if word in _TRUE:
                return True
            if word in _FALSE:
                return False
            raise InvalidWorkflowOptions(self.name, f"must be true or false (got {_shown(text)})")
        if kind is int:
            if len(stripped) <= _MAX_NUMBER_TEXT and re.fullmatch(r"[+-]?[0-9]+", stripped):
                return int(stripped)
            raise InvalidWorkflowOptions(self.name, f"must be a whole number (got {_shown(text)})")
        value: float | None = None
        if len(stripped) <= _MAX_NUMBER_TEXT:
            try:
                value = float(stripped)
            except ValueError:
                value = None
        if value is None or not math.isfinite(value):
            raise InvalidWorkflowOptions(self.name, f"must be a number (got {_shown(text)})")
        return value

    def _choose(self, text: str) -> Any:
        wanted = text.strip().casefold()
        for choice in self.choices:
            if wanted in (choice.label.casefold(), str(choice.value).casefold()):
                return self._typed(choice.value)
        if self.kind in (int, float):
            try:
                number = self._convert(text)
            except InvalidWorkflowOptions:
                number = None
            for choice in self.choices:
                if number is not None and number == choice.value:
                    return self._typed(choice.value)
        listed = ", ".join(choice.label for choice in self.choices)
        raise InvalidWorkflowOptions(self.name, f"must be one of {listed} (got {_shown(text)})")

    def _typed(self, value: str | int | float) -> Any:
        return self.enum(value) if self.enum is not None else value

    def to_text(self, value: Any) -> str:
        """The canonical text of a typed value (or of the value Discord sent for a choice):
        what the store keeps and `parse` reads back."""
        if isinstance(value, enum.Enum):
            value = value.value
        if self.kind is bool:
            return "true" if value else "false"
        if self.kind is float and not isinstance(value, str):
            return repr(float(value))
        return str(value)


def _strip_annotated(annotation: Any) -> tuple[Any, list[str]]:
    texts: list[str] = []
    while typing.get_origin(annotation) is typing.Annotated:
        base, *extras = typing.get_args(annotation)
        texts.extend(extra for extra in extras if isinstance(extra, str))
        annotation = base
    if isinstance(annotation, typing.TypeAliasType):  # `type Depth = Literal[...]`
        return _strip_annotated(annotation.__value__)
    return annotation, texts


def _optional(annotation: Any) -> Any | None:
    """T for ``T | None`` / ``Optional[T]``, None for anything else."""
    if typing.get_origin(annotation) not in (typing.Union, types.UnionType):
        return None
    members = [a for a in typing.get_args(annotation) if a is not type(None)]
    if len(members) != 1 or len(members) == len(typing.get_args(annotation)):
        return None
    return members[0]


def _choices_of(annotation: Any) -> tuple[type, tuple[Choice, ...], type[enum.Enum] | None] | None:
    """(kind, choices, enum) for a Literal or an Enum; None for anything else. Raises ValueError
    (the message for the author) for choices Discord cannot carry."""
    if typing.get_origin(annotation) is Literal:
        values = typing.get_args(annotation)
        if any(isinstance(v, bool) or not isinstance(v, str | int | float) for v in values):
            raise ValueError("has a Literal whose values are not all strings or numbers")
        return _kind_of_values(values), tuple(Choice(str(v), v) for v in values), None
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        members = list(annotation)
        values = tuple(m.value for m in members)
        if not members:
            raise ValueError(f"has the Enum {annotation.__name__}, which has no members")
        if any(isinstance(v, bool) or not isinstance(v, str | int | float) for v in values):
            raise ValueError(
                f"has the Enum {annotation.__name__}, whose values are not all strings or numbers"
            )
        choices = tuple(Choice(m.name, m.value) for m in members)
        return _kind_of_values(values), choices, annotation
    return None


def _kind_of_values(values: tuple[Any, ...]) -> type:
    kinds = {str if isinstance(v, str) else float if isinstance(v, float) else int for v in values}
    if str in kinds and len(kinds) > 1:
        raise ValueError("has choices that mix text and numbers (Discord needs one type)")
    if len(values) > _MAX_CHOICES:
        raise ValueError(f"has {len(values)} choices; Discord allows at most {_MAX_CHOICES}")
    if len({str(v).casefold() for v in values}) != len(values):
        raise ValueError("has two choices that differ only in case")
    return float if float in kinds else kinds.pop()


def _read_option(parameter: inspect.Parameter, annotation: Any) -> WorkflowOption:
    """The option a parameter declares; ValueError (the author's message) if it cannot be one."""
    name = parameter.name
    if annotation is inspect.Parameter.empty:
        raise ValueError(
            "has no annotation (give it a type: str, int, float, bool, a Literal or an Enum)"
        )
    base, texts = _strip_annotated(annotation)
    inner = _optional(base)
    optional = inner is not None
    if inner is not None:
        base, more = _strip_annotated(inner)
        texts.extend(more)
    description = texts[0] if texts else ""
    choices = _choices_of(base)
    if choices is not None:
        kind, options, enum_type = choices
    elif base in _BASE_KINDS:
        kind, options, enum_type = base, (), None
    else:
        shown = getattr(base, "__name__", None) or repr(base)
        raise ValueError(
            f"has the annotation {shown}, which Discord has no option type for (use str, int, "
            "float, bool, a Literal of strings or numbers, or an Enum)"
        )
    if not description:
        description = (
            "one of " + ", ".join(c.label for c in options) if options else _KIND_WORDS[kind]
        )
    if len(description) > _MAX_DESCRIPTION:
        raise ValueError(f"has a description longer than {_MAX_DESCRIPTION} characters")
    has_default = parameter.default is not inspect.Parameter.empty
    option = WorkflowOption(
        name=name,
        kind=kind,
        description=description[:_MAX_DESCRIPTION],
        required=not has_default,
        choices=options,
        enum=enum_type,
    )
    if not has_default:
        if optional:
            raise ValueError("is optional (`| None`) but has no default: add `= None`")
        return option
    default = parameter.default
    if default is None:
        if not optional:
            raise ValueError(
                "defaults to None but its annotation does not allow None (add `| None`)"
            )
        return option
    if enum_type is not None:
        fits = isinstance(default, enum_type)
    elif kind is float:
        fits = isinstance(default, int | float) and not isinstance(default, bool)
    else:
        fits = isinstance(default, kind) and (kind is bool or not isinstance(default, bool))
    if not fits:
        wanted = f"a member of {enum_type.__name__}" if enum_type else _KIND_WORDS[kind]
        raise ValueError(f"has the default {_shown(default)}, which is not {wanted}")
    try:
        typed = option.parse(option.to_text(default))
    except InvalidWorkflowOptions as exc:
        raise ValueError(f"has the default {_shown(default)}: {exc.message}") from None
    return WorkflowOption(
        name=name,
        kind=kind,
        description=option.description,
        required=False,
        default=typed,
        choices=options,
        enum=enum_type,
    )


# ---------------------------------------------------------------------------------------------
# Workflow

Validator = Callable[..., Awaitable[Mapping[str, Any] | None]]


class Workflow:
    """A workflow as `@workflow` read it: its command (name, description, options, the
    `private` default), its estimate, and how to build the `WorkflowSpec` the runner runs.

    `target` is the decorated function or class; `file` and `line` say where it is defined (for
    error messages); `module` is the module it was defined in (discovery counts a workflow in the
    file that defines it, not in one that imports it).
    """

    def __init__(
        self,
        target: Callable[..., Any],
        *,
        name: str,
        description: str,
        estimate_s: float | Mapping[str, float] | None,
        options: tuple[WorkflowOption, ...],
        private_default: bool,
        takes_private: bool,
        is_class: bool,
        resumable: bool = True,
        max_steps: Callable[..., int | None] | None = None,
    ) -> None:
        self.target = target
        self.name = name
        self.description = description
        self.estimate_s = estimate_s
        self.options = options
        self.private_default = private_default
        self.takes_private = takes_private
        self.is_class = is_class
        self.resumable = resumable
        self.max_steps = max_steps
        self.module: str = getattr(target, "__module__", "") or ""
        self.file, self.line = _where(target)
        self._validator: Validator | None = None
        self._by_name = {option.name: option for option in options}

    def __repr__(self) -> str:
        return f"<Workflow {self.name!r} from {self.file}:{self.line}>"

    # -- options ---------------------------------------------------------------------------------

    def parse(self, options: Mapping[str, str]) -> dict[str, Any]:
        """Typed values of every option (defaults filled in; an optional option without a value
        is left out), or InvalidWorkflowOptions naming the first bad one. Unknown names are
        refused, so a wiring mistake is loud."""
        for key in options:
            if key not in self._by_name:
                takes = ", ".join(self._by_name) or "no options"
                raise InvalidWorkflowOptions(
                    str(key)[:40], f"unknown option ({self.name} takes {takes})"
                )
        values: dict[str, Any] = {}
        for option in self.options:
            if option.name in options:
                values[option.name] = option.parse(options[option.name])
            elif option.required:
                raise InvalidWorkflowOptions(option.name, "is required")
            elif option.default is not None:
                values[option.name] = option.default
        return values

    def as_text(self, values: Mapping[str, Any]) -> dict[str, str]:
        """The stored form of typed values (the inverse of `parse`)."""
        return {
            name: self._by_name[name].to_text(value)
            for name, value in values.items()
            if value is not None
        }

    # -- hooks -----------------------------------------------------------------------------------

    def validator(self, hook: Validator) -> Validator:
        """Decorate ``async def check(**options)``, run before a run starts with the typed
        options: raise InvalidWorkflowOptions(option, why) to refuse (the user sees it privately
        and nothing starts), or return the values to store instead (normalised)."""
        if self.is_class:
            raise WorkflowDefinitionError(
                self.name, "a class workflow validates in its own `async def validate`"
            )
        _check_validator(self, hook)
        self._validator = hook
        return hook

    # -- binding ---------------------------------------------------------------------------------

    def bind(self, settings: Settings) -> WorkflowSpec:
        """The spec the runner runs, for a bot with `settings`. A class workflow is built here
        (once per bot: ``cls(settings)``); a function needs nothing."""
        if self.is_class:
            return self.spec_for(self.target(settings))
        return self._spec(self.target, self._validator, None, self.max_steps)

    def spec_for(self, instance: Any) -> WorkflowSpec:
        """The spec of a class workflow's instance built elsewhere (a test giving it a resolver
        of its own): its `run`, its `validate` and `close` if it has them."""
        if not self.is_class or not isinstance(instance, cast(type, self.target)):
            raise TypeError(f"{instance!r} is not an instance of workflow {self.name!r}'s class")
        built: Any = instance
        return self._spec(
            built.run,
            getattr(built, "validate", None),
            getattr(built, "close", None),
            getattr(built, "max_steps", None),
        )

    def _spec(
        self,
        body: Callable[..., Awaitable[Any]],
        hook: Validator | None,
        close: Callable[[], Awaitable[None]] | None,
        most: Callable[..., int | None] | None = None,
    ) -> WorkflowSpec:
        async def validate(options: Mapping[str, str]) -> dict[str, str]:
            values = self.parse(options)
            if hook is not None:
                replaced = await hook(**values)
                if replaced:
                    values.update(self._replacements(replaced))
            return self.as_text(values)

        async def run(options: Mapping[str, str], report: ReportProgress) -> dict[str, Any]:
            ctx = _context(options, report)
            values = self.parse(options)
            if self.takes_private:
                values[PRIVATE] = ctx.private
            result = await body(ctx, **values)
            ctx.check_replayed()
            if not isinstance(result, dict):
                raise WorkflowFailed(
                    f"the workflow returned {type(result).__name__}, not a dict (its result)"
                )
            return result

        async def close_once() -> None:
            assert close is not None
            await close()

        def max_steps(options: Mapping[str, str]) -> int | None:
            assert most is not None
            total = most(**self.parse(options))
            return total if isinstance(total, int) and total > 0 else None

        return WorkflowSpec(
            name=self.name,
            description=self.description,
            validate=validate,
            run=run,
            close=close_once if close is not None else None,
            estimate_s=self.estimate_s,
            resumable=self.resumable,
            max_steps=max_steps if most is not None else None,
        )

    def _replacements(self, replaced: Mapping[str, Any]) -> dict[str, Any]:
        unknown = [key for key in replaced if key not in self._by_name]
        if unknown:
            raise TypeError(
                f"workflow {self.name!r}: its validation returned unknown option(s) {unknown}"
            )
        return {
            key: self._by_name[key].parse(self._by_name[key].to_text(v))
            for key, v in replaced.items()
        }


def _where(target: Callable[..., Any]) -> tuple[str, int]:
    function = getattr(target, "run", target) if isinstance(target, type) else target
    code = getattr(inspect.unwrap(function), "__code__", None)
    if code is None:
        return "?", 0
    return code.co_filename, code.co_firstlineno


def _check_validator(found: Workflow, hook: Validator) -> None:
    if not inspect.iscoroutinefunction(hook):
        raise WorkflowDefinitionError(found.name, "its validator must be an `async def`")
    try:
        inspect.signature(hook).bind(**dict.fromkeys(found._by_name))
    except TypeError as exc:
        raise WorkflowDefinitionError(
            found.name,
            f"its validator must take the options {', '.join(found._by_name) or '(none)'} as "
            f"keyword arguments ({exc})",
        ) from None


# ---------------------------------------------------------------------------------------------
# The decorator


def workflow(
    *,
    description: str,
    name: str | None = None,
    estimate_s: float | Mapping[str, float] | None = None,
    resumable: bool = True,
    max_steps: Callable[..., int | None] | None = None,
) -> Callable[[Callable[..., Any]], Workflow]:
    """Make an async function (or a class with ``async def run(self, ctx, ...)``) a workflow.

    `name` is the slash command's (default: the function's name; lowercase letters, digits,
    ``-`` and ``_``, at most 32); `description` is shown under it in Discord (at most 100
    characters); `estimate_s` is how long a run usually takes, in seconds, or a map from an
    option's value to seconds (``{"quick": 30, "deep": 900}``): it decides the timeout warning
    until there is history and unless the operator configured one.

    `resumable`: a run left running by a process that died (a crash, a deploy) is resumed at
    the next start from its recorded steps (`Context.step`); a workflow that records no step
    is not (it is interrupted and its user told). False opts out even with steps.

    `max_steps`: called with the run's options (as the body gets them, without `ctx`), the most
    steps such a run records, for the resume notice ("7 of up to 15 pages were already done"). A
    class workflow defines it as a method, ``def max_steps(self, **options)``, instead.
    """

    def decorate(target: Callable[..., Any]) -> Workflow:
        found = _read_workflow(target, name=name, description=description, estimate_s=estimate_s)
        if not isinstance(resumable, bool):
            raise WorkflowDefinitionError(found.name, "resumable must be True or False")
        found.resumable = resumable
        if max_steps is not None and not callable(max_steps):
            raise WorkflowDefinitionError(found.name, "max_steps must be a function of the options")
        found.max_steps = max_steps
        return found

    return decorate


def _read_workflow(
    target: Callable[..., Any],
    *,
    name: str | None,
    description: str,
    estimate_s: float | Mapping[str, float] | None,
) -> Workflow:
    is_class = isinstance(target, type)
    function = getattr(target, "run", None) if is_class else target
    label: str = name if name is not None else str(getattr(target, "__name__", "?"))
    line = _where(target)[1] or None

    def fail(message: str) -> WorkflowDefinitionError:
        return WorkflowDefinitionError(label, message, line=line)

    if name is None and is_class:
        raise fail("a class workflow needs `name=` (the slash command's name)")
    if not _NAME.match(label):
        raise fail(
            "the name must be 1-32 lowercase letters, digits, '-' or '_' (a slash command's "
            "name); pass name=... to choose one"
        )
    if not isinstance(description, str) or not 1 <= len(description) <= _MAX_DESCRIPTION:
        raise fail(f"description must be 1-{_MAX_DESCRIPTION} characters of text")
    _check_estimate(estimate_s, fail)
    if function is None or not inspect.iscoroutinefunction(function):
        raise fail(
            "`run` must be an `async def`" if is_class else "must be an `async def` function"
        )
    for method_name in ("validate", "close"):
        method = getattr(target, method_name, None) if is_class else None
        if method is not None and not inspect.iscoroutinefunction(method):
            raise fail(f"`{method_name}` must be an `async def`")
    try:
        hints = typing.get_type_hints(function, include_extras=True)
    except Exception as exc:  # noqa: BLE001 - any unresolvable annotation is the author's to fix
        raise fail(f"its annotations cannot be resolved ({type(exc).__name__}: {exc})") from None
    parameters = list(inspect.signature(function).parameters.values())
    if is_class:
        parameters = parameters[1:]  # self
    if not parameters or parameters[0].kind not in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    ):
        raise fail("its first parameter must be the Context (`ctx: Context`)")
    first = hints.get(parameters[0].name, inspect.Parameter.empty)
    if first is not inspect.Parameter.empty and _strip_annotated(first)[0] is not Context:
        raise fail(f"its first parameter {parameters[0].name!r} must be annotated `Context`")
    options: list[WorkflowOption] = []
    private_default = False
    takes_private = False
    for parameter in parameters[1:]:
        where = f"parameter {parameter.name!r}"
        if parameter.kind not in (
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            inspect.Parameter.KEYWORD_ONLY,
        ):
            raise fail(f"{where}: *args, **kwargs and positional-only parameters are not options")
        if not _NAME.match(parameter.name):
            raise fail(
                f"{where}: an option's name must be 1-32 lowercase letters, digits, '-' or '_'"
            )
        if parameter.name in _TAKEN_NAMES:
            raise fail(f"{where}: the command's own callback uses that name; choose another")
        annotation = hints.get(parameter.name, inspect.Parameter.empty)
        if parameter.name == PRIVATE:
            if _strip_annotated(annotation)[0] is not bool or not isinstance(
                parameter.default, bool
            ):
                raise fail(
                    f"{where}: `private` is the visibility switch; declare it as "
                    "`private: bool = False` (or True)"
                )
            takes_private, private_default = True, parameter.default
            continue
        try:
            options.append(_read_option(parameter, annotation))
        except ValueError as exc:
            raise fail(f"{where} {exc}") from None
    if len(options) + 1 > _MAX_OPTIONS:
        raise fail(f"Discord allows {_MAX_OPTIONS} options a command, `private` included")
    # Discord lists required options first; the order of each kind is the signature's.
    ordered = tuple(o for o in options if o.required) + tuple(o for o in options if not o.required)
    found = Workflow(
        target,
        name=label,
        description=description,
        estimate_s=estimate_s,
        options=ordered,
        private_default=private_default,
        takes_private=takes_private,
        is_class=is_class,
    )
    hook = getattr(target, "validate", None) if is_class else None
    if hook is not None:
        _check_validator(found, _unbound(hook))
    return found


def _unbound(method: Callable[..., Any]) -> Validator:
    """A class's `validate` as called on an instance (its `self` left out), for the check."""

    async def as_called(**options: Any) -> None:
        return None

    parameters = list(inspect.signature(method).parameters.values())[1:]
    as_called.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    return as_called


def _check_estimate(estimate_s: object, fail: Callable[[str], WorkflowDefinitionError]) -> None:
    if estimate_s is None:
        return
    if isinstance(estimate_s, Mapping):
        values = list(estimate_s.values())
        keys_ok = all(isinstance(key, str) for key in estimate_s)
    else:
        values, keys_ok = [estimate_s], True
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise fail(
                f"estimate_s must be seconds above 0, or a map of them (got {_shown(value)})"
            )
    if not keys_ok:
        raise fail("estimate_s as a map goes from an option's value (text) to seconds")
