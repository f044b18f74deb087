"""The demo's story: alice runs `/autointel url depth:deep`, and every step is watched and told.

Each line of the timeline comes from something observed at that moment: the emulator's messages
and request log (what Discord would have seen), the bot's store, the SMTP sink's mailbox and the
incoming webhook's channel. Nothing is printed on a timer. A step that does not happen within its
limit stops the story with a line saying which (`StoryStalled`), and the demo exits non-zero.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ..discord.access import NOT_FOUND_TEXT
from ..records import DeliveryState, WorkflowRecord, WorkflowStatus, new_workflow_id
from ..store import ResultQuery, Store
from ..testing import DiscordEmulator, InteractionHandle, Message
from .smtp import SmtpSink

if TYPE_CHECKING:
    from ..app import NotifierBot

__all__ = [
    "ESTIMATE",
    "Story",
    "StoryStalled",
    "Timeline",
    "continues",
    "embed_text",
    "message_parts",
    "progress_of",
    "shown",
    "summary_lines",
    "title_of",
]

_POLL_S = 0.1
_PERCENT = re.compile(r"(\d+)%")
_STAGE = re.compile(r"Stage: \*\*([^*]+)\*\*(?: — ([^\n]+))?")
_URL = re.compile(r":?\s*https?://\S+")
_CHANNEL_MENTION = re.compile(r"<#(\d+)>")
ESTIMATE = re.compile(r"Estimated duration: about ([^.\n]+)\.")


async def within[T](
    what: str, waiting: Awaitable[T], limit_s: float | None, stalled: type[Exception]
) -> T:
    """`waiting`'s result, or `stalled` saying `what` did not happen within `limit_s`."""
    try:
        async with asyncio.timeout(limit_s):
            return await waiting
    except TimeoutError:
        raise stalled(f"{what} did not happen within {limit_s or 0:.0f} s") from None


async def poll_until[T](probe: Callable[[], Awaitable[T | None]]) -> T:
    """Poll something that is not the emulator's (the store, the mailbox) until it answers."""
    while (value := await probe()) is None:  # noqa: ASYNC110 - state outside the emulator
        await asyncio.sleep(_POLL_S)
    return value


async def stored_outcome(store: Store, workflow_id: str) -> WorkflowRecord | None:
    """The workflow's record once its outcome is durable, not merely decided: the store serves a
    finished record from memory while its file is being written; `path` is set once the write
    (with fsync) is done."""
    record = await store.get(workflow_id)
    if record is None or record.status is WorkflowStatus.RUNNING or record.path is None:
        return None
    return record


class StoryStalled(Exception):
    """A step of the story did not happen within its limit."""


class Timeline:
    """Prints `[mm:ss.s] what happened`, relative to the moment the command was run."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._t0: float | None = None

    def start(self) -> None:
        self._t0 = time.monotonic()

    @property
    def elapsed_s(self) -> float:
        return 0.0 if self._t0 is None else time.monotonic() - self._t0

    def stamp(self) -> str:
        minutes, seconds = divmod(self.elapsed_s, 60)
        return f"[{int(minutes):02d}:{seconds:04.1f}]"

    def say(self, text: str) -> None:
        print(f"{self.stamp()} {text}", file=self._out, flush=True)

    def line(self, text: str = "") -> None:
        print(text, file=self._out, flush=True)


def shown(text: str, limit: int = 90) -> str:
    """One line of a message, as a quote: markdown and emoji removed, cut at `limit`."""
    flat = " ".join(text.replace("`", "").replace("**", "").split())
    flat = "".join(ch for ch in flat if ch.isascii() or ch.isalpha())
    flat = flat.strip()
    return flat if len(flat) <= limit else flat[: limit - 3].rstrip() + "..."


def continues(text: str, emulator: DiscordEmulator) -> str:
    """The hand-off's "... will continue in #general" part, with the channel named."""
    names = {str(c.id): c.name for c in emulator.channels.values()}
    text = _CHANNEL_MENTION.sub(lambda m: f"#{names.get(m.group(1), m.group(1))}", text)
    sentence = next((s for s in text.split(", so ") if "continue" in s), text)
    return shown(sentence.split("\n")[0], 80)


def embed_text(message: Message) -> str:
    parts: list[str] = []
    for embed in message.embeds:
        parts += [str(embed.get("title", "")), str(embed.get("description", ""))]
    return "\n".join(parts)


def title_of(message: Message) -> str:
    for embed in message.embeds:
        if embed.get("title"):
            return str(embed["title"])
    return message.content.splitlines()[0] if message.content else ""


@dataclass
class _Progress:
    percent: int
    stage: str
    detail: str


