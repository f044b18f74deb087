"""Benchmark 2 — event-loop lag while results are persisted and notices fanned out.

    .venv/bin/python -m bench.loop_lag [--quick] [--results 1000] [--size-kb 100] [--concurrency 10]
                                       [--default-gc]

A 1 ms probe runs on the bot's event loop and records how late every wake-up is. Meanwhile
1,000 workflow completions are processed by `--concurrency` pipelines (completions that arrive
together), each completion doing two things, in one run, two ways:

- ours: `ResultStore.finish` (about 100 KB of result: JSON encoded in a worker thread, temp file,
  fsync, rename, directory fsync, index row) then `Fanout.emit` of its `completed` notice (outbox
  row committed, sent natively by the `apprise` plugin to a json:// sink, row marked sent). The
  clock stops when every outbox row is `sent`. The workflows were `create`d before the probe
  started (that is the write-ahead's first half, done when a workflow starts);
- the seed's way: `open(...)` + `json.dump(result, f, indent=2, default=str)` on the loop (the
  seed's `_persist_workflow_results`, no fsync) then a sync `Apprise.notify` to the same sink.

The sink (a child process) answers at once: this measures what the bot's own work costs its loop,
not a slow sink. Target (ours): p99 lag < 5 ms, max < 50 ms. The collector runs with the settings
bot.py applies once the bot is up (`--default-gc`: CPython's own), as in `bench.scale`: a finish
hands back the stored document for every view to render, and the objects of a thousand of them
set off full collections under CPython's default young threshold.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from notifier.config import Settings, StorageSettings
from notifier.events import Event, Notice
from notifier.fanout.dispatch import Fanout
from notifier.fanout.outbox import OutboxStatus
from notifier.plugins import PluginContext
from notifier.records import WorkflowRecord, WorkflowStatus
from notifier.runner.gc_tuning import tune_garbage_collector
from notifier.store import ResultStore

from .common import (
    LagProbe,
    LagStats,
    MeasureError,
    SinkProcess,
    Target,
    add_gc_flag,
    base_parser,
    fmt_ms,
    gc_label,
    idle_lag,
    machine_line,
    main_guard,
    make_result,
    print_table,
    print_targets,
    quiet_logs,
)

RUN_LIMIT_S = 600.0


@dataclass(frozen=True, slots=True)
class Job:
    workflow_id: str
    user_id: int
    result: dict[str, Any]

    def notice(self, duration_s: float = 12.0) -> Notice:
        return Notice(
            event=Event.COMPLETED,
            workflow_id=self.workflow_id,
            user_id=self.user_id,
            user_name=f"user{self.user_id}",
            command="autointel",
            options={"url": self.result["url"], "depth": "standard"},
            summary=f"{len(self.result['pages'])} pages analysed",
            duration_s=duration_s,
        )


@dataclass(frozen=True, slots=True)
class Measured:
    name: str
    seconds: float
    lag: LagStats
    durable: str


def make_jobs(count: int, size_bytes: int) -> list[Job]:
    return [Job(uuid.uuid4().hex, 1000 + i % 100, make_result(i, size_bytes)) for i in range(count)]


async def pipelines(
    jobs: list[Job], concurrency: int, step: Callable[[Job], Awaitable[None]]
) -> None:
    """`concurrency` workers take the jobs in order; each awaits `step` for one job at a time."""
    queue = list(reversed(jobs))

    async def worker() -> None:
        while queue:
            await step(queue.pop())

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def run_ours(
    root: Path, sink_url: str, jobs: list[Job], concurrency: int
) -> tuple[Measured, int]:
    settings = Settings.model_validate(
        {
            "storage": {"path": str(root / "data")},
            "fanout": {"plugin_dirs": [], "outbox_path": str(root / "outbox.sqlite3")},
            "notifiers": [
                {
                    "name": "ops",
                    "plugin": "apprise",
                    "on": ["completed"],
                    "options": {"urls": [sink_url.replace("http://", "json://")]},
                }
            ],
        }
    )
    store = await ResultStore.open(StorageSettings(path=root / "data"))
    executor = concurrent.futures.ThreadPoolExecutor(settings.fanout.executor_workers)
    http = aiohttp.ClientSession()
    fanout = await Fanout.open(settings, PluginContext(http=http, executor=executor))
    try:
        for job in jobs:
            await store.create(
                WorkflowRecord(
                    workflow_id=job.workflow_id,
                    command="autointel",
                    user_id=job.user_id,
                    user_name=f"user{job.user_id}",
                    options={"url": job.result["url"], "depth": "standard"},
                )
            )

        async def step(job: Job) -> None:
            await store.finish(job.workflow_id, status=WorkflowStatus.COMPLETED, result=job.result)
            await fanout.emit(job.notice())

        probe = LagProbe()
        async with probe.running():
            start = time.perf_counter()
            async with asyncio.timeout(RUN_LIMIT_S):
                await pipelines(jobs, concurrency, step)
                while await fanout.outbox.count(OutboxStatus.PENDING):
                    await fanout.drain(timeout_s=RUN_LIMIT_S)
                    await asyncio.sleep(0.001)
            seconds = time.perf_counter() - start
        sent = await fanout.outbox.count(OutboxStatus.SENT)
        stored = len(list((root / "data" / "results").glob("*.json")))
        if sent != len(jobs) or stored != len(jobs):
            raise MeasureError(
                f"ours: {stored} results stored and {sent} notices sent of {len(jobs)}"
            )
    finally:
        await fanout.close()
        await store.close()
        await http.close()
        executor.shutdown(wait=False, cancel_futures=True)
    return Measured("ours (store + fanout)", seconds, probe.stats(), "fsync'd, outbox"), sent


async def run_seed(
    root: Path, sink_url: str, jobs: list[Job], concurrency: int
) -> tuple[Measured, int]:
    import apprise

    results_dir = root / "orphaned_results"
    results_dir.mkdir(parents=True, exist_ok=True)
    apobj = apprise.Apprise()
    if not apobj.add(sink_url.replace("http://", "json://")):
        raise MeasureError("Apprise refused the sink URL")
    delivered = 0

    async def step(job: Job) -> None:
        nonlocal delivered
        # The seed's _persist_workflow_results: an async function with blocking calls inside.
        result_data = {
            "workflow_id": job.workflow_id,
            "timestamp": time.time(),
            "url": job.result["url"],
            "depth": "standard",
            "results": job.result,
            "retrieval_command": f"/retrieve_results workflow_id:{job.workflow_id}",
        }
        with open(results_dir / f"{job.workflow_id}.json", "w") as f:  # noqa: ASYNC230 - the seed's way, on purpose
            json.dump(result_data, f, indent=2, default=str)
        notice = job.notice()
        fields = notice.template_fields()
        outcome = apobj.notify(
            body=f"{fields['command']} for {fields['user']} completed. {fields['summary']}",
            title=f"Completed: {fields['command']}",
            notify_type="success",
        )
        delivered += sum(1 for per_url in outcome if bool(per_url))
        await asyncio.sleep(0)

    probe = LagProbe()
    async with probe.running():
        start = time.perf_counter()
        async with asyncio.timeout(RUN_LIMIT_S):
            await pipelines(jobs, concurrency, step)
        seconds = time.perf_counter() - start
    stored = len(list(results_dir.glob("*.json")))
    if delivered != len(jobs) or stored != len(jobs):
        raise MeasureError(f"seed: {stored} results written, {delivered} notices sent")
    return Measured(
        "seed (sync open/json.dump + notify)", seconds, probe.stats(), "no fsync"
    ), delivered


async def run() -> None:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--results", type=int, default=1000)
    parser.add_argument("--size-kb", type=float, default=100.0)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument(
        "--switch-interval-ms",
        type=float,
        default=None,
        help="sys.setswitchinterval for this run (default: Python's, 5 ms); an experiment knob",
    )
    add_gc_flag(parser)
    args = parser.parse_args()
    if args.switch_interval_ms is not None:
        sys.setswitchinterval(args.switch_interval_ms / 1000)
    if args.quick:
        args.results = 100
    quiet_logs(args.log_level)
    import logging

    logging.getLogger("apprise").setLevel(logging.ERROR)
    size_bytes = int(args.size_kb * 1000)
    print(machine_line())
    print(
        f"loop lag: {args.results} results of ~{args.size_kb:g} KB persisted + {args.results} "
        f"notices fanned out, {args.concurrency} completions at a time, 1 ms probe, GIL switch "
        f"interval {sys.getswitchinterval() * 1e3:g} ms, "
        f"{gc_label(args)} collector settings"
    )
    idle = await idle_lag(1.0)
    with SinkProcess(1, 0.0) as sinks, tempfile.TemporaryDirectory(prefix="bench-lag-") as tmp:
        root = Path(tmp)
        url = sinks.urls()[0]
        # Warm-up: imports, plugin discovery, the first connection.
        await run_ours(root / "warm", url, make_jobs(5, size_bytes), 2)
        if not args.default_gc:
            tune_garbage_collector()  # as bot.py does once the bot is up
        ours, sent = await run_ours(
            root / "ours", url, make_jobs(args.results, size_bytes), args.concurrency
        )
        print(f"  ours: {ours.seconds:.2f} s", flush=True)
        seed, _ = await run_seed(
            root / "seed", url, make_jobs(args.results, size_bytes), args.concurrency
        )
        print(f"  seed: {seed.seconds:.2f} s", flush=True)

    rows = [
        (
            "idle loop (timer floor)",
            "-",
            "-",
            idle.samples,
            fmt_ms(idle.p50),
            fmt_ms(idle.p99),
            fmt_ms(idle.max),
            "-",
        )
    ]
    for m in (ours, seed):
        rows.append(
            (
                m.name,
                f"{m.seconds:.2f}",
                f"{args.results / m.seconds:,.0f}",
                m.lag.samples,
                fmt_ms(m.lag.p50),
                fmt_ms(m.lag.p99),
                fmt_ms(m.lag.max),
                m.durable,
            )
        )
    print_table(
        f"Event-loop lag: {args.results} x ~{args.size_kb:g} KB results + {args.results} notices "
        f"({args.concurrency} at a time)",
        [
            "variant",
            "seconds",
            "results/s",
            "probe samples",
            "p50 ms",
            "p99 ms",
            "max ms",
            "durability",
        ],
        rows,
    )
    print_targets(
        [
            Target("ours: p99 lag", "< 5 ms", f"{fmt_ms(ours.lag.p99)} ms", ours.lag.p99 < 0.005),
            Target("ours: max lag", "< 50 ms", f"{fmt_ms(ours.lag.max)} ms", ours.lag.max < 0.050),
            Target(
                "every notice sent from the outbox",
                f"{args.results}",
                f"{sent}",
                sent == args.results,
            ),
        ]
    )
    print(
        f"ratio: seed/ours p99 lag {seed.lag.p99 / ours.lag.p99:,.0f}x, max lag "
        f"{seed.lag.max / ours.lag.max:,.0f}x (ours p99 {fmt_ms(ours.lag.p99)} ms, max "
        f"{fmt_ms(ours.lag.max)} ms; seed p99 {fmt_ms(seed.lag.p99)} ms, max {fmt_ms(seed.lag.max)} ms)"
    )


if __name__ == "__main__":
    main_guard(run)
