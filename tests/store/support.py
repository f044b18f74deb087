"""Helpers for the store tests: record builders, a settable clock, metric reads."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY

from notifier.records import WorkflowRecord, WorkflowStatus, new_workflow_id
from notifier.store import ResultStore

START_S = 1_800_000_000.0  # a fixed "now" for stores opened with a FakeClock
DAY_S = 86_400.0

EXAMPLE_RESULT: dict[str, Any] = {
    "url": "https://example.com/",
    "title": "Example Domain",
    "summary": "A short page used in documentation examples.",
    "pages_analysed": 12,
    "word_count": 5123,
    "reading_time_min": 25.6,
    "top_keywords": [["example", 12], ["domain", 8], ["documentation", 5]],
    "headings": ["Example Domain", "More information"],
    "links": {"internal": 4, "external": 2},
    "pages": [
        {"url": "https://example.com/a", "title": "A", "word_count": 812},
        {"url": "https://example.com/b", "title": "B", "word_count": 1024},
    ],
}


class FakeClock:
    """The store's clock, moved by the test: retention and durations without sleeping.

    `uptime` is the host's uptime clock to go with it (`ResultStore.open(uptime=...)`), moving
    as the wall clock does: time that really passed. Without it the store reads the real uptime
    clock, which barely moves while the test advances the wall clock: a clock jump.
    """

    def __init__(self, now: float = START_S) -> None:
        self.now = now
        self.boot_id = "fake-boot"
        self.uptime_s = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Time passes: the wall clock and the uptime clock move together."""
        self.now += seconds
        self.uptime_s += seconds

    def jump(self, seconds: float) -> None:
        """The wall clock is set (wrongly, or back to right): the uptime clock does not move."""
        self.now += seconds

    def reboot(self) -> None:
        self.boot_id = f"{self.boot_id}+"
        self.uptime_s = 30.0

    def uptime(self) -> tuple[str, float]:
        return self.boot_id, self.uptime_s


def make_record(
    *,
    workflow_id: str | None = None,
    user_id: int = 1,
    command: str = "autointel",
    url: str = "https://example.com/",
    depth: str = "quick",
    created_at: float = 0.0,
    **fields: Any,
) -> WorkflowRecord:
    return WorkflowRecord(
        workflow_id=new_workflow_id() if workflow_id is None else workflow_id,
        command=command,
        user_id=user_id,
        options={"url": url, "depth": depth},
        user_name=f"user{user_id}",
        created_at=created_at,
        **fields,
    )


async def finished(
    store: ResultStore,
    record: WorkflowRecord | None = None,
    *,
    result: dict[str, Any] | None = None,
    status: WorkflowStatus = WorkflowStatus.COMPLETED,
    error: str = "",
) -> WorkflowRecord:
    """Create and finish one workflow, as the runner does."""
    record = record or make_record()
    await store.create(record)
    return (
        await store.finish(
            record.workflow_id,
            status=status,
            result=EXAMPLE_RESULT if result is None else result,
            error=error,
            reason=status.value,
        )
    ).record


def metric(name: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(name, labels)
    return 0.0 if value is None else value


def files_under(root: Path) -> dict[str, bytes]:
    """Every regular file below `root` (relative path -> bytes), to show what a step changed."""
    found: dict[str, bytes] = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = Path(dirpath) / name
            found[str(path.relative_to(root))] = path.read_bytes()
    return found


def result_files(root: Path) -> list[str]:
    """Every name in results/ (documents, delivery marks, temps), sorted."""
    return sorted(p.name for p in (root / "results").iterdir())


def stored(*workflow_ids: str, marked: tuple[str, ...] = ()) -> list[str]:
    """`result_files` as it should be: these results, and delivery marks for `marked`."""
    names = [f"{w}.json" for w in workflow_ids] + [f"{w}.delivered" for w in marked]
    return sorted(names)
