"""Helpers for bot tests: a workflow the test steers, and readable views of what users saw."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from notifier.app import NotifierBot
from notifier.testing.model import Message
from notifier.workflows import ReportProgress, WorkflowFailed, WorkflowSpec


def text_of(message: Message) -> str:
    """Everything a person reads in a message: content, embeds and attachment names."""
    parts = [message.content, json.dumps(message.embeds, ensure_ascii=False)]
    parts += [a.filename for a in message.attachments]
    return "\n".join(parts)


class SteeredWorkflow:
    """Stands in for /autointel's body: the test decides when it reports, finishes or fails."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.fail_with: str | None = None
        self.result: dict[str, Any] = {
            "url": "http://127.0.0.1/",
            "title": "Steered result",
            "summary": "A result the test controlled.",
            "pages_analysed": 3,
        }
        self.report: ReportProgress | None = None
        self.reports_per_second = 0.0

    async def validate(self, options: Mapping[str, str]) -> dict[str, str]:
        return {"url": options.get("url", ""), "depth": options.get("depth", "quick")}

    async def run(self, options: Mapping[str, str], report: ReportProgress) -> dict[str, Any]:
        self.report = report
        report(stage="working", progress=0.1)
        self.started.set()
        if self.reports_per_second:
            interval = 1.0 / self.reports_per_second
            step = 0
            while not self.release.is_set():
                step += 1
                report(stage="crunching", progress=min(0.99, step / 1000), detail=f"step {step}")
                await asyncio.sleep(interval)
        await self.release.wait()
        if self.fail_with is not None:
            raise WorkflowFailed(self.fail_with)
        return dict(self.result)

    def install(self, bot: NotifierBot) -> None:
        bot.workflows["autointel"] = WorkflowSpec(
            name="autointel",
            description="steered by a test",
            validate=self.validate,
            run=self.run,
        )


async def wait_until(predicate: Any, timeout_s: float = 15.0, interval_s: float = 0.05) -> None:
    """Poll a condition that lives outside the emulator (store rows, counters)."""
    async with asyncio.timeout(timeout_s):
        while not await _call(predicate):  # noqa: ASYNC110 - the state is not the emulator's
            await asyncio.sleep(interval_s)


async def _call(predicate: Any) -> bool:
    value = predicate()
    if asyncio.iscoroutine(value):
        value = await value
    return bool(value)
