"""Which workflow `notifier demo --workflow NAME --option k=v` plays, checked before anything
starts.

The workflow is found the way the bot finds it (`notifier.workflows.discover_workflows`: the
`workflows.dirs` folders and the `notifier.workflows` entry points), and the options are read
the way its slash command reads them (`Workflow.parse`: names, types, choices, required ones),
so a mistake is one line naming the workflow or the option, and the demo exits 2 without
starting the emulator. `private` is the switch every workflow command has. A workflow with an
option named `url` that was not given gets the demo's slow web site (on 127.0.0.1), so
`--workflow autointel` needs no option at all.
"""

from __future__ import annotations

import asyncio
import difflib
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ..workflows import InvalidWorkflowOptions, Workflow, WorkflowError, discover_workflows
from ..workflows.api import PRIVATE, PRIVATE_DESCRIPTION, WorkflowOption

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["EXIT_REQUEST", "ChosenWorkflow", "DemoRequestError", "choose_workflow"]

#: The exit status for a workflow or an option the demo cannot play (as for a bad config).
EXIT_REQUEST: Final = 2

_URL: Final = "url"
# Stands in for the site's address while the options are checked before the site runs.
_SITE_PLACEHOLDER: Final = "http://127.0.0.1/"
_PRIVATE = WorkflowOption(PRIVATE, bool, PRIVATE_DESCRIPTION, required=False)


class DemoRequestError(Exception):
    """The workflow or an option cannot be played; the message is the one line to show."""


@dataclass(frozen=True, slots=True)
class ChosenWorkflow:
    """A discovered workflow and the options to run it with, already checked."""

    workflow: Workflow
    source: str
    options: Mapping[str, str]  # as given, as text, without `private`
    private: bool | None
    fills_url: bool  # the workflow's `url` option gets the demo's site

    @property
    def name(self) -> str:
        return self.workflow.name

    def command_options(self, *, site_url: str) -> dict[str, Any]:
        """The options as the slash command sends them (typed, defaults filled in), with the
        demo's site for a `url` that was not given. InvalidWorkflowOptions if one is refused."""
        given = dict(self.options)
        if self.fills_url:
            given[_URL] = site_url
        typed = self.workflow.parse(given)
        sent: dict[str, Any] = {
            name: value.value if isinstance(value, enum.Enum) else value
            for name, value in typed.items()
        }
        if self.private is not None:
            sent[PRIVATE] = self.private
        return sent


async def choose_workflow(
    settings: Settings,
    config_path: Path | None,
    name: str | None,
    options: Mapping[str, str],
) -> ChosenWorkflow:
    """The workflow `name` with `options`, or DemoRequestError saying in one line what is wrong:
    no name, no such workflow (with the closest name and those found), a workflow left out by
    the config, a problem that would stop the bot's start, an option the command refuses."""
    if name is None:
        raise DemoRequestError(
            "--option needs --workflow NAME (the story plays /autointel with options of its own)"
        )
    base_dir = config_path.parent.absolute() if config_path is not None else None
    # Discovery imports the workflow files: blocking work, off the event loop.
    discovered = await asyncio.to_thread(discover_workflows, settings, base_dir=base_dir)
    found = discovered.workflows.get(name)
    if found is None:
        close = difflib.get_close_matches(name, list(discovered.workflows), n=1)
        hint = f", did you mean {close[0]!r}?" if close else ""
        known = ", ".join(sorted(discovered.workflows)) or "none"
        raise DemoRequestError(f"no workflow is named {name!r}{hint} (found: {known})")
    try:
        discovered.raise_for_problems()  # the bot would not start with them either
    except WorkflowError as exc:
        raise DemoRequestError(str(exc)) from None
    if not settings.workflows.settings_for(name).enabled:
        raise DemoRequestError(
            f"workflow {name!r} is turned off in the config (workflows.{name}.enabled: false)"
        )
    given = dict(options)
    private: bool | None = None
    try:
        if PRIVATE in given:
            private = bool(_PRIVATE.parse(given.pop(PRIVATE)))
        fills_url = _URL not in given and any(o.name == _URL for o in found.options)
        found.parse({**given, **({_URL: _SITE_PLACEHOLDER} if fills_url else {})})
    except InvalidWorkflowOptions as exc:
        raise DemoRequestError(f"/{name}: {exc}") from None
    return ChosenWorkflow(
        workflow=found,
        source=discovered.sources.get(name, found.file),
        options=given,
        private=private,
        fills_url=fills_url,
    )