def progress_of(message: Message | None, workflow_id: str) -> _Progress | None:
    """The progress a status message shows (its embed: bar and percent, stage — detail, id)."""
    if message is None or message.loading or message.deleted:
        return None
    text = embed_text(message)
    if workflow_id not in text or "Stage:" not in text:
        return None
    percent = _PERCENT.search(text)
    stage = _STAGE.search(text)
    if percent is None or stage is None:
        return None
    name = stage.group(1).strip()
    detail = _URL.sub("", stage.group(2) or "").strip()
    return _Progress(int(percent.group(1)), name, "" if detail == name else detail)


@dataclass
class StoryFacts:
    """What the summary reports, filled in as the story goes."""

    workflow_id: str = ""
    deferred_after_s: float | None = None
    handoff_left_s: float | None = None
    calls_after_expiry: int = 0
    record: WorkflowRecord | None = None
    result_path: Path | None = None
    emails: int = 0
    webhook_posts: int = 0
    owner_served: bool = False
    others_refused: bool = False
    notes: list[str] = field(default_factory=list)


class Story:
    """Plays alice (and bob) against the running bot and tells what happens."""

    def __init__(
        self,
        *,
        emulator: DiscordEmulator,
        bot: NotifierBot,
        site_url: str,
        smtp: SmtpSink,
        ops_channel_id: int,
        ops_webhook_id: int,
        store_path: Path,
        timeline: Timeline,
        step_limit_s: float,
    ) -> None:
        self.emulator = emulator
        self.bot = bot
        self.site_url = site_url
        self.smtp = smtp
        self.ops_channel_id = ops_channel_id
        self.ops_webhook_id = ops_webhook_id
        self.store_path = store_path
        self.say = timeline.say
        self.timeline = timeline
        self.step_limit_s = step_limit_s
        self.facts = StoryFacts()
        self._handed_off = False
        self._seen: dict[str, asyncio.Event] = {
            "email:completed": asyncio.Event(),
            "webhook:completed": asyncio.Event(),
        }

    # -- helpers -------------------------------------------------------------------------------

    async def _step[T](self, what: str, waiting: Awaitable[T], limit_s: float | None = None) -> T:
        limit = self.step_limit_s if limit_s is None else limit_s
        return await within(what, waiting, limit, StoryStalled)

    async def _until[T](self, probe: Callable[[], Awaitable[T | None]]) -> T:
        return await poll_until(probe)

    @property
    def ttl_s(self) -> float:
        return self.emulator.config.interaction_ttl_s

    # -- the story -----------------------------------------------------------------------------

    async def play(self, *, url_label: str) -> StoryFacts:
        emulator = self.emulator
        self.timeline.line(f"alice runs /autointel url:{url_label} depth:deep")
        self.timeline.start()
        handle = await emulator.trigger_command(
            "autointel", {"url": self.site_url, "depth": "deep"}, user="alice"
        )
        watchers = [
            asyncio.create_task(self._watch_progress(handle), name="demo-progress"),
            asyncio.create_task(self._watch_ops(), name="demo-ops"),
            asyncio.create_task(self._watch_mail(), name="demo-mail"),
        ]
        try:
            await self._started(handle)
            await self._handoff(handle)
            await self._expiry(handle)
            await self._persisted_and_delivered()
            await self._step(
                "the e-mail and the webhook post about the completed workflow",
                asyncio.gather(*(e.wait() for e in self._seen.values())),
            )
            await self._retrieval(handle)
        finally:
            for task in watchers:
                task.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
        return self.facts

    async def _started(self, handle: InteractionHandle) -> None:
        kind = await self._step("the initial response", handle.wait_for_response())
        delay = handle.response_delay_s or 0.0
        self.facts.deferred_after_s = delay
        what = (
            "deferred (alice sees 'notifier-bot is thinking...')" if kind == 5 else f"type {kind}"
        )
        self.say(f"/autointel {what}, {delay * 1000:.0f} ms after the command; Discord allows 3 s")

        async def stored() -> WorkflowRecord | None:
            records = await self.bot.store.search(ResultQuery(user_id=self.alice_id))
            return records[0] if records else None

        record = await self._step("the workflow's row in the store", self._until(stored))
        self.facts.workflow_id = record.workflow_id
        self.say(f"workflow {record.workflow_id} stored as running, started in the background")
        warning = await self._step(
            "the private timeout warning",
            handle.wait_for_message(
                lambda m: m.ephemeral and "Long workflow" in embed_text(m),
                timeout_s=self.step_limit_s,
            ),
        )
        estimate = ESTIMATE.search(embed_text(warning))
        shown = estimate.group(1) if estimate else "longer than the token lives"
        self.say(
            f"timeout warning shown privately to alice: estimated {shown}, "
            f"the token lives {self.ttl_s:.0f} s here (15 min on Discord)"
        )

    @property
    def alice_id(self) -> int:
        return self.emulator.users["alice"].id

    async def _handoff(self, handle: InteractionHandle) -> None:
        message = await self._step(
            "the hand-off message",
            handle.wait_for_message(
                lambda m: "Still working" in m.content, timeout_s=self.step_limit_s
            ),
        )
        created = handle.record.created_at
        posts = [
            r
            for r in self.emulator.requests
            if r.method == "POST"
            and handle.token in r.path
            and isinstance(r.response, dict)
            and str(r.response.get("id")) == str(message.id)
        ]
        left = created + self.ttl_s - posts[0].at if posts else None
        self.facts.handoff_left_s = left
        when = f"while the token had {left:.1f} s left" if left is not None else "before expiry"
        self._handed_off = True
        self.say(f'hand-off posted {when}: "...{continues(message.content, self.emulator)}"')

    async def _expiry(self, handle: InteractionHandle) -> None:
        async def expired() -> bool | None:
            return True if handle.expired else None

        await self._step("the token's expiry", self._until(expired), self.ttl_s + 10)
        self.say(
            "interaction token expired (Discord would now answer 401, code 50027); "
            f"calls made with it since: {self._calls_after_expiry(handle)}"
        )

    def _calls_after_expiry(self, handle: InteractionHandle) -> int:
        expiry = handle.record.created_at + self.ttl_s
        calls = [r for r in self.emulator.requests if handle.token in r.path and r.at > expiry]
        self.facts.calls_after_expiry = len(calls)
        return len(calls)

    async def _persisted_and_delivered(self) -> None:
        store = self.bot.store
        workflow_id = self.facts.workflow_id
        record = await self._step(
            "the result being stored", self._until(lambda: stored_outcome(store, workflow_id))
        )
        path = self.store_path / str(record.path)
        self.facts.result_path = path
        size = f"{record.size_bytes:,} bytes" if record.size_bytes is not None else "size unknown"
        self.say(
            f"result persisted: {record.status.value}, results/{path.name} ({size}), "
            "before any delivery"
        )

        async def delivered() -> WorkflowRecord | None:
            current = await store.get(workflow_id)
            if current is None or current.delivery_state is DeliveryState.PENDING:
                return None
            return current

        record = await self._step("the result's delivery", self._until(delivered))
        self.facts.record = record
        if record.delivery_state is not DeliveryState.DELIVERED:
            self.say("result could not be delivered on Discord: it stays in the store")
            return
        via = record.delivered_via or "?"
        if via == "channel":
            mention = f"<@{self.alice_id}>"
            message = await self._step(
                "the result message in #general",
                self.emulator.wait_for_channel_message(
                    predicate=lambda m: m.content.startswith(mention) and m.interaction_id is None,
                    timeout_s=self.step_limit_s,
                ),
            )
            self.say(
                f"result delivered in #general with the bot token, mentioning alice "
                f"({message_parts(message)})"
            )
        elif via == "dm":
            self.say("result delivered by DM to alice (bot token)")
        else:
            self.say(f"result delivered via {via}")

    async def _retrieval(self, handle: InteractionHandle) -> None:
        emulator = self.emulator
        workflow_id = self.facts.workflow_id
        own = await emulator.trigger_command(
            "retrieve_results", {"workflow_id": workflow_id}, user="alice"
        )
        shown = await self._step(
            "alice's /retrieve_results answer",
            own.wait_for_message(
                lambda m: bool(m.embeds) or bool(m.attachments), timeout_s=self.step_limit_s
            ),
        )
        text = embed_text(shown) + shown.content
        self.facts.owner_served = (workflow_id in text) or bool(shown.attachments)
        self.say(
            "/retrieve_results by alice: her result, read from the store, as the command's "
            f"reply ({message_parts(shown)})"
        )

        other = await emulator.trigger_command(
            "retrieve_results", {"workflow_id": workflow_id}, user="bob"
        )
        refused = await self._step(
            "bob's /retrieve_results answer", other.wait_for_message(timeout_s=self.step_limit_s)
        )
        unknown = await emulator.trigger_command(
            "retrieve_results", {"workflow_id": new_workflow_id()}, user="bob"
        )
        nothing = await self._step(
            "the answer for an unknown id", unknown.wait_for_message(timeout_s=self.step_limit_s)
        )
        same = refused.content == nothing.content and refused.ephemeral and nothing.ephemeral
        self.facts.others_refused = same and refused.content == NOT_FOUND_TEXT
        verdict = (
            "the same answer as for an id that does not exist"
            if same
            else f"DIFFERENT from the unknown-id answer {nothing.content!r}"
        )
        self.say(f'/retrieve_results by bob: refused, "{refused.content}" ({verdict})')
        self._calls_after_expiry(handle)  # again, for the summary: still none

    # -- watchers ------------------------------------------------------------------------------

    def _status_in_channel(self, workflow_id: str) -> Message | None:
        for message in self.emulator.channel_messages(include_deleted=False):
            if (
                message.interaction_id is None
                and message.webhook_id is None
                and progress_of(message, workflow_id) is not None
            ):
                return message
        return None

    async def _watch_progress(self, handle: InteractionHandle) -> None:
        """Report the status message's progress as alice sees it: each 20 %, and where it is."""
        place = ""
        bucket = -1
        while True:
            await asyncio.sleep(_POLL_S)
            workflow_id = self.facts.workflow_id
            if not workflow_id:
                continue
            if self._handed_off:
                now_place = "channel"
                progress = progress_of(self._status_in_channel(workflow_id), workflow_id)
            else:
                now_place = "interaction"
                progress = progress_of(handle.original, workflow_id)
            if progress is None or progress.percent >= 100:
                continue
            if now_place == place and progress.percent // 20 == bucket:
                continue
            line = f"progress {progress.percent}%: {progress.stage}"
            if progress.detail:
                line += f", {progress.detail}"
            if now_place != place:
                line += (
                    " (editing the 'thinking' message with the interaction token)"
                    if now_place == "interaction"
                    else " (now a status message in #general, edited with the bot token)"
                )
            place, bucket = now_place, progress.percent // 20
            self.say(line)

    async def _watch_ops(self) -> None:
        """Every post the incoming webhook of #ops receives (the fanout's discord_webhook)."""
        seen: set[int] = set()
        while True:
            await asyncio.sleep(_POLL_S)
            for message in self.emulator.webhook_messages(self.ops_webhook_id):
                if message.id in seen:
                    continue
                seen.add(message.id)
                self.facts.webhook_posts += 1
                title = title_of(message)
                self.say(f'webhook received in #ops: "{shown(title, 70)}"')
                if title.startswith("Completed"):
                    self._seen["webhook:completed"].set()

    async def _watch_mail(self) -> None:
        count = 0
        while True:
            messages = await self.smtp.wait_for(count + 1)
            for mail in messages[count:]:
                self.facts.emails += 1
                to = ", ".join(mail.rcpt_tos)
                self.say(f'email received by {to}: subject "{shown(mail.subject, 80)}"')
                if "finished" in mail.subject:
                    self._seen["email:completed"].set()
            count = len(messages)


