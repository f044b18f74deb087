"""`/retrieve_results` and `/results`: stored results, shown by the one renderer."""

from __future__ import annotations

import io
import re
import time

import nextcord
from loguru import logger
from nextcord.ext import commands

from ..discord.access import NOT_FOUND_TEXT, can_access
from ..discord.embeds import RenderedResult, export_command, render_record_list, render_result
from ..discord.replies import attachment_limit, defer, reply_ephemeral
from ..errors import InvalidWorkflowId, NotifierError
from ..metrics import ORPHANED_RESULTS_RETRIEVED
from ..records import StoredResult, WorkflowRecord, WorkflowStatus, validate_workflow_id
from ..store import ResultQuery
from .services import Services

__all__ = ["ResultsCog", "parse_since"]

PAGE_SIZE = 10
_NEWER = "results:newer"
_OLDER = "results:older"
_SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([mhdw])\s*$")
_UNIT_S = {"m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str, *, now: float | None = None) -> float:
    """'30m', '12h', '7d', '2w' -> a Unix time that long ago; ValueError naming the value."""
    match = _SINCE.match(text.lower())
    if not match:
        raise ValueError(f"since: {text!r} is not a duration like 30m, 12h, 7d or 2w")
    amount, unit = float(match.group(1)), match.group(2)
    # A huge amount (float("9" * 400) is inf) means "since ever", not a non-finite time.
    return max(0.0, (now or time.time()) - amount * _UNIT_S[unit])


class ResultsView(nextcord.ui.View):
    """Prev/Next buttons over a user's results; only the user who asked may turn the pages."""

    def __init__(self, cog: ResultsCog, owner_id: int, query: ResultQuery, total: int) -> None:
        super().__init__(timeout=600)
        self.cog = cog
        self.owner_id = owner_id
        self.query = query
        self.total = total
        self.page = 0
        # nextcord files a view sent as an interaction response under its custom ids alone (no
        # message id), so fixed ids would hand every press to the newest list of anyone: each
        # list gets ids of its own.
        for item in self.children:
            if isinstance(item, nextcord.ui.Button) and item.custom_id in (_NEWER, _OLDER):
                item.custom_id = f"{item.custom_id}:{self.id}"
        self._sync_buttons()

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // PAGE_SIZE))

    def _sync_buttons(self) -> None:
        for item in self.children:
            if isinstance(item, nextcord.ui.Button) and item.custom_id:
                if item.custom_id.startswith(_NEWER):
                    item.disabled = self.page <= 0
                elif item.custom_id.startswith(_OLDER):
                    item.disabled = self.page >= self.pages - 1

    async def interaction_check(self, interaction: nextcord.Interaction) -> bool:
        if interaction.user is None or interaction.user.id != self.owner_id:
            await reply_ephemeral(interaction, "These buttons belong to someone else's list.")
            return False
        return True

    async def _show(self, interaction: nextcord.Interaction) -> None:
        self._sync_buttons()
        embed = await self.cog.page_embed(self.query, self.page, self.total)
        await interaction.response.edit_message(embed=embed, view=self)

    @nextcord.ui.button(label="◀ Newer", style=nextcord.ButtonStyle.secondary, custom_id=_NEWER)
    async def previous(self, button: nextcord.ui.Button, interaction: nextcord.Interaction) -> None:
        self.page = max(0, self.page - 1)
        await self._show(interaction)

    @nextcord.ui.button(label="Older ▶", style=nextcord.ButtonStyle.secondary, custom_id=_OLDER)
    async def next(self, button: nextcord.ui.Button, interaction: nextcord.Interaction) -> None:
        self.page = min(self.pages - 1, self.page + 1)
        await self._show(interaction)


class ResultsCog(commands.Cog):
    def __init__(self, services: Services) -> None:
        self.services = services

    # -- /retrieve_results ---------------------------------------------------------------------

    @nextcord.slash_command(name="retrieve_results", description="Get a workflow's stored result")
    async def retrieve_results(
        self,
        interaction: nextcord.Interaction,
        workflow_id: str = nextcord.SlashOption(
            description="The id shown when the workflow started", autocomplete=True
        ),
    ) -> None:
        try:
            clean = validate_workflow_id(workflow_id)
        except InvalidWorkflowId as exc:
            ORPHANED_RESULTS_RETRIEVED.labels(success="false").inc()
            await reply_ephemeral(interaction, f"❌ That is not a workflow id: {exc}.")
            return
        record = await self._get(clean)
        if not can_access(record, interaction, self.services.settings.discord.admin_role_ids):
            ORPHANED_RESULTS_RETRIEVED.labels(success="false").inc()
            await reply_ephemeral(interaction, NOT_FOUND_TEXT)
            return
        assert record is not None
        if record.status is WorkflowStatus.RUNNING:
            await reply_ephemeral(
                interaction,
                f"Workflow `{record.workflow_id}` is still running ({record.stage}, "
                f"{record.progress:.0%}); try `/workflow status`.",
            )
            return
        if record.status is WorkflowStatus.LOST:
            ORPHANED_RESULTS_RETRIEVED.labels(success="false").inc()
            await reply_ephemeral(
                interaction,
                f"⚠️ The result of workflow `{record.workflow_id}` was lost (its stored file "
                "went missing or was corrupt); an operator can inspect it with "
                f"`python -m notifier results show {record.workflow_id}`.",
            )
            return
        # Public only for its owner's own public workflow: an admin's copy of someone else's
        # result stays between the admin and the bot, wherever the admin asks.
        private = (
            record.ephemeral or interaction.user is None or (interaction.user.id != record.user_id)
        )
        if not await defer(interaction, ephemeral=private):
            ORPHANED_RESULTS_RETRIEVED.labels(success="false").inc()
            return
        try:
            document = await self.services.store.read_result(record.workflow_id)
        except NotifierError as exc:
            logger.error("result {} unreadable: {}", record.workflow_id, exc)
            ORPHANED_RESULTS_RETRIEVED.labels(success="false").inc()
            await self._fail_privately(
                interaction,
                private,
                "❌ The stored result could not be read; an operator can inspect it with "
                f"`python -m notifier results show {record.workflow_id}`.",
            )
            return
        stored = StoredResult(record, document)
        rendered = render_result(stored, attachment_limit_bytes=attachment_limit(interaction))
        sent = await self._send(interaction, record, rendered, private=private)
        if not sent and rendered.files:
            # Discord refused the upload after all (a smaller limit than announced, the request
            # too large): the summary, with the operator's export command, still gets through.
            summary = render_result(stored, attachment_limit_bytes=0)
            sent = await self._send(interaction, record, summary, private=private)
        ORPHANED_RESULTS_RETRIEVED.labels(success="true" if sent else "false").inc()
        if not sent:
            await self._fail_privately(
                interaction,
                private,
                "❌ The result could not be sent here; it is stored, and an operator can export "
                f"it with `{export_command(record.workflow_id)}`.",
            )

    async def _send(
        self,
        interaction: nextcord.Interaction,
        record: WorkflowRecord,
        rendered: RenderedResult,
        *,
        private: bool,
    ) -> bool:
        files = [nextcord.File(io.BytesIO(f.data), filename=f.filename) for f in rendered.files]
        try:
            await interaction.followup.send(
                content=rendered.content,
                embeds=[nextcord.Embed.from_dict(e) for e in rendered.embeds],
                files=files,
                ephemeral=private,
            )
        except nextcord.HTTPException as exc:
            logger.warning(
                "result {} not sent as {}: {} (code {})",
                record.workflow_id,
                rendered.mode,
                exc.status,
                exc.code,
            )
            return False
        return True

    async def _fail_privately(
        self, interaction: nextcord.Interaction, private: bool, text: str
    ) -> None:
        """An error after a public defer: the public "thinking" message goes (the first followup
        would fill it, publicly), and the error is sent to the caller alone."""
        if not private:
            try:
                await interaction.delete_original_message()
            except nextcord.HTTPException as exc:
                logger.warning("public placeholder not removed: {} (code {})", exc.status, exc.code)
        await reply_ephemeral(interaction, text)

    @retrieve_results.on_autocomplete("workflow_id")
    async def _complete_id(self, interaction: nextcord.Interaction, workflow_id: str) -> None:
        if interaction.user is None:
            return
        prefix = (workflow_id or "").strip().lower().replace("-", "")[:32]
        if prefix and not re.fullmatch(r"[0-9a-f]*", prefix):
            await interaction.response.send_autocomplete({})
            return
        records = await self.services.store.recent_ids(interaction.user.id, prefix, 25)
        choices = {_choice_name(r): r.workflow_id for r in records}
        await interaction.response.send_autocomplete(choices)

    async def _get(self, workflow_id: str) -> WorkflowRecord | None:
        try:
            return await self.services.store.get(workflow_id)
        except NotifierError as exc:
            logger.error("lookup of {} failed: {}", workflow_id, exc)
            return None

    # -- /results ------------------------------------------------------------------------------

    @nextcord.slash_command(name="results", description="Your workflows' results, newest first")
    async def results(
        self,
        interaction: nextcord.Interaction,
        url: str | None = nextcord.SlashOption(
            description="Only results whose URL contains this", required=False, default=None
        ),
        since: str | None = nextcord.SlashOption(
            description="Only results newer than this: 30m, 12h, 7d, 2w",
            required=False,
            default=None,
        ),
        status: str | None = nextcord.SlashOption(
            description="Only results in this state",
            required=False,
            default=None,
            choices=[s.value for s in WorkflowStatus],
        ),
    ) -> None:
        assert interaction.user is not None
        try:
            since_ts = parse_since(since) if since else None
        except ValueError as exc:
            await reply_ephemeral(interaction, f"❌ {exc}")
            return
        if url is not None and len(url) > 200:
            await reply_ephemeral(interaction, "❌ url: at most 200 characters")
            return
        query = ResultQuery(
            user_id=interaction.user.id,
            url_contains=url or None,
            status=WorkflowStatus(status) if status else None,
            since=since_ts,
            limit=PAGE_SIZE,
        )
        total = await self.services.store.count(query)
        embed = await self.page_embed(query, 0, total)
        view = ResultsView(self, interaction.user.id, query, total)
        await interaction.response.send_message(embed=embed, view=view, ephemeral=True)

    async def page_embed(self, query: ResultQuery, page: int, total: int) -> nextcord.Embed:
        from dataclasses import replace

        records = await self.services.store.search(replace(query, offset=page * PAGE_SIZE))
        # `page` counts from 0 here, from 1 in what the user reads.
        return nextcord.Embed.from_dict(render_record_list(records, page + 1, total, PAGE_SIZE))


def _choice_name(record: WorkflowRecord) -> str:
    label = f"{record.workflow_id} · {record.command} {record.status.value} {record.url}"
    return label[:100]
