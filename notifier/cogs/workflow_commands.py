"""Slash commands generated from workflows' signatures.

Each discovered `Workflow` (notifier.workflows) says its command: name, description, options with
their types, choices, descriptions and whether they are required, and the `private` switch. Here
that becomes a nextcord slash command: a callback whose signature lists one `SlashOption` per
option, so nextcord registers it with Discord exactly as if it had been written by hand. The
callback turns the values Discord sent into the workflow's stored text form and hands them to
`WorkflowsCog.start_workflow`, which defers, validates (a refusal is the private "not started"
reply), stores the workflow as running and starts it.

The commands live on a subclass of WorkflowsCog made for the bot's workflows (`workflows_cog`),
so they come and go with that cog, and `bot.get_cog("WorkflowsCog")` is still the cog whose
`start_workflow` any other command may call.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import nextcord

from ..workflows.api import PRIVATE, PRIVATE_DESCRIPTION, Workflow, WorkflowOption
from .services import Services
from .workflows import WorkflowsCog

__all__ = ["slash_command_for", "workflows_cog"]


def _slash_option(option: WorkflowOption) -> inspect.Parameter:
    choices = {choice.label: choice.value for choice in option.choices} or None
    return inspect.Parameter(
        option.name,
        inspect.Parameter.KEYWORD_ONLY,
        annotation=option.kind,
        # No default on Discord's side: an omitted option reaches the callback as None and the
        # workflow's own default is filled in by its validation (one place, for every caller).
        default=nextcord.SlashOption(
            name=option.name,
            description=option.description,
            required=option.required,
            choices=choices,
            default=None,
        ),
    )


def _callback(found: Workflow) -> Callable[..., Awaitable[None]]:
    """`async def (cog, interaction, **options)` with the signature nextcord reads the
    command's options from."""
    by_name = {option.name: option for option in found.options}

    async def command(cog: WorkflowsCog, interaction: nextcord.Interaction, **given: Any) -> None:
        private = given.pop(PRIVATE, None)
        options = {
            name: by_name[name].to_text(value) for name, value in given.items() if value is not None
        }
        await cog.start_workflow(
            interaction,
            found.name,
            options,
            found.private_default if private is None else bool(private),
        )

    parameters = [
        inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        inspect.Parameter(
            "interaction", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=nextcord.Interaction
        ),
        *(_slash_option(option) for option in found.options),
        inspect.Parameter(
            PRIVATE,
            inspect.Parameter.KEYWORD_ONLY,
            annotation=bool,
            default=nextcord.SlashOption(
                name=PRIVATE,
                description=PRIVATE_DESCRIPTION,
                required=False,
                default=found.private_default,
            ),
        ),
    ]
    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    # nextcord resolves the callback's annotations too: give it the real objects, not the
    # strings this module's `from __future__ import annotations` would leave.
    command.__annotations__ = {
        p.name: p.annotation for p in parameters if p.annotation is not inspect.Parameter.empty
    }
    command.__name__ = command.__qualname__ = f"{found.name.replace('-', '_')}_command"
    return command


def slash_command_for(found: Workflow) -> nextcord.SlashApplicationCommand:
    """The slash command of one workflow, to be a class attribute of a cog (nextcord binds it to
    the cog and reads its options when the cog is made)."""
    command: nextcord.SlashApplicationCommand = nextcord.slash_command(
        name=found.name, description=found.description
    )(_callback(found))
    return command


def workflows_cog(services: Services, workflows: Iterable[Workflow] = ()) -> WorkflowsCog:
    """WorkflowsCog with one slash command per workflow (`/workflow status|cancel` included)."""
    commands = {
        f"_workflow_command_{index}": slash_command_for(found)
        for index, found in enumerate(workflows)
    }
    if not commands:
        return WorkflowsCog(services)
    cog_class = types.new_class(
        "WorkflowsCog", (WorkflowsCog,), exec_body=lambda namespace: namespace.update(commands)
    )
    cog: WorkflowsCog = cog_class(services)
    return cog
