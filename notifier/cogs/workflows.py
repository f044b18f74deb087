"""Starting a workflow (`start_workflow`, which every workflow's slash command calls) and
`/workflow status|cancel`. The workflows' own commands are generated from their signatures
(`workflow_commands`); nothing here knows any workflow by name."""

from __future__ import annotations

import time

import nextcord
from loguru import logger
from nextcord.ext import commands

from ..discord.access import NOT_FOUND_TEXT, can_access
from ..discord.io import OutgoingMessage
from ..discord.messages import progress_message, retrieval_hint
from ..discord.replies import attachment_limit, defer, reply_ephemeral
from ..discord.session import InteractionLease, call_discord
from ..errors import DiscordCallFailed, InvalidWorkflowId, NotifierError
from ..records import (
    ProgressState,
    WorkflowRecord,
    WorkflowStatus,
    new_workflow_id,
    validate_workflow_id,
)
from ..runner.journal import steps_listing
from ..runner.runner import RunnerBusy, WorkflowRequest
from ..workflows.contract import InvalidWorkflowOptions
from .services import Services

__all__ = ["WorkflowsCog"]


class WorkflowsCog(commands.Cog):
    def __init__(self, services: Services) -> None:
        self.services = services

    async def start_workflow(
        self,
        interaction: nextcord.Interaction,
        command: str,
        options: dict[str, str],
        private: bool,
    ) -> None:
        """Defer within 3 s, validate, store as running, start in the background.

        `options` are the workflow's options as text (the stored form); `private` is the
        visibility switch. A refusal (a limit reached, an option the workflow refuses) is the
        private "not started" reply, and nothing is stored."""
        services = self.services
        if not await defer(interaction, ephemeral=private):
            return
        assert interaction.user is not None
        token = interaction.token
        lease = InteractionLease(
            created_at=interaction.created_at.timestamp(),
            ttl_s=services.settings.discord.interaction_ttl,
            safety_margin_s=services.settings.discord.safety_margin,
        )
        spec = services.workflows[command]
        try:
            # The check and the place at once, this workflow's own max_per_user included.
            slot = services.runner.reserve(interaction.user.id, command)
        except RunnerBusy as exc:
            await self._refuse(interaction, str(exc), private=private, lease=lease)
            return
        with slot:
            try:
                clean = await spec.validate(options)
            except InvalidWorkflowOptions as exc:
                await self._refuse(interaction, str(exc), private=private, lease=lease)
                return
            request = WorkflowRequest(
                command=command,
                options=clean,
                user_id=interaction.user.id,
                user_name=str(interaction.user),
                guild_id=interaction.guild_id,
                channel_id=interaction.channel_id,
                ephemeral=private,
                token=token,
                interaction_created_at=interaction.created_at.timestamp(),
                attachment_limit_bytes=attachment_limit(interaction),
            )
            estimate_s = await services.runner.estimate_s(command, clean, default_s=spec.estimate_s)
            workflow_id = new_workflow_id()
            try:
                record = await services.runner.start(
                    request,
                    spec,
                    estimate_s=estimate_s,
                    slot=slot,
                    workflow_id=workflow_id,
                )
            except RunnerBusy as exc:
                await self._refuse(interaction, str(exc), private=private, lease=lease)
                return
        logger.debug("workflow {} accepted from the slash command", record.workflow_id)

    async def _refuse(
        self,
        interaction: nextcord.Interaction,
        text: str,
        *,
        private: bool,
        lease: InteractionLease,
    ) -> None:
        """A refusal is ephemeral: a public "thinking" message is removed, the reason sent privately."""
        services = self.services
        message_text = f"❌ {text}"
        try:
            if private:
                await call_discord(
                    lambda: services.io.edit_original(
                        interaction.token, OutgoingMessage(content=message_text)
                    ),
                    stage="start",
                    lease=lease,
                )
                return
            await call_discord(
                lambda: services.io.delete_original(interaction.token), stage="start", lease=lease
            )
        except DiscordCallFailed as exc:
            logger.warning("refusal cleanup failed: {}", exc)
        await reply_ephemeral(interaction, message_text)

    # -- /workflow status|cancel ---------------------------------------------------------------

    @nextcord.slash_command(name="workflow", description="Look after your running workflows")
    async def workflow(self, interaction: nextcord.Interaction) -> None:
        """Parent of the subcommands; Discord never invokes it directly."""

    @workflow.subcommand(name="status", description="Stage, progress and elapsed time")
    async def workflow_status(
        self,
        interaction: nextcord.Interaction,
        workflow_id: str = nextcord.SlashOption(description="The id shown when it started"),
    ) -> None:
        record = await self._lookup(interaction, workflow_id)
        if record is None:
            return
        live = self.services.runner.live_state(record.workflow_id)
        if live is not None:
            record, state = live
        else:
            state = ProgressState(record.stage, record.progress, "", time.time())
        message = progress_message(record, state or ProgressState("starting", 0.0))
        embed = dict(message.embeds[0])
        embed["title"] = f"/{record.command}: {record.status.value}"
        steps = await self._steps_field(record)
        if steps is not None:
            embed["fields"] = [*embed.get("fields", []), steps]
        if record.delivered_via:
            embed["footer"] = {"text": f"delivered via {record.delivered_via}"}
        await interaction.response.send_message(
            embed=nextcord.Embed.from_dict(embed), ephemeral=True
        )

    async def _steps_field(self, record: WorkflowRecord) -> dict[str, object] | None:
        """The workflow's finished steps (the last few named), the one running, and how often
        it was resumed after a restart; None for a workflow that recorded no step."""
        live = self.services.runner.steps_state(record.workflow_id)
        if live is not None:
            names, running, resumes = list(live.names), live.running, live.resumes
        else:
            try:
                names = [step.name for step in await self.services.store.steps(record.workflow_id)]
            except NotifierError as exc:
                logger.error("steps of {} unreadable: {}", record.workflow_id, exc)
                names = []
            running, resumes = None, record.resumes
        if not names and running is None and not resumes:
            return None
        lines = [f"{len(names)} finished" + (f": {steps_listing(names)}" if names else "")]
        if running is not None:
            lines.append(f"running: {running}")
        if resumes:
            lines.append(f"resumed after a restart {resumes} time{'s' if resumes != 1 else ''}")
        return {"name": "Steps", "value": "\n".join(lines)[:1024], "inline": False}

    @workflow.subcommand(name="cancel", description="Stop a running workflow")
    async def workflow_cancel(
        self,
        interaction: nextcord.Interaction,
        workflow_id: str = nextcord.SlashOption(description="The id shown when it started"),
    ) -> None:
        record = await self._lookup(interaction, workflow_id)
        if record is None:
            return
        if not self.services.runner.is_running(record.workflow_id):
            await reply_ephemeral(interaction, self._not_cancelled(record))
            return
        await defer(interaction, ephemeral=True)
        if await self.services.runner.cancel(record.workflow_id, reason="cancelled"):
            await reply_ephemeral(interaction, f"Cancelled workflow `{record.workflow_id}`.")
            return
        # Its body had ended: the outcome is stored (or being stored) and on its way; say so.
        try:
            record = await self.services.store.get(record.workflow_id) or record
        except NotifierError as exc:
            logger.error("lookup of {} failed: {}", record.workflow_id, exc)
        await reply_ephemeral(interaction, self._not_cancelled(record))

    @staticmethod
    def _not_cancelled(record: WorkflowRecord) -> str:
        if record.status is WorkflowStatus.RUNNING:  # finishing: its result is being stored
            return (
                f"Workflow `{record.workflow_id}` had already finished; its result is being "
                f"stored and delivered. Any time: {retrieval_hint(record.workflow_id)}"
            )
        if record.status is WorkflowStatus.LOST:
            return f"Workflow `{record.workflow_id}` is not running (its result was lost)."
        ended = {
            WorkflowStatus.INTERRUPTED: "was interrupted",
            WorkflowStatus.CANCELLED: "was cancelled",
        }.get(record.status, record.status.value)
        return (
            f"Workflow `{record.workflow_id}` is not running: it {ended} and its result is "
            f"stored. Retrieve it with {retrieval_hint(record.workflow_id)}"
        )

    async def _lookup(
        self, interaction: nextcord.Interaction, workflow_id: str
    ) -> WorkflowRecord | None:
        try:
            clean = validate_workflow_id(workflow_id)
        except InvalidWorkflowId as exc:
            await reply_ephemeral(interaction, f"❌ {exc}")
            return None
        try:
            record = await self.services.store.get(clean)
        except NotifierError as exc:
            logger.error("lookup of {} failed: {}", clean, exc)
            record = None
        if not can_access(record, interaction, self.services.settings.discord.admin_role_ids):
            await reply_ephemeral(interaction, NOT_FOUND_TEXT)
            return None
        return record