def message_parts(message: Message) -> str:
    embeds = len(message.embeds)
    files = len(message.attachments)
    parts = [f"{embeds} embed{'s' if embeds != 1 else ''}"]
    if files:
        names: Iterable[str] = (a.filename.rsplit(".", 1)[-1] for a in message.attachments)
        parts.append(f"{files} attachment{'s' if files != 1 else ''} ({', '.join(names)})")
    return ", ".join(parts)


def summary_lines(facts: StoryFacts, *, ttl_s: float, requests: list[Any]) -> list[str]:
    """The closing summary, from what the story observed."""
    record = facts.record
    duration = f"{record.duration_s:.0f} s" if record and record.duration_s is not None else "?"
    errors = sum(1 for r in requests if r.status is not None and r.status >= 400)
    expired_calls = sum(1 for r in requests if r.error_code == 50027)
    left = f"{facts.handoff_left_s:.0f} s" if facts.handoff_left_s is not None else "?"
    via = record.delivered_via if record else None
    lines = [
        "Summary",
        f"  /autointel depth:deep ran {duration}; its interaction token lived {ttl_s:.0f} s.",
        f"  - answered in {(facts.deferred_after_s or 0) * 1000:.0f} ms (deferred), "
        f"handed off {left} before the token expired",
        f"  - calls made with the expired token: {facts.calls_after_expiry} "
        f"(answers with code 50027: {expired_calls})",
        f"  - result written to disk before delivery: {facts.result_path}",
        f"  - delivered: {'in #general (bot token)' if via == 'channel' else via}",
        f"  - operators told: {facts.emails} e-mail(s), {facts.webhook_posts} webhook post(s) "
        "in #ops",
        "  - /retrieve_results: "
        + ("the owner gets the result" if facts.owner_served else "the owner got NOTHING")
        + "; "
        + (
            "anyone else gets the same answer as for an unknown id"
            if facts.others_refused
            else "another user was NOT refused properly"
        ),
        f"  Discord API requests: {len(requests)} ({errors} answered with an error)",
    ]
    return lines
