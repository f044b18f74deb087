"""Benchmark 3 — persistence: durable results per second, ours against a raw write loop.

    .venv/bin/python -m bench.persistence [--quick] [--results 1000] [--sizes-kb 4,100]
                                          [--concurrency 16] [--default-gc]

For each result size, in one run, on the same disk (a temporary folder under the project, so the
same filesystem the bot's `data/` uses):

- raw loop: `os.open(tmp, O_EXCL)` + `os.write` + `os.fsync` + `os.close` + `os.replace`, one
  result after the other, of bytes encoded beforehand (the floor: no JSON, no index);
- raw loop + directory fsync: the same plus `fsync` of the folder, which a rename needs to
  survive a power cut (shown for context; the target compares against the plain raw loop);
- ours, one at a time: `await ResultStore.finish(...)` for each result in turn (JSON encoding, and
  decoding back the document every view renders, in a worker thread; then the result file
  writer's thread: temp file, fsync, rename, directory fsync; then the index row committed,
  without an fsync of its own: see `notifier.store.sqlite.index`);
- ours, `--concurrency` at a time: the same with that many finishes in flight, as when many
  workflows end together.

The workflows are `create`d (indexed as running) before the clock starts. Target: ours >= 0.5x the
raw loop's results per second, measured as the store's throughput, i.e. with `--concurrency`
finishes in flight, as in the bot. One at a time is printed beside it as what it is, the latency
of a single finish: three ordered steps (the file's fsync, the folder's fsync that makes the rename
durable, the index row) and their thread hand-offs against the raw loop's one fsync; the folder
fsync alone takes the raw loop to 0.7-0.85x. A second table times the steps of one `finish` in
isolation (the store's own modules), to show where the time goes.

The collector runs with the settings bot.py applies once the bot is up (`--default-gc`: CPython's
own): a finish hands back the stored document, and with CPython's young threshold of 700 the
objects of thousands of those set off collections that scan every payload the run holds.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import aiofiles

from notifier.config import StorageSettings
from notifier.records import WorkflowRecord, WorkflowStatus
from notifier.runner.gc_tuning import tune_garbage_collector
from notifier.store import ResultStore, files
from notifier.store.document import build_document, encode_document, encode_for_storage
from notifier.store.file_writer import ResultFileWriter
from notifier.store.sqlite.index import ResultIndex

from .common import (
    MeasureError,
    Target,
    add_gc_flag,
    base_parser,
    gc_label,
    machine_line,
    main_guard,
    make_result,
    print_table,
    print_targets,
    quiet_logs,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RUN_LIMIT_S = 600.0


@dataclass(frozen=True, slots=True)
class Row:
    size_kb: float
    variant: str
    count: int
    seconds: float

    @property
    def per_s(self) -> float:
        return self.count / self.seconds


def raw_loop(folder: Path, payloads: list[bytes], *, fsync_dir: bool) -> float:
    folder.mkdir(parents=True)
    os.sync()  # no variant pays for the previous one's writeback
    dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        start = time.perf_counter()
        for i, data in enumerate(payloads):
            temp, final = folder / f".{i}.tmp", folder / f"{i}.json"
            fd = os.open(temp, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, final)
            if fsync_dir:
                os.fsync(dir_fd)
        return time.perf_counter() - start
    finally:
        os.close(dir_fd)


def records(count: int) -> list[WorkflowRecord]:
    return [
        WorkflowRecord(
            workflow_id=uuid.uuid4().hex,
            command="autointel",
            user_id=1000 + i % 100,
            user_name=f"user{i % 100}",
            options={"url": f"https://example.org/report/{i}", "depth": "standard"},
            created_at=time.time(),
        )
        for i in range(count)
    ]


async def ours(folder: Path, count: int, size_bytes: int, concurrency: int) -> tuple[float, int]:
    store = await ResultStore.open(StorageSettings(path=folder))
    try:
        rows = records(count)
        for record in rows:
            await store.create(record)
        results = [make_result(i, size_bytes) for i in range(count)]
        queue = list(reversed(list(zip(rows, results, strict=True))))
        await asyncio.to_thread(os.sync)  # no variant pays for the previous one's writeback

        async def worker() -> None:
            while queue:
                record, result = queue.pop()
                await store.finish(
                    record.workflow_id, status=WorkflowStatus.COMPLETED, result=result
                )

        start = time.perf_counter()
        async with asyncio.timeout(RUN_LIMIT_S):
            await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - start
        if store.pending_writes:
            raise MeasureError(f"{len(store.pending_writes)} results were not written")
        sizes = [p.stat().st_size for p in (folder / "results").glob("*.json")]
        if len(sizes) != count:
            raise MeasureError(f"{len(sizes)} result files on disk, expected {count}")
        return seconds, sum(sizes) // len(sizes)
    finally:
        await store.close()


def payloads_like_ours(count: int, size_bytes: int) -> list[bytes]:
    out = []
    for record in records(count):
        record.status, record.finished_at = WorkflowStatus.COMPLETED, time.time()
        out.append(encode_document(build_document(record, make_result(0, size_bytes))))
    return out


async def step_costs(folder: Path, count: int, size_bytes: int) -> list[tuple[str, float]]:
    """Mean seconds of each step of `finish`, each run `count` times on its own."""
    results = folder / "results"
    results.mkdir(parents=True)
    record = records(1)[0]
    record.status, record.finished_at = WorkflowStatus.COMPLETED, time.time()
    result = make_result(0, size_bytes)
    data = encode_document(build_document(record, result))

    async def through_aiofiles(workflow_id: str) -> None:
        # The same steps as write_atomic, the way it was written before (aiofiles open, write,
        # flush, then fsync and rename in worker threads): what the one-hop write saves.
        temp, final = results / f".{workflow_id}.tmp", results / f"{workflow_id}.json"
        async with aiofiles.open(temp, "xb") as handle:
            await handle.write(data)
            await handle.flush()
            await asyncio.to_thread(os.fsync, handle.fileno())
        await asyncio.to_thread(os.replace, temp, final)
        await asyncio.to_thread(files.fsync_dir, results)

    writer = ResultFileWriter(results)
    index = await ResultIndex.open(folder / "index.sqlite3")
    rows = records(count)
    await index.insert_many(rows)
    for row in rows:
        row.status, row.finished_at = WorkflowStatus.COMPLETED, time.time()
    steps = [
        (
            "encode, and decode the stored document back, in a worker thread",
            lambda: asyncio.to_thread(encode_for_storage, record, result),
        ),
        (
            "result file writer: temp, write, fsync, rename, dir fsync (one hop)",
            lambda: writer.write(uuid.uuid4().hex, data),
        ),
        (
            "(for comparison) the same steps through aiofiles (five hops)",
            lambda: through_aiofiles(uuid.uuid4().hex),
        ),
    ]
    index_step = "index row finished, committed (WAL, no fsync: see index.py)"
    totals = dict.fromkeys([name for name, _ in steps] + [index_step], 0.0)
    await asyncio.to_thread(os.sync)
    try:
        # Round-robin, so every step sees the same disk (background writeback comes and goes).
        for row in rows:
            for name, step in steps:
                start = time.perf_counter()
                await step()
                totals[name] += time.perf_counter() - start
            start = time.perf_counter()
            await index.record_finished(row)
            totals[index_step] += time.perf_counter() - start
    finally:
        await writer.close()
        await index.close()
    return [(name, total / count) for name, total in totals.items()]


async def run() -> None:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--results", type=int, default=1000)
    parser.add_argument("--sizes-kb", default="4,100")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds (median shown)")
    add_gc_flag(parser)
    args = parser.parse_args()
    if args.quick:
        args.results, args.repeat = 100, 1
    quiet_logs(args.log_level)
    sizes_kb = [float(s) for s in args.sizes_kb.split(",") if s.strip()]
    count = args.results
    conc_name = f"ours, {args.concurrency} at a time"
    variants = [
        "raw loop (write+fsync+replace)",
        "raw loop + directory fsync",
        "ours, one at a time",
        conc_name,
    ]
    print(machine_line())
    print(
        f"persistence: {count} results per row, sizes {sizes_kb} KB, {args.repeat} interleaved "
        f"rounds (median shown), on the disk of {PROJECT_ROOT}, "
        f"{gc_label(args)} collector settings"
    )
    runs: dict[tuple[float, str], list[float]] = {}
    file_sizes: dict[float, int] = {}
    with tempfile.TemporaryDirectory(prefix=".bench-persist-", dir=PROJECT_ROOT) as tmp:
        root = Path(tmp)
        await ours(root / "warm", 20, 4000, 4)  # imports and first-open costs, not reported
        if not args.default_gc:
            # As bot.py does once the bot is up. A finish hands back the document it stored
            # (decoded, for every view to render); under CPython's default young threshold those
            # objects set off collections that scan the run's thousand held payloads, a cost the
            # bot, which tunes the collector, does not pay (BENCHMARKS.md).
            tune_garbage_collector()
        for round_no in range(args.repeat):
            for size_kb in sizes_kb:
                size_bytes = int(size_kb * 1000)
                payloads = payloads_like_ours(count, size_bytes)
                tag = f"{round_no}-{size_kb:g}kb"
                got = {
                    variants[0]: raw_loop(root / f"raw-{tag}", payloads, fsync_dir=False),
                    variants[1]: raw_loop(root / f"rawdir-{tag}", payloads, fsync_dir=True),
                }
                got[variants[2]], file_sizes[size_kb] = await ours(
                    root / f"seq-{tag}", count, size_bytes, 1
                )
                got[variants[3]], _ = await ours(
                    root / f"conc-{tag}", count, size_bytes, args.concurrency
                )
                for name, seconds in got.items():
                    runs.setdefault((size_kb, name), []).append(seconds)
                print(
                    f"  round {round_no + 1}, {size_kb:g} KB: "
                    + ", ".join(f"{name} {count / sec:,.0f}/s" for name, sec in got.items()),
                    flush=True,
                )
        costs = await step_costs(root / "steps", min(count, 300), int(sizes_kb[0] * 1000))

    table = [
        Row(size_kb, name, count, statistics.median(runs[(size_kb, name)]))
        for size_kb in sizes_kb
        for name in variants
    ]
    raw_of = {r.size_kb: r.per_s for r in table if r.variant == variants[0]}
    print_table(
        f"Durable results per second ({count} results per run, median of {args.repeat})",
        ["size", "variant", "seconds", "results/s", "ms/result", "vs raw loop", "runs (results/s)"],
        [
            (
                f"{file_sizes[r.size_kb] / 1000:.1f} KB",
                r.variant,
                f"{r.seconds:.3f}",
                f"{r.per_s:,.0f}",
                f"{1000 / r.per_s:.2f}",
                f"{r.per_s / raw_of[r.size_kb]:.2f}x",
                ", ".join(f"{count / x:,.0f}" for x in runs[(r.size_kb, r.variant)]),
            )
            for r in table
        ],
    )
    first = sizes_kb[0]
    seq_first = next(r for r in table if r.size_kb == first and r.variant == "ours, one at a time")
    print_table(
        f"Where one finish() spends its time ({file_sizes[first] / 1000:.1f} KB, each step alone)",
        ["step", "ms"],
        [
            *[(name, f"{cost * 1e3:.3f}") for name, cost in costs],
            (
                "sum of the steps (without the comparison row)",
                f"{sum(c for n, c in costs if not n.startswith('(')) * 1e3:.3f}",
            ),
            ("measured finish(), one at a time", f"{1000 / seq_first.per_s:.3f}"),
            ("raw loop, per result", f"{1000 / raw_of[first]:.3f}"),
        ],
    )
    targets = []
    ratios = []
    for r in table:
        if r.variant.startswith("ours"):
            ratio = r.per_s / raw_of[r.size_kb]
            ratios.append(f"{r.size_kb:g} KB {r.variant.removeprefix('ours, ')}: {ratio:.2f}x")
            if r.variant == conc_name:  # throughput; one at a time is latency (module docstring)
                targets.append(
                    Target(
                        f"{r.variant}, {file_sizes[r.size_kb] / 1000:.1f} KB",
                        ">= 0.5x raw",
                        f"{ratio:.2f}x",
                        ratio >= 0.5,
                    )
                )
    print_targets(targets)
    print("ratio: ours / raw loop results per second: " + "; ".join(ratios))


if __name__ == "__main__":
    main_guard(run)
