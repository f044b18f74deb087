"""Finding workflows: the operator's folders and installed entry points.

Workflows come from two places, both read by `discover_workflows`:

- every `*.py` file (not starting with `_`) in each folder of `workflows.dirs` (relative paths
  against `base_dir`, the config file's folder; a folder that does not exist is skipped),
  imported by file path under a prefixed module name salted with its folder, so two folders may
  both hold a `count.py` and neither shadows an installed module of that name;
- the `notifier.workflows` entry-point group: each entry point is a workflow (what `@workflow`
  returned) or a module holding some. The built-in `autointel` is found this way.

A file counts the workflows it defines (not those it imports). Every mistake is a problem naming
where it is: a file that cannot be imported (with the line), one that defines no workflow, a
workflow Discord could not show (`WorkflowDefinitionError`, with its line), two workflows with
one name (naming both places), a name the bot's own commands use, and a workflow named under
`workflows:` in the config that exists nowhere (with the closest name). The bot does not start
with problems (`load_workflows` raises WorkflowError with the first one, in one line); `notifier
config check` lists them all. Nothing here runs a workflow or needs a bot: the demo and the CLI
call it as it is.

Loading runs the files' code and reads the installed distributions' metadata: blocking work, so
an async caller runs it in a thread.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import importlib.util
import traceback
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Final

from loguru import logger

from ..logs import redactor
from ..sourcefiles import NotASourceFile, import_file, module_name_for
from .api import Workflow
from .contract import WorkflowDefinitionError, WorkflowError, WorkflowSpec

if TYPE_CHECKING:
    from ..config import Settings

__all__ = [
    "ENTRY_POINT_GROUP",
    "RESERVED_NAMES",
    "DiscoveredWorkflows",
    "WorkflowProblem",
    "bind_workflows",
    "close_workflows",
    "discover_workflows",
    "load_workflow_file",
    "load_workflows",
]

ENTRY_POINT_GROUP: Final = "notifier.workflows"

#: The bot's own slash commands (cogs/): a workflow by one of these names would replace one.
RESERVED_NAMES: Final = frozenset({"workflow", "retrieve_results", "results", "notifier", "notify"})


@dataclass(frozen=True, slots=True)
class WorkflowProblem:
    """One reason a workflow is not usable.

    `source` is a file path or ``entry point 'NAME' (VALUE)``, with the `line` when one is known;
    for a mistake in the config file instead, `field` is its path (``workflows.cuont``) and
    `source` is empty.
    """

    message: str
    source: str = ""
    line: int | None = None
    field: str | None = None

    def __str__(self) -> str:
        if self.field is not None:
            where = f"{self.source}: " if self.source else ""
            return f"{where}{self.field}: {self.message}"
        at = f":{self.line}" if self.line else ""
        return f"{self.source}{at}: {self.message}"


@dataclass(frozen=True, slots=True)
class DiscoveredWorkflows:
    """What one discovery pass found: the workflows by name, where each came from, and every
    problem."""

    workflows: Mapping[str, Workflow] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)
    problems: tuple[WorkflowProblem, ...] = ()

    def enabled(self, settings: Settings) -> dict[str, Workflow]:
        """The workflows whose command the bot offers (not `workflows.<name>.enabled: false`)."""
        return {
            name: found
            for name, found in self.workflows.items()
            if settings.workflows.settings_for(name).enabled
        }

    def raise_for_problems(self) -> None:
        """WorkflowError, in one line, when there is any problem."""
        if not self.problems:
            return
        first, *rest = self.problems
        more = (
            f" (and {len(rest)} more workflow problem{'s' if len(rest) > 1 else ''}: "
            "`notifier config check` lists every one)"
        )
        raise WorkflowError(f"{first}{more if rest else ''}", tuple(str(p) for p in self.problems))


class _Problem(Exception):
    def __init__(self, message: str, line: int | None = None) -> None:
        self.message = message
        self.line = line
        super().__init__(message)


def _failure(exc: BaseException, path: Path | None) -> _Problem:
    """The problem an import raised: a definition error at its workflow's line, a syntax error
    at its line, anything else at the deepest line of the file (or of the entry point's code)."""
    if isinstance(exc, WorkflowDefinitionError):
        return _Problem(str(exc), exc.line)
    if isinstance(exc, SyntaxError):
        return _Problem(f"SyntaxError: {exc.msg}", exc.lineno)
    frames = traceback.extract_tb(exc.__traceback__)
    inside = [f for f in frames if path is not None and Path(f.filename) == path]
    line = inside[-1].lineno if inside else None
    where = (
        ""
        if inside or not frames
        else f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})"
    )
    text = redactor.redact(f"{type(exc).__name__}: {exc}")
    return _Problem(f"failed to import: {text}{where}", line)


def _defined_in(module: ModuleType) -> list[Workflow]:
    return [
        value
        for value in vars(module).values()
        if isinstance(value, Workflow) and value.module == module.__name__
    ]


def load_workflow_file(path: Path) -> list[Workflow]:
    """Import one workflow file by path and return the workflows it defines; raise WorkflowError
    naming the file (and line) when it cannot be imported or defines none."""
    try:
        return _load_file(path)
    except _Problem as problem:
        raise WorkflowError(
            str(WorkflowProblem(problem.message, str(path), problem.line))
        ) from None


def _load_file(path: Path) -> list[Workflow]:
    try:
        module = import_file(path, module_name_for(path, "workflow"))
    except NotASourceFile as exc:
        raise _Problem(str(exc)) from None
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit):
            raise
        raise _failure(exc, path) from None
    found = _defined_in(module)
    if not found:
        raise _Problem(
            "defines no workflow (an `async def` decorated with @workflow from notifier; "
            "helper modules go in files starting with `_`)"
        )
    return found


