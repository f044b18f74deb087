"""Benchmark 5 — scale: 10,000 concurrently tracked workflows, memory per workflow and loop lag.

    .venv/bin/python -m bench.scale [--quick] [--workflows 10000] [--hold-s 20] [--report-s 1]

What runs is the bot's own machinery, with the project's default settings except the concurrency
limits (`runner.max_concurrent` and `max_per_user` raised to fit), in one process and one loop:

- `Runner.start` for each workflow (index row written before it starts, `started` notice queued),
  50 starts in flight at a time; each workflow sleeps `--report-s`, reports progress, and repeats
  until it is told to stop; then it returns a small result, which the runner persists
  (`ResultStore.finish`: file + fsyncs + index), announces (`completed` notice) and delivers;
- progress goes through the real `ProgressThrottle` (`progress.min_interval` 2 s), the real
  delivery ladder and `ResultStore.update_progress`, and `progress` notices through the fanout's
  30 s per-notifier throttle;
- the fanout has two notifiers on the built-in `dm` plugin (`ops`: started, progress, completed;
  `requester`: completed), whose `send_dm` is an in-process sink that counts; every notice is
  an outbox row, committed before it is sent and marked sent after;
- Discord REST is an in-process stand-in (`InProcessDiscord`, a `DiscordIO` subclass that counts
  calls and answers at once). Requests carry no interaction token (`token=None`), so the ladder
  uses the channel rung: one status message per workflow, then edits. The emulator is not used
  here on purpose: its real per-channel rate limits (5 messages / 5 s) would make 10,000 status
  messages take hours, and its own memory (every message with its edit history) would be counted
  as the bot's. Discord's global limit (50 requests/s) would also cap a real bot far below
  10,000 workflows' progress edits; this benchmark measures what the bot itself holds and does.

Phases: start (all N started), tracked (all N running for `--hold-s`), finish (all told to stop,
until every result is stored and delivered and every notice sent). Memory: peak RSS while all N are
tracked minus RSS after a warm-up, divided by N. Lag: a 1 ms probe, per phase and overall.
Targets: < 20 KB per workflow, p99 lag < 10 ms.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import random
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from notifier.config import Settings
from notifier.discord.io import DiscordIO, OutgoingMessage
from notifier.fanout.dispatch import Fanout
from notifier.fanout.outbox import OutboxStatus
from notifier.metrics import WORKFLOWS_RUNNING
from notifier.plugins import PluginContext
from notifier.records import DeliveryState, WorkflowStatus
from notifier.runner.gc_tuning import tune_garbage_collector
from notifier.runner.runner import Runner, WorkflowRequest
from notifier.store import ResultQuery, ResultStore

from .common import (
    GcPauses,
    LagProbe,
    MeasureError,
    StallSampler,
    Target,
    add_gc_flag,
    base_parser,
    fmt_ms,
    machine_line,
    main_guard,
    percentile,
    print_table,
    print_targets,
    quiet_logs,
    rss_bytes,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
START_CONCURRENCY = 50
PHASE_LIMIT_S = 600.0
USERS = 500
# Workflows started one at a time while all N are tracked, to time `Runner.start` under load.
LATE_STARTS = 10


class InProcessDiscord(DiscordIO):
    """Discord REST answered in-process: counts every call, returns ids, never fails."""

    def __init__(self) -> None:
        super().__init__(client=None)  # type: ignore[arg-type]
        self.calls: Counter[str] = Counter()
        self._next_id = 10_000

    @property
    def application_id(self) -> int:
        return 1

    @property
    def client_closed(self) -> bool:
        return False

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id

    async def edit_original(self, token: str, message: OutgoingMessage) -> None:
        self.calls["edit_original"] += 1
        await asyncio.sleep(0)

    async def delete_original(self, token: str) -> None:
        self.calls["delete_original"] += 1
        await asyncio.sleep(0)

    async def followup(self, token: str, message: OutgoingMessage) -> int:
        self.calls["followup"] += 1
        await asyncio.sleep(0)
        return self._id()

    async def edit_followup(self, token: str, message_id: int, message: OutgoingMessage) -> None:
        self.calls["edit_followup"] += 1
        await asyncio.sleep(0)

    async def channel_send(self, channel_id: int, message: OutgoingMessage, *, nonce: str) -> int:
        self.calls["channel_send"] += 1
        await asyncio.sleep(0)
        return self._id()

    async def channel_edit(
        self, channel_id: int, message_id: int, message: OutgoingMessage
    ) -> None:
        self.calls["channel_edit"] += 1
        await asyncio.sleep(0)

    async def dm_channel(self, user_id: int) -> int:
        self.calls["dm_channel"] += 1
        await asyncio.sleep(0)
        return 900_000 + user_id


@dataclass
class DMSink:
    """The `send_dm` the `dm` plugin is given: an in-process sink."""

    received: Counter[str] = field(default_factory=Counter)

    async def __call__(
        self, user_id: int, content: str, embed: dict[str, Any] | None, *, nonce: str | None = None
    ) -> None:
        self.received[content.split(":", 1)[0]] += 1
        await asyncio.sleep(0)


@dataclass
class Workload:
    """The body every workflow runs: sleep until `go`, then report, sleep `report_s`, repeat until
    `stop` (at most `max_steps`)."""

    report_s: float
    max_steps: int
    go: asyncio.Event = field(default_factory=asyncio.Event)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    reports: int = 0
    rng: random.Random = field(default_factory=lambda: random.Random(5))

    async def body(self, options: Any, report: Any) -> dict[str, Any]:
        await self.go.wait()
        await asyncio.sleep(self.rng.random() * self.report_s)  # spread the reports out
        step = 0
        while not self.stop.is_set() and step < self.max_steps:
            step += 1
            self.reports += 1
            report(stage="working", progress=min(0.99, step / 100), detail=f"step {step}")
            await asyncio.sleep(self.report_s)
        return {"summary": f"{step} steps", "url": options.get("url", ""), "steps": step}


@dataclass
class RssSampler:
    """Peak RSS per phase, sampled every 100 ms."""

    peaks: dict[str, int] = field(default_factory=dict)
    phase: str = "setup"

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[RssSampler]:
        async def sample() -> None:
            for _ in range(100_000):  # bounded: about 3 hours
                self.peaks[self.phase] = max(self.peaks.get(self.phase, 0), rss_bytes())
                await asyncio.sleep(0.1)

        task = asyncio.create_task(sample())
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def settings_for(root: Path, workflows: int) -> Settings:
    return Settings.model_validate(
        {
            "storage": {"path": str(root / "data")},
            "runner": {"max_concurrent": workflows + 1_000, "max_per_user": workflows + 1_000},
            "fanout": {"plugin_dirs": [], "outbox_path": str(root / "data" / "outbox.sqlite3")},
            "notifiers": [
                {
                    "name": "ops",
                    "plugin": "dm",
                    "on": ["started", "progress", "completed", "failed"],
                    "options": {"to_requester": False, "user_ids": [1]},
                },
                {
                    "name": "requester",
                    "plugin": "dm",
                    "on": ["completed"],
                    "options": {"to_requester": True},
                },
            ],
        }
    )


def request(i: int) -> WorkflowRequest:
    return WorkflowRequest(
        command="autointel",
        options={"url": f"https://site{i % 997}.example.com/page/{i}", "depth": "quick"},
        user_id=200_000 + i % USERS,
        user_name=f"user{i % USERS}",
        guild_id=42,
        channel_id=5_000 + i % 50,
        ephemeral=False,
        token=None,
        interaction_created_at=time.time(),
        attachment_limit_bytes=10 * 1024 * 1024,
    )


async def start_all(runner: Runner, workload: Workload, first: int, count: int) -> None:
    queue = list(range(first + count - 1, first - 1, -1))

    async def starter() -> None:
        while queue:
            await runner.start(request(queue.pop()), workload.body)

    await asyncio.gather(*(starter() for _ in range(START_CONCURRENCY)))


def running(runner: Runner) -> int:
    """Workflows the runner tracks, from its own `notifier_workflows_running` gauge."""
    del runner
    return int(next(iter(WORKFLOWS_RUNNING.collect())).samples[0].value)


async def wait_until_idle(runner: Runner, fanout: Fanout, what: str) -> None:
    """Until no workflow runs and no outbox row is pending (bounded by PHASE_LIMIT_S)."""
    deadline = time.monotonic() + PHASE_LIMIT_S
    while time.monotonic() < deadline:
        if not running(runner) and not await fanout.outbox.count(OutboxStatus.PENDING):
            return
        await asyncio.sleep(0.05)
    raise MeasureError(f"{what}: still busy after {PHASE_LIMIT_S:g} s")


async def run() -> None:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--workflows", type=int, default=10_000)
    parser.add_argument("--hold-s", type=float, default=20.0, help="seconds all N stay tracked")
    parser.add_argument("--report-s", type=float, default=1.0, help="seconds between reports")
    parser.add_argument("--warmup", type=int, default=200, help="workflows run before measuring")
    add_gc_flag(parser)
    parser.add_argument(
        "--stalls", action="store_true", help="sample where the loop is when it stalls > 20 ms"
    )
    args = parser.parse_args()
    if args.quick:
        args.workflows, args.hold_s, args.warmup = 1_000, 5.0, 50
    quiet_logs(args.log_level)
    n = args.workflows
    print(machine_line())
    print(
        f"scale: {n:,} workflows tracked at once, each reporting every {args.report_s:g} s, "
        f"held {args.hold_s:g} s; store under {PROJECT_ROOT}"
    )
    with tempfile.TemporaryDirectory(prefix=".bench-scale-", dir=PROJECT_ROOT) as tmp:
        root = Path(tmp)
        settings = settings_for(root, n + args.warmup)
        discord, sink = InProcessDiscord(), DMSink()
        store = await ResultStore.open(settings.storage)
        executor = concurrent.futures.ThreadPoolExecutor(settings.fanout.executor_workers)
        http = aiohttp.ClientSession()
        fanout = await Fanout.open(
            settings, PluginContext(http=http, executor=executor, send_dm=sink)
        )
        runner = Runner(settings=settings, store=store, io=discord, notify=fanout.emit)
        probe, rss, gc_pauses = LagProbe(), RssSampler(), GcPauses()
        stalls = StallSampler(probe) if args.stalls else None
        timings: dict[str, float] = {}
        start_latencies: list[float] = []
        max_steps = int((args.hold_s + PHASE_LIMIT_S) / args.report_s)
        try:
            # Warm-up: every code path once, caches and pools filled; not measured.
            warm = Workload(args.report_s, max_steps=2)
            warm.go.set()
            await start_all(runner, warm, 0, args.warmup)
            await wait_until_idle(runner, fanout, "warm-up")
            gc.collect()
            if not args.default_gc:
                tune_garbage_collector()  # as bot.py does once the bot is up
            await asyncio.sleep(1.0)
            baseline = rss_bytes()

            workload = Workload(args.report_s, max_steps=max_steps)
            late = Workload(args.report_s, max_steps=max_steps)
            late.go.set()
            with gc_pauses.active(), stalls or contextlib.nullcontext():
                async with probe.running("start"), rss.running():
                    rss.phase = "start"
                    began = time.perf_counter()
                    await start_all(runner, workload, args.warmup, n)
                    timings["start"] = time.perf_counter() - began
                    if running(runner) != n:
                        raise MeasureError(f"{running(runner)} running after start, not {n}")
                    # All N are tracked: now they report, and a few more users start one each.
                    probe.phase("tracked")
                    rss.phase = "tracked"
                    workload.go.set()
                    began = time.perf_counter()

                    async def late_start(k: int) -> None:
                        await asyncio.sleep((k + 1) * args.hold_s / (LATE_STARTS + 2))
                        t0 = time.perf_counter()
                        await runner.start(request(args.warmup + n + k), late.body)
                        start_latencies.append(time.perf_counter() - t0)

                    late_starts = [asyncio.create_task(late_start(k)) for k in range(LATE_STARTS)]
                    await asyncio.sleep(args.hold_s)
                    timings["tracked"] = time.perf_counter() - began
                    # A start still waiting is part of the finding; wait for it, bounded.
                    async with asyncio.timeout(PHASE_LIMIT_S):
                        await asyncio.gather(*late_starts)
                    tracked_at_end = running(runner)
                    reports_held = workload.reports + late.reports
                    probe.phase("finish")
                    rss.phase = "finish"
                    began = time.perf_counter()
                    workload.stop.set()
                    late.stop.set()
                    await wait_until_idle(runner, fanout, "finish")
                    timings["finish"] = time.perf_counter() - began
            completed = await store.count(ResultQuery(status=WorkflowStatus.COMPLETED))
            undelivered = [
                r
                for r in await store.pending_delivery()
                if r.delivery_state is DeliveryState.PENDING
            ]
            sent = await fanout.outbox.count(OutboxStatus.SENT)
            failed = await fanout.outbox.count(OutboxStatus.FAILED)
        finally:
            await fanout.close()
            await store.close()
            await http.close()
            executor.shutdown(wait=False, cancel_futures=True)

    total = n + LATE_STARTS
    if tracked_at_end != total:
        raise MeasureError(f"only {tracked_at_end} of {total} were still tracked after the hold")
    if completed != total + args.warmup or undelivered or failed:
        raise MeasureError(
            f"{completed} completed (expected {total + args.warmup}), {len(undelivered)} "
            f"undelivered, {failed} failed notices"
        )
    peak = rss.peaks.get("tracked", 0)
    per_workflow = (peak - baseline) / total
    overall = probe.stats()
    rows = []
    for phase in ("start", "tracked", "finish"):
        lag = probe.stats(phase)
        rows.append(
            (
                phase,
                f"{timings[phase]:.1f}",
                f"{rss.peaks.get(phase, 0) / 1e6:,.0f}",
                lag.samples,
                fmt_ms(lag.p50),
                fmt_ms(lag.p99),
                fmt_ms(lag.max),
            )
        )
    rows.append(
        (
            "all phases",
            f"{sum(timings.values()):.1f}",
            f"{max(rss.peaks.values()) / 1e6:,.0f}",
            overall.samples,
            fmt_ms(overall.p50),
            fmt_ms(overall.p99),
            fmt_ms(overall.max),
        )
    )
    print_table(
        f"Scale: {n:,} workflows tracked at once (baseline RSS {baseline / 1e6:,.0f} MB after "
        f"{args.warmup} warm-up workflows)",
        [
            "phase",
            "seconds",
            "peak RSS MB",
            "probe samples",
            "p50 lag ms",
            "p99 lag ms",
            "max lag ms",
        ],
        rows,
    )
    print_table(
        "What went through",
        ["item", "count"],
        [
            ("workflows started and completed (incl. warm-up)", f"{completed:,}"),
            ("progress reports made by the workflows", f"{workload.reports + late.reports:,}"),
            ("... by the end of the hold", f"{reports_held:,}"),
            (
                "Discord: channel messages posted (status + result)",
                f"{discord.calls['channel_send']:,}",
            ),
            ("Discord: status edits", f"{discord.calls['channel_edit']:,}"),
            ("notices sent from the outbox", f"{sent:,}"),
            ("in-process DMs by kind", ", ".join(f"{k} {v:,}" for k, v in sink.received.items())),
            (
                f"Runner.start while {n:,} are tracked (x{len(start_latencies)})",
                f"p50 {percentile(start_latencies, 50) * 1e3:,.0f} ms, "
                f"max {max(start_latencies) * 1e3:,.0f} ms",
            ),
            *[(f"garbage collector, generation {gen}", line) for gen, line in gc_pauses.lines()],
            ("memory per tracked workflow", f"{per_workflow / 1024:.1f} KB"),
        ],
    )
    if stalls is not None:
        print_table(
            "Where the loop was while the probe was > 20 ms late (--stalls)",
            ["seconds", "innermost frames (project or library)"],
            stalls.top(),
        )
    print_targets(
        [
            Target(
                "memory per tracked workflow",
                "< 20 KB",
                f"{per_workflow / 1024:.1f} KB",
                per_workflow < 20 * 1024,
            ),
            Target(
                "p99 lag, all phases",
                "< 10 ms",
                f"{fmt_ms(overall.p99)} ms",
                overall.p99 < 0.010,
            ),
            Target(
                "p99 lag, while all are tracked",
                "< 10 ms",
                f"{fmt_ms(probe.stats('tracked').p99)} ms",
                probe.stats("tracked").p99 < 0.010,
            ),
        ]
    )
    print(
        f"ratio: {per_workflow / 1024:.1f} KB per workflow = {per_workflow / (20 * 1024):.2f}x "
        f"the 20 KB budget; p99 lag {fmt_ms(overall.p99)} ms = {overall.p99 / 0.010:.2f}x the "
        "10 ms budget"
    )


if __name__ == "__main__":
    main_guard(run)
