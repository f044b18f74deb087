"""Benchmark 8 — steps: what a recorded workflow step costs, against a raw write + fsync.

    .venv/bin/python -m bench.steps [--quick] [--workflows 16] [--steps 150] [--sizes-kb 1,100]
                                    [--repeat 3] [--default-gc]

A durable workflow records each step's value before the step counts as done (issue 17):
`await ResultStore.record_step(...)` encodes it (JSON, configured secrets masked) and appends it as
a frame to the workflow's own step file, fsynced before it returns, in one hop to the store's step
threads (`notifier.store.step_log`). Here `--workflows` workflows step at once, each recording `--steps` values of a given
size one after the other (the next only once the last is durable, as `ctx.step` does), and every
step's latency is taken. In the same run, on the same disk (a temporary folder under the project,
where the bot's `data/` is), the same workflows do the same with the floor of a durable write:
each appends the very bytes the store would store (encoded beforehand) to a file of its own and
fsyncs it, in a thread (`os.write` + `os.fsync`; 16 threads for 16 workflows: the same
concurrency). Raw and ours alternate, size by size, `--repeat` times; the percentiles are over
every step of every round.

Also shown, for context only: the raw write + fsync one at a time (a single writer, no
contention), which is what one step alone could cost at best.

A 1 ms probe on the event loop measures its lag while ours runs (the encoding and the write are
in threads; what remains on the loop is the hand-offs, and waiting for the GIL between them).

Targets (issue 17): step p99 <= 2x the raw write's p99 (same workflows, same bytes, same run),
per size; loop lag p99 < 5 ms. The collector runs with the bot's settings (`--default-gc`: CPython's
own), as in `bench.persistence`.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from notifier.config import StorageSettings
from notifier.records import WorkflowRecord
from notifier.runner.gc_tuning import tune_garbage_collector
from notifier.store import ResultStore
from notifier.store.steps import encode_step

from .common import (
    LagProbe,
    LagStats,
    MeasureError,
    Target,
    add_gc_flag,
    base_parser,
    fmt_ms,
    gc_label,
    idle_lag,
    machine_line,
    main_guard,
    percentile,
    print_table,
    print_targets,
    quiet_logs,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RUN_LIMIT_S = 600.0
LIMIT_BYTES = 1024 * 1024  # runner.max_step_bytes's default

RAW = "raw write+fsync, same concurrency"
RAW_ALONE = "raw write+fsync, one at a time"
OURS = "record_step"


def step_value(workflow: int, step: int, size_bytes: int) -> dict[str, Any]:
    """A page summary like autointel records per page: a few fields and text, about
    `size_bytes` once encoded."""
    head = {
        "url": f"https://example.org/site/{workflow}/page/{step}",
        "title": f"Page {step} of site {workflow}",
        "words": 280 + step,
        "links": [f"https://example.org/site/{workflow}/l/{k}" for k in range(4)],
    }
    fixed = len(encode_step({**head, "text": ""}, limit_bytes=LIMIT_BYTES))
    words = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. "
    text = (words * (1 + size_bytes // len(words)))[: max(0, size_bytes - fixed)]
    return {**head, "text": text}


def raw_steps(folder: Path, values: list[list[bytes]], executor: ThreadPoolExecutor) -> Any:
    """One coroutine per workflow: append each value to its own file and fsync, in a thread."""

    def write(fd: int, data: bytes) -> float:
        start = time.perf_counter()
        os.write(fd, data)
        os.fsync(fd)
        return time.perf_counter() - start

    async def workflow(index: int, latencies: list[float]) -> None:
        loop = asyncio.get_running_loop()
        fd = os.open(folder / f"{index}.steps", os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
        try:
            for data in values[index]:
                start = time.perf_counter()
                await loop.run_in_executor(executor, write, fd, data)
                latencies.append(time.perf_counter() - start)
        finally:
            os.close(fd)

    return workflow


async def run_raw(
    folder: Path, values: list[list[bytes]], concurrency: int
) -> tuple[list[float], float]:
    await asyncio.to_thread(folder.mkdir, parents=True)
    await asyncio.to_thread(os.sync)  # no variant pays for the previous one's writeback
    latencies: list[float] = []
    with ThreadPoolExecutor(concurrency, thread_name_prefix="raw-step") as executor:
        workflow = raw_steps(folder, values, executor)
        start = time.perf_counter()
        if concurrency == 1:
            for index in range(len(values)):
                await workflow(index, latencies)
        else:
            await asyncio.gather(*(workflow(i, latencies) for i in range(len(values))))
        seconds = time.perf_counter() - start
    return latencies, seconds


async def run_ours(
    folder: Path, values: list[list[dict[str, Any]]], probe: LagProbe, phase: str
) -> tuple[list[float], float]:
    store = await ResultStore.open(StorageSettings(path=folder), max_step_bytes=LIMIT_BYTES)
    try:
        ids = [uuid.uuid4().hex for _ in values]
        for i, workflow_id in enumerate(ids):
            await store.create(
                WorkflowRecord(
                    workflow_id=workflow_id,
                    command="autointel",
                    user_id=1000 + i,
                    options={"url": f"https://example.org/site/{i}", "depth": "deep"},
                )
            )
        await asyncio.to_thread(os.sync)
        latencies: list[float] = []

        async def workflow(index: int) -> None:
            for step, value in enumerate(values[index]):
                start = time.perf_counter()
                await store.record_step(ids[index], step, f"page:{step}", value)
                latencies.append(time.perf_counter() - start)

        probe.phase(phase)
        start = time.perf_counter()
        async with asyncio.timeout(RUN_LIMIT_S):
            await asyncio.gather(*(workflow(i) for i in range(len(values))))
        seconds = time.perf_counter() - start
        probe.phase("between")
        recorded = [len(await store.steps(workflow_id)) for workflow_id in ids]
        if recorded != [len(v) for v in values]:
            raise MeasureError(f"steps recorded per workflow {recorded}, expected all of them")
        return latencies, seconds
    finally:
        await store.close()


async def run() -> None:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--workflows", type=int, default=16)
    parser.add_argument("--steps", type=int, default=150, help="steps per workflow per round")
    parser.add_argument("--sizes-kb", default="1,100")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds")
    add_gc_flag(parser)
    args = parser.parse_args()
    if args.quick:
        args.steps, args.repeat = 20, 1
    quiet_logs(args.log_level)
    sizes_kb = [float(s) for s in args.sizes_kb.split(",") if s.strip()]
    print(machine_line())
    print(
        f"steps: {args.workflows} workflows stepping at once, {args.steps} steps each per round, "
        f"sizes {sizes_kb} KB, {args.repeat} interleaved rounds, on the disk of {PROJECT_ROOT}, "
        f"{gc_label(args)} collector settings"
    )
    idle = await idle_lag()
    probe = LagProbe()
    latencies: dict[tuple[float, str], list[float]] = {}
    seconds: dict[tuple[float, str], float] = {}
    encoded_size: dict[float, int] = {}
    with tempfile.TemporaryDirectory(prefix=".bench-steps-", dir=PROJECT_ROOT) as tmp:
        root = Path(tmp)
        async with probe.running("warm-up"):
            # Imports and first-open costs, not reported.
            await run_ours(root / "warm", [[step_value(0, 0, 1000)] * 5] * 4, probe, "warm-up")
            if not args.default_gc:
                tune_garbage_collector()
            for round_no in range(args.repeat):
                for size_kb in sizes_kb:
                    size_bytes = int(size_kb * 1000)
                    values = [
                        [step_value(w, s, size_bytes) for s in range(args.steps)]
                        for w in range(args.workflows)
                    ]
                    encoded = [
                        [encode_step(v, limit_bytes=LIMIT_BYTES) for v in per] for per in values
                    ]
                    encoded_size[size_kb] = len(encoded[0][0])
                    tag = f"{round_no}-{size_kb:g}kb"
                    got = {
                        RAW: await run_raw(root / f"raw-{tag}", encoded, args.workflows),
                        RAW_ALONE: await run_raw(root / f"alone-{tag}", encoded, 1),
                        OURS: await run_ours(root / f"ours-{tag}", values, probe, f"ours-{tag}"),
                    }
                    for name, (lat, sec) in got.items():
                        latencies.setdefault((size_kb, name), []).extend(lat)
                        seconds[(size_kb, name)] = seconds.get((size_kb, name), 0.0) + sec
                    print(
                        f"  round {round_no + 1}, {size_kb:g} KB: "
                        + ", ".join(
                            f"{name} p99 {fmt_ms(percentile(lat, 99))} ms"
                            for name, (lat, _) in got.items()
                        ),
                        flush=True,
                    )
    ours_phases = [name for name in probe.phases if name.startswith("ours-")]
    lag = probe.stats(*ours_phases)
    lag_by_size = {
        size_kb: LagStats.of(
            [
                sample
                for name in ours_phases
                if name.endswith(f"-{size_kb:g}kb")
                for sample in probe.phases[name]
            ]
        )
        for size_kb in sizes_kb
    }

    rows = []
    for size_kb in sizes_kb:
        raw_p99 = percentile(latencies[(size_kb, RAW)], 99)
        for name in (RAW, RAW_ALONE, OURS):
            lat = latencies[(size_kb, name)]
            rows.append(
                (
                    f"{encoded_size[size_kb] / 1000:.1f} KB",
                    name,
                    f"{len(lat):,}",
                    fmt_ms(percentile(lat, 50)),
                    fmt_ms(percentile(lat, 99)),
                    fmt_ms(max(lat)),
                    f"{len(lat) / seconds[(size_kb, name)]:,.0f}",
                    f"{percentile(lat, 99) / raw_p99:.2f}x",
                )
            )
    print_table(
        f"Latency of one durable step ({args.workflows} workflows at once; one at a time for the "
        f"second row; {args.repeat} rounds)",
        ["value", "variant", "steps", "p50 ms", "p99 ms", "max ms", "steps/s", "p99 vs raw"],
        rows,
    )
    print_table(
        "Event-loop lag (1 ms probe) while the workflows record their steps",
        ["phase", "samples", "p50 ms", "p99 ms", "max ms"],
        [
            (
                "idle loop (before)",
                f"{idle.samples:,}",
                *map(fmt_ms, (idle.p50, idle.p99, idle.max)),
            ),
            *[
                (
                    f"record_step, {encoded_size[size_kb] / 1000:.1f} KB",
                    f"{each.samples:,}",
                    *map(fmt_ms, (each.p50, each.p99, each.max)),
                )
                for size_kb, each in lag_by_size.items()
            ],
            (
                "record_step, all rounds and sizes",
                f"{lag.samples:,}",
                *map(fmt_ms, (lag.p50, lag.p99, lag.max)),
            ),
        ],
    )
    targets = []
    ratios = []
    for size_kb in sizes_kb:
        raw_p99 = percentile(latencies[(size_kb, RAW)], 99)
        ours_p99 = percentile(latencies[(size_kb, OURS)], 99)
        ratio = ours_p99 / raw_p99
        ratios.append(f"{encoded_size[size_kb] / 1000:.1f} KB {ratio:.2f}x")
        targets.append(
            Target(
                f"step p99, {encoded_size[size_kb] / 1000:.1f} KB",
                "<= 2x raw p99",
                f"{fmt_ms(ours_p99)} ms = {ratio:.2f}x ({fmt_ms(raw_p99)} ms)",
                ratio <= 2.0,
            )
        )
    targets.append(Target("loop lag p99", "< 5 ms", f"{fmt_ms(lag.p99)} ms", lag.p99 < 0.005))
    print_targets(targets)
    print(
        "ratio: record_step p99 / raw write+fsync p99: "
        + "; ".join(ratios)
        + f"; loop lag p99 {fmt_ms(lag.p99)} ms"
    )


if __name__ == "__main__":
    main_guard(run)