def _load_entry_point(ep: importlib.metadata.EntryPoint) -> list[Workflow]:
    try:
        loaded = ep.load()
    except Exception as exc:  # noqa: BLE001 - any import failure becomes one reported problem
        raise _failure(exc, None) from None
    if isinstance(loaded, Workflow):
        return [loaded]
    if isinstance(loaded, ModuleType):
        found = _defined_in(loaded)
        if found:
            return found
        raise _Problem("the module defines no workflow")
    raise _Problem(f"{loaded!r} is not a workflow (what @workflow returns) nor a module of them")


def _workflow_files(dirs: Iterable[Path], base_dir: Path | None) -> list[Path]:
    seen: set[Path] = set()
    files: list[Path] = []
    for folder in dirs:
        if base_dir is not None and not folder.is_absolute():
            folder = base_dir / folder
        resolved = folder.resolve()
        if resolved in seen or not resolved.is_dir():
            continue
        seen.add(resolved)
        files.extend(p for p in sorted(resolved.glob("*.py")) if not p.name.startswith("_"))
    return files


def discover_workflows(
    settings: Settings,
    *,
    base_dir: Path | None = None,
    entry_points: bool = True,
) -> DiscoveredWorkflows:
    """Every workflow in the entry-point group and in `settings.workflows.dirs`, and every
    problem (see the module's docstring). Never raises for a broken workflow: it is a problem.

    `base_dir` is the folder relative `dirs` are read against (the config file's; None: the
    working directory). `entry_points=False` leaves installed workflows out (autointel too).
    """
    workflows: dict[str, Workflow] = {}
    sources: dict[str, str] = {}
    problems: list[WorkflowProblem] = []

    def add(found: Sequence[Workflow], source: str, *, in_file: bool) -> None:
        for item in found:
            if item.name in workflows:
                if workflows[item.name] is item:  # the same object, found twice (one package
                    continue  # listed by two metadata folders): one workflow
                problems.append(
                    WorkflowProblem(
                        f"workflow name {item.name!r} is already taken by {sources[item.name]}",
                        source,
                        item.line if in_file and item.line else None,
                    )
                )
                continue
            if item.name in RESERVED_NAMES:
                problems.append(
                    WorkflowProblem(
                        f"workflow name {item.name!r} is one of the bot's own commands "
                        f"({', '.join(sorted(RESERVED_NAMES))}); choose another with name=...",
                        source,
                        item.line if in_file and item.line else None,
                    )
                )
                continue
            workflows[item.name] = item
            sources[item.name] = f"{source}:{item.line}" if in_file and item.line else source

    if entry_points:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            source = f"entry point {ep.name!r} ({ep.value})"
            try:
                add(_load_entry_point(ep), source, in_file=False)
            except _Problem as problem:
                problems.append(WorkflowProblem(problem.message, source, problem.line))
    for path in _workflow_files(settings.workflows.dirs, base_dir):
        try:
            add(_load_file(path), str(path), in_file=True)
        except _Problem as problem:
            problems.append(WorkflowProblem(problem.message, str(path), problem.line))

    for name in settings.workflows.configured:
        if name not in workflows:
            close = difflib.get_close_matches(name, list(workflows), n=1)
            hint = f", did you mean {close[0]!r}?" if close else ""
            known = ", ".join(sorted(workflows)) or "none"
            problems.append(
                WorkflowProblem(
                    f"no workflow is named {name!r}{hint} (found: {known})",
                    field=f"workflows.{name}",
                )
            )
    return DiscoveredWorkflows(workflows=workflows, sources=sources, problems=tuple(problems))


def load_workflows(
    settings: Settings, *, base_dir: Path | None = None, entry_points: bool = True
) -> dict[str, Workflow]:
    """The workflows the bot offers (discovered, enabled); WorkflowError in one line if any
    problem was found, so the bot does not start with a workflow left out unnoticed."""
    discovered = discover_workflows(settings, base_dir=base_dir, entry_points=entry_points)
    discovered.raise_for_problems()
    enabled = discovered.enabled(settings)
    if enabled:
        listed = ", ".join(f"/{name} ({discovered.sources[name]})" for name in sorted(enabled))
        logger.info("workflows: {}", listed)
    else:
        # Legal (every workflow disabled), but also what an install without the package's
        # metadata looks like (no entry points, so no autointel): say it.
        logger.warning("no workflows: the bot has no workflow commands")
    return enabled


async def bind_workflows(
    workflows: Mapping[str, Workflow], settings: Settings
) -> dict[str, WorkflowSpec]:
    """Each workflow's runnable spec for a bot with `settings` (class workflows are built here).
    One that cannot be built is a WorkflowError naming it; those already built are closed."""
    specs: dict[str, WorkflowSpec] = {}
    for name, found in workflows.items():
        try:
            specs[name] = found.bind(settings)
        except Exception as exc:  # noqa: BLE001 - a workflow's own set-up failing stops the start
            await close_workflows(specs.values())
            text = redactor.redact(f"{type(exc).__name__}: {exc}")
            raise WorkflowError(
                f"{found.file}:{found.line}: workflow {name!r} could not be set up: {text}"
            ) from None
    return specs


async def close_workflows(specs: Iterable[WorkflowSpec]) -> None:
    """Release what workflows hold across runs, each once; one failing does not stop the rest."""
    for spec in list(specs):
        if spec.close is None:
            continue
        try:
            await spec.close()
        except Exception:  # noqa: BLE001 - shutdown goes on; the cause is logged
            logger.exception("closing workflow {!r} failed", spec.name)
