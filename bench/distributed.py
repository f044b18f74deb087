"""Benchmark 9 — the distributed mode (issue 18): workers on PostgreSQL, the gateway's
transaction, recovery from a killed worker, and the PostgreSQL index beside SQLite's.

    .venv/bin/python -m bench.distributed [--quick] [--workflows 400] [--workers 1 2 4]
                                          [--rows 1000000] [--queries 500] [--skip-index]

PostgreSQL is found or started as in the tests (`notifier.testing.postgres.find_postgres`: the
server at NOTIFIER_TEST_POSTGRES_DSN, else the local one on 127.0.0.1:5432, else a throwaway
cluster); every part runs in a database of its own, dropped at the end, whose schema is migrated
first as ``notifier db migrate`` does (its function, `migrate_database`, with the queue's set
registered: the CLI does not import it). The Discord emulator (`notifier.testing.DiscordEmulator`)
runs in this process with Discord's rate limits, the global 50/s included, but for the
per-interaction webhook limits (5 per 2 s per interaction), which are off except in one side run
(below). The gateway, the workers and the probe are processes of their own, started as
tests/distributed/test_gateway_and_workers.py starts them (``python -m notifier run --role
gateway`` and ``python -m notifier worker`` with one shared config file).

1. **Throughput.** `--workflows` commands ``/stepper steps:10 pause:0.1`` (the tests' stepper
   workflow: ten recorded steps of 100 ms of waiting each, then a result) are triggered through
   the emulator from 20 users. They take the real path: the gateway process defers each
   interaction, writes its row, its interaction token and its procrastinate job in one
   transaction and edits the reply to "queued"; a worker takes the job, records each step, edits
   progress on the interaction, stores the result and delivers it as a follow-up on the
   interaction. Done = the row is ``completed`` and ``delivered``; every result message is also
   counted in the emulator (each workflow told exactly once). With 1, 2 and 4 worker processes
   (``runner.max_concurrent: 50`` each, the default ``distributed.*`` and the default
   ``progress.min_interval`` of 2 s), each run on fresh workers: the workers start and say they
   take jobs, then are frozen (SIGSTOP) while the commands are triggered and queued, and thawed
   together (SIGCONT); the clock runs from the thaw to the last ``delivered_at``. So the figure
   is the workers' rate on a full queue, not the gateway's intake (shown beside it, commands/s).

   Also shown, to say what bounds it: the machine's CPU over the drain and who used it (workers,
   PostgreSQL: all its processes, this process: the emulator, the gateway, the probe, others:
   everything else on the machine); per workflow, how long it held a worker's slot (its first
   step's start to its delivery: at least 2 s, as the final progress edit waits out
   ``progress.min_interval`` after the first), what each step cost beyond its pause, how long it
   waited for a slot; and the interaction webhook requests per workflow and per worker and
   second. nextcord 3.2 sends at most 50 requests a second per process without a bot token (its
   ``max_global_requests``, applied to interaction webhooks too, which Discord exempts from its
   global limit), about three per workflow here.

   Side run (full size only): one worker, 20 workflows, with the emulator's per-interaction
   webhook limits on. nextcord 3.2 keys its rate-limit buckets by Discord's bucket name
   (``X-RateLimit-Bucket``) without the webhook's id and token, so every interaction of a process
   shares one 5-per-2-s bucket: that run shows what a worker delivers then.
2. **Command-to-job latency.** During each run above (from the thaw to the last delivery), a
   probe process does what `GatewayRunner._start` does for a command, call for call, every 20 ms
   (at most 50 commands/s): `PostgresStore.create(record, inside=...)` whose `inside` checks the
   user's limits under the advisory lock (`ask_user_limits`), stores an interaction token
   (`tokens.put`) and defers the ``notifier.run_workflow`` job with the workflow id as queueing
   lock, all in the row's transaction; the time of that call (the commit included) is taken.
   The one difference: its jobs go to a queue no worker reads (``bench-probe``), so the probes
   add no workflows to the load and need no Discord interaction; the SQL is the same
   (procrastinate's ``procrastinate_defer_jobs``). Target: p99 < 20 ms while 4 workers run.
3. **Recovery after kill -9.** Two fresh workers; one ``/stepper steps:120 pause:0.5``; once it
   has recorded 5 steps, the worker running it (its steps name their process) gets SIGKILL. The
   time from the kill until another worker records the workflow's next step (``recorded_at``,
   the same host's clock), with the events procrastinate kept of the workflow's jobs in between
   (``procrastinate_events``: a job deferred or retried, when it is due, when it started).
   Once with the default ``distributed.*`` (heartbeat 5 s, stall_timeout 20 s, sweep_interval
   5 s, fetch_polling 1 s; target <= 45 s), once with the tests' short settings (0.5 / 2 / 0.5 /
   0.2 s). The workflow is then cancelled
   (`PostgresStore.request_cancel`, as ``/workflow cancel``).
4. **The index at `--rows` results.** The rows of `bench.index` (its generator, seed and clock:
   2,000 users, 5,000 sites, 180 days), built into SQLite by `bench.index.build` and into
   PostgreSQL through `PostgresStore.insert_many` (one COPY per 100,000 rows, the schema's
   indexes in place, ``ANALYZE`` after: `url_search_ready`), then queried through each store's
   public API, the two interleaved (`bench.index.measure`): get by id and the four URL substring
   searches of `bench.index` (a user + a site, a user + a section, a site across all users,
   a section across all users). Targets (PostgreSQL): p99 < 2 ms by id, < 20 ms per URL search.
   Then EXPLAIN ANALYZE of the store's URL search (the slowest and the median of 40 site
   needles, a section, and a user with a section or a site): which plan PostgreSQL chose and
   what it read.

The fifth figure of the issue, 0 x 429 with 8 processes through one shared REST budget, is
`bench.rest_budget`'s. `--quick`: 100 workflows, no side run, recovery with the short settings
only, 100,000 rows.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import psycopg
import yaml

from notifier.store import ResultQuery
from notifier.testing.workflow_sources import STEPPER

from .common import (
    MeasureError,
    Target,
    base_parser,
    fmt_ms,
    machine_line,
    main_guard,
    percentile,
    print_table,
    print_targets,
    quiet_logs,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TOKEN_ENV: Final = "TEST_BOT_TOKEN"
PROBE_DSN_ENV: Final = "BENCH_PROBE_DSN"
PROBE_QUEUE: Final = "bench-probe"
# The probes' rows: a command no worker runs (their jobs are never taken anyway).
PROBE_COMMAND: Final = "bench_probe"
PROBE_INTERVAL_S: Final = 0.02
STEPS: Final = 10
PAUSE_S: Final = 0.1
MAX_CONCURRENT: Final = 50
USERS: Final = 20
MAX_PER_USER: Final = 100
# Commands triggered but not yet acknowledged by the gateway: it must answer each within 3 s.
TRIGGER_WINDOW: Final = 16
RECOVERY_STEPS: Final = 120
RECOVERY_PAUSE_S: Final = 0.5
KILL_AFTER_STEPS: Final = 5
# Workflows of the side run with the emulator's interaction webhook limits on (slow: see above).
LIMITED_WORKFLOWS: Final = 20
SHORT_SETTINGS: Final = {
    "heartbeat": 0.5,
    "stall_timeout": 2.0,
    "sweep_interval": 0.5,
    "fetch_polling": 0.2,
}
# Only keep a broken run from hanging.
START_LIMIT_S: Final = 90.0
RUN_LIMIT_S: Final = float(os.environ.get("BENCH_RUN_LIMIT_S", 300))
RECOVERY_LIMIT_S: Final = 120.0
URL_KINDS: Final = (
    "user + URL substring (a site)",
    "user + URL substring (a section)",
    "URL substring, selective (~200 rows)",
    "URL substring, broad (~20% of rows)",
)


# ---------------------------------------------------------------------------------------------
# The probe: the gateway's transaction, in a process of its own


async def queue_as_the_gateway(store: Any, app: Any, record: Any, token: str) -> None:
    """`GatewayRunner._start`'s transaction, call for call, but for the queue its job goes to
    (`PROBE_QUEUE`, read by no worker; `defer_workflow` names the workers' queue)."""
    from notifier.discord.codes import ATTACHMENT_SIZE_DEFAULT_BYTES
    from notifier.distributed import tokens
    from notifier.distributed.queue import RUN_WORKFLOW

    async def inside(conn: Any) -> None:
        limits_verdict = await store.ask_user_limits(
            conn,
            record.user_id,
            command=record.command,
            max_per_user=MAX_PER_USER,
            max_per_user_of_command=None,
        )
        await tokens.put(
            conn,
            record.workflow_id,
            tokens.StoredInteraction(token, record.created_at, ATTACHMENT_SIZE_DEFAULT_BYTES),
            ttl_s=900.0,
        )
        deferrer = app.configure_task(
            RUN_WORKFLOW, queue=PROBE_QUEUE, queueing_lock=record.workflow_id, connection=conn
        )
        await deferrer.defer_async(workflow_id=record.workflow_id)
        await limits_verdict()

    await store.create(record, inside=inside)


async def probe_child() -> None:
    """`--probe-child`: READY; then, per round, GO .. STOP on stdin, probing every
    PROBE_INTERVAL_S in between, and one line ``LATENCIES [...]`` (seconds) after each STOP;
    anything but GO (or the end of stdin) ends it."""
    from notifier.config import StorageSettings
    from notifier.distributed.queue import build_app
    from notifier.records import WorkflowRecord, new_workflow_id
    from notifier.store.postgres import PostgresStore

    quiet_logs("WARNING")
    dsn = os.environ[PROBE_DSN_ENV]
    settings = StorageSettings(backend="postgres", postgres_dsn=dsn, path=Path("unused"))
    store = await PostgresStore.open(settings, maintain=False)
    app = build_app(dsn)
    serial = itertools.count()
    try:
        async with app.open_async():
            print("READY", flush=True)
            while (await asyncio.to_thread(sys.stdin.readline)).strip() == "GO":
                stop = asyncio.ensure_future(asyncio.to_thread(sys.stdin.readline))
                latencies: list[float] = []
                while not stop.done():
                    number = next(serial)
                    record = WorkflowRecord(
                        workflow_id=new_workflow_id(),
                        command=PROBE_COMMAND,
                        user_id=900_000 + number,
                        user_name=f"probe{number}",
                        options={"steps": str(STEPS), "pause": str(PAUSE_S)},
                        guild_id=1,
                        channel_id=1,
                        created_at=time.time(),
                    )
                    token = f"probe-{uuid.uuid4().hex}"
                    began = time.perf_counter()
                    await queue_as_the_gateway(store, app, record, token)
                    latencies.append(time.perf_counter() - began)
                    await asyncio.wait({stop}, timeout=PROBE_INTERVAL_S)
                print("LATENCIES " + json.dumps(latencies), flush=True)
    finally:
        await store.close()


class Probe:
    """The parent's side of the probe process."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, dsn: str) -> AsyncIterator[Probe]:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.distributed",
            "--probe-child",
            cwd=PROJECT_ROOT,
            env={**os.environ, PROBE_DSN_ENV: dsn, "PYTHONUNBUFFERED": "1"},
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        probe = cls(process)
        try:
            if await probe._line(START_LIMIT_S) != "READY":
                raise MeasureError("the probe process did not start (no READY)")
            yield probe
        finally:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
            await process.wait()

    async def _line(self, limit_s: float) -> str:
        assert self.process.stdout is not None
        raw = await asyncio.wait_for(self.process.stdout.readline(), limit_s)
        return raw.decode().strip()

    def _say(self, word: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{word}\n".encode())

    def go(self) -> None:
        self._say("GO")

    async def stop(self) -> list[float]:
        self._say("STOP")
        line = await self._line(60.0)
        if not line.startswith("LATENCIES "):
            raise MeasureError(f"the probe answered {line[:200]!r}")
        return [float(x) for x in json.loads(line.split(" ", 1)[1])]


# ---------------------------------------------------------------------------------------------
# CPU accounting from /proc


CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process `pid` (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            fields = handle.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def postgres_cpu_s() -> float:
    """CPU seconds of every process named postgres (the server and its backends; backends that
    exited in between are missed, so this is a lower bound)."""
    total = 0.0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/comm", encoding="ascii") as handle:
                if handle.read().strip() != "postgres":
                    continue
        except OSError:
            continue
        total += process_cpu_s(int(entry.name))
    return total


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # without guest time, which is counted in user already
    return (total - idle) / CLOCK_TICKS, total / CLOCK_TICKS


@dataclass(frozen=True)
class CpuSample:
    machine_busy_s: float
    machine_total_s: float
    by_group: dict[str, float]

    @classmethod
    def take(cls, groups: dict[str, Sequence[int]]) -> CpuSample:
        busy, total = machine_cpu()
        by_group = {name: sum(process_cpu_s(p) for p in pids) for name, pids in groups.items()}
        by_group["postgres"] = postgres_cpu_s()
        return cls(busy, total, by_group)


def cpu_use(before: CpuSample, after: CpuSample, seconds: float) -> dict[str, float]:
    """Cores busy on average over `seconds`: the machine's, then per group."""
    cores = os.cpu_count() or 1
    total = after.machine_total_s - before.machine_total_s
    busy = after.machine_busy_s - before.machine_busy_s
    used = {"machine": cores * busy / total if total else 0.0}
    for name, value in after.by_group.items():
        used[name] = (value - before.by_group.get(name, 0.0)) / seconds if seconds else 0.0
    return used


# ---------------------------------------------------------------------------------------------
# Gateway, workers and the database


def write_config(
    folder: Path, name: str, emulator: Any, dsn: str, distributed: dict[str, float]
) -> Path:
    """The config every process of one setup shares (the tests' shape, with the project's
    defaults but for what the docstring says)."""
    config: dict[str, Any] = {
        "discord": {"token": "${" + TOKEN_ENV + "}", "api_base": emulator.api_base},
        "storage": {"backend": "postgres", "postgres_dsn": dsn, "path": str(folder / "data")},
        "workflows": {"dirs": [str(folder / "workflows")]},
        "fanout": {"plugin_dirs": []},
        "runner": {"max_concurrent": MAX_CONCURRENT, "max_per_user": MAX_PER_USER},
        "distributed": distributed,
        "logging": {"level": "INFO"},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


@dataclass
class Setup:
    """The emulator, the shared database and the processes running against them."""

    emulator: Any
    dsn: str
    folder: Path
    stack: contextlib.AsyncExitStack
    users: list[str] = field(default_factory=list)
    gateway: Any = None
    conn: psycopg.AsyncConnection[Any] | None = None

    async def start_process(self, *args: str) -> Any:
        from notifier.testing import BotProcess, child_env

        return await self.stack.enter_async_context(
            BotProcess.running(
                sys.executable,
                "-m",
                "notifier",
                *args,
                cwd=PROJECT_ROOT,
                env=child_env(**{TOKEN_ENV: self.emulator.bot_token}),
                token=self.emulator.bot_token,
            )
        )

    async def migrate(self) -> None:
        """Apply every migration set a worker needs, as ``notifier db migrate`` does (its
        function), with the queue's set registered (`notifier.distributed.queue`): the CLI
        does not import it, so without this the queue's tables appear only when the first worker
        starts, and the probe, which starts before any worker, would find no queue schema."""
        import notifier.distributed.queue  # noqa: F401 - registers the queue's migration set
        from notifier.config import StorageSettings
        from notifier.store.postgres import migrate_database

        await migrate_database(
            StorageSettings(backend="postgres", postgres_dsn=self.dsn, path=self.folder)
        )

    async def start_gateway(self, config: Path) -> None:
        self.gateway = await self.start_process("run", "--role", "gateway", "--config", str(config))
        await self.emulator.wait_for_commands("stepper", timeout_s=START_LIMIT_S)
        await self.gateway.wait_until(
            lambda: self.gateway.stderr_has("ready as"),
            what="gateway ready",
            timeout_s=START_LIMIT_S,
        )

    async def start_workers(self, count: int, config: Path) -> list[Any]:
        workers = await asyncio.gather(
            *(self.start_process("worker", "--config", str(config)) for _ in range(count))
        )
        for worker in workers:
            await worker.wait_until(
                lambda w=worker: w.stderr_has("taking workflow jobs"),
                what="worker ready",
                timeout_s=START_LIMIT_S,
            )
        return list(workers)

    async def stop_workers(self, workers: Sequence[Any]) -> None:
        """SIGTERM each and wait: a clean exit, no traceback, no token in the output."""
        for worker in workers:
            if worker.process.returncode is None:
                worker.send(signal.SIGTERM)
        for worker in workers:
            if worker.process.returncode is not None and worker.process.returncode < 0:
                continue  # killed on purpose
            try:
                code = await worker.finish(limit_s=START_LIMIT_S)
            except TimeoutError:
                worker.send(signal.SIGKILL)
                raise MeasureError(
                    f"a worker did not stop within {START_LIMIT_S:g} s of SIGTERM:\n"
                    + worker.output()[-3000:].replace(self.emulator.bot_token, "***")
                ) from None
            output = worker.output()
            if code != 0 or "Traceback" in output or self.emulator.bot_token in output:
                raise MeasureError(
                    f"a worker did not stop cleanly (exit {code}):\n"
                    + output[-3000:].replace(self.emulator.bot_token, "***")
                )

    async def rows(self, query: str, *params: object) -> list[tuple[Any, ...]]:
        if self.conn is None or self.conn.closed:
            self.conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
        cursor = await self.conn.execute(query, params)
        return await cursor.fetchall()

    async def trigger(self, count: int, options: dict[str, object]) -> list[Any]:
        """`count` commands, round-robin over the users, at most TRIGGER_WINDOW unanswered."""
        handles: list[Any] = []
        for number in range(count):
            handles.append(
                await self.emulator.trigger_command(
                    "stepper", options, user=self.users[number % len(self.users)]
                )
            )
            if number >= TRIGGER_WINDOW:
                await handles[number - TRIGGER_WINDOW].wait_for_response(timeout_s=30.0)
        for handle in handles:
            await handle.wait_for_response(timeout_s=30.0)
        return handles


def without_webhook_limits() -> dict[str, Any]:
    """The emulator's Discord rate limits, but for the interaction webhook routes' (see the
    module docstring: nextcord 3.2 shares one bucket among all interactions of a process)."""
    from notifier.testing import default_rate_limits

    return {k: v for k, v in default_rate_limits().items() if not k.startswith("webhook_")}


def workflow_ids_told(emulator: Any, ids: set[str]) -> Counter[str]:
    """How many result messages name each of `ids` (a delivered result says 'completed')."""
    from notifier.testing import every_message, text_of

    told: Counter[str] = Counter()
    for message in every_message(emulator):
        text = text_of(message)
        if message.deleted or "completed" not in text:
            continue
        found = re.search(r"workflow `([0-9a-f]{32})`", text)
        if found and found.group(1) in ids:
            told[found.group(1)] += 1
    return told


@dataclass
class Run:
    workers: int
    workflows: int
    seconds: float
    intake_per_s: float
    told_once: int
    rate_limited: int
    via: Counter[str]
    cpu: dict[str, float]
    latencies: list[float]
    peak_connections: int
    # Seconds each workflow held a worker's slot: from its first step's start (first step
    # recorded, less one pause) to its delivery.
    slot_s: list[float] = field(default_factory=list)
    # What recording a step added to the pause: gap between consecutive steps, less the pause.
    step_overhead_s: list[float] = field(default_factory=list)
    # Seconds from the thaw until each workflow's first step started.
    waited_s: list[float] = field(default_factory=list)
    # Requests on interaction webhooks (progress edits, results) during the drain: the workers'.
    webhook_requests: int = 0

    @property
    def per_s(self) -> float:
        return self.workflows / self.seconds


async def throughput_run(
    setup: Setup, probe: Probe, config: Path, workers_count: int, count: int
) -> Run:
    from notifier.testing import text_of

    print(f"  {workers_count} worker(s), {count} workflows: starting", flush=True)
    workers = await setup.start_workers(workers_count, config)
    try:
        for worker in workers:
            worker.send(signal.SIGSTOP)
        [(marker,)] = await setup.rows("SELECT coalesce(max(id), 0) FROM workflows")
        began = time.perf_counter()
        handles = await setup.trigger(count, {"steps": STEPS, "pause": PAUSE_S})

        async def queued() -> int:
            [(found,)] = await setup.rows(
                "SELECT count(*) FROM procrastinate_jobs WHERE queue_name = 'notifier' "
                "AND status = 'todo'"
            )
            return int(found)

        deadline = time.monotonic() + RUN_LIMIT_S

        def shown_queued(handle: Any) -> bool:
            return handle.original is not None and "queued" in text_of(handle.original)

        while await queued() < count or not all(shown_queued(h) for h in handles):
            if time.monotonic() > deadline:
                raise MeasureError(f"only {await queued()} of {count} jobs were queued")
            await asyncio.sleep(0.05)
        intake_s = time.perf_counter() - began
        requests_before = len(setup.emulator.requests)
        groups = {
            "workers": [w.pid for w in workers],
            "gateway": [setup.gateway.pid],
            "probe": [probe.process.pid],
        }
        before = CpuSample.take(groups)
        own_before = sum(os.times()[:2])
        probe.go()
        released = time.time()
        for worker in workers:
            worker.send(signal.SIGCONT)
        peak = 0
        while True:
            [(done, connections)] = await setup.rows(
                "SELECT count(*) FILTER (WHERE status = 'completed' "
                "AND delivery_state = 'delivered'), "
                "(SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()) "
                "FROM workflows WHERE id > %s AND command = 'stepper'",
                marker,
            )
            peak = max(peak, int(connections))
            if done >= count:
                break
            if time.time() - released > RUN_LIMIT_S:
                states = await setup.rows(
                    "SELECT status, delivery_state, count(*) FROM workflows WHERE id > %s "
                    "AND command = 'stepper' GROUP BY 1, 2",
                    marker,
                )
                raise MeasureError(
                    f"{done} of {count} workflows delivered in {RUN_LIMIT_S:g} s ({states}); "
                    f"a worker's output ends:\n{workers[0].output()[-3000:]}"
                )
            await asyncio.sleep(0.05)
        latencies = await probe.stop()
        wall = time.time() - released
        after = CpuSample.take(groups)
        used = cpu_use(before, after, wall)
        used["this process (emulator)"] = (sum(os.times()[:2]) - own_before) / wall
        # Everything else on the machine: other people's processes, the kernel, backends that
        # exited during the drain.
        used["others"] = max(
            0.0, used["machine"] - sum(v for k, v in used.items() if k != "machine")
        )
        rows = await setup.rows(
            "SELECT workflow_id, delivered_at, delivered_via FROM workflows "
            "WHERE id > %s AND command = 'stepper'",
            marker,
        )
        last = max(float(r[1]) for r in rows)
        ids = {str(r[0]) for r in rows}
        told = workflow_ids_told(setup.emulator, ids)
        new_requests = setup.emulator.requests[requests_before:]
        steps = await setup.rows(
            "SELECT s.workflow_id, s.recorded_at, w.delivered_at FROM workflow_steps s "
            "JOIN workflows w USING (workflow_id) WHERE w.id > %s AND w.command = 'stepper' "
            "ORDER BY s.workflow_id, s.step_index",
            marker,
        )
        slot_s, overhead_s, waited_s = [], [], []
        for _, group in itertools.groupby(steps, key=lambda r: r[0]):
            times = [(float(r[1]), float(r[2])) for r in group]
            started = times[0][0] - PAUSE_S
            slot_s.append(times[0][1] - started)
            waited_s.append(started - released)
            overhead_s.extend(b[0] - a[0] - PAUSE_S for a, b in itertools.pairwise(times))
        return Run(
            workers=workers_count,
            workflows=count,
            seconds=last - released,
            intake_per_s=count / intake_s,
            told_once=sum(1 for i in ids if told[i] == 1),
            rate_limited=sum(1 for r in new_requests if r.status == 429),
            via=Counter(str(r[2]) for r in rows),
            cpu=used,
            latencies=latencies,
            peak_connections=peak,
            slot_s=slot_s,
            step_overhead_s=overhead_s,
            waited_s=waited_s,
            webhook_requests=sum(1 for r in new_requests if "/webhooks/" in r.path),
        )
    finally:
        for worker in workers:
            if worker.process.returncode is None:
                worker.send(signal.SIGCONT)
        await setup.stop_workers(workers)


@dataclass
class Recovery:
    settings: str
    seconds: float
    events: list[tuple[str, float]]
    killed_after_step: int
    resumed_at_step: int


async def recovery_run(setup: Setup, config: Path, label: str) -> Recovery:
    from notifier.config import StorageSettings
    from notifier.store.postgres import PostgresStore

    print(f"  recovery, {label}: starting two workers", flush=True)
    workers = await setup.start_workers(2, config)
    try:
        [(marker,)] = await setup.rows("SELECT coalesce(max(id), 0) FROM workflows")
        await setup.trigger(1, {"steps": RECOVERY_STEPS, "pause": RECOVERY_PAUSE_S})
        deadline = time.monotonic() + RECOVERY_LIMIT_S
        workflow_id = None
        while workflow_id is None:
            found = await setup.rows(
                "SELECT w.workflow_id FROM workflows w JOIN workflow_steps s USING (workflow_id) "
                "WHERE w.id > %s AND w.command = 'stepper' GROUP BY w.workflow_id "
                "HAVING count(*) >= %s",
                marker,
                KILL_AFTER_STEPS,
            )
            workflow_id = str(found[0][0]) if found else None
            if time.monotonic() > deadline:
                raise MeasureError("the long workflow recorded no steps")
            await asyncio.sleep(0.02)
        [(pid, last_step)] = await setup.rows(
            "SELECT min(convert_from(value, 'UTF8')::jsonb ->> 'pid'), max(step_index) "
            "FROM workflow_steps WHERE workflow_id = %s",
            workflow_id,
        )
        victim = next(w for w in workers if w.pid == int(pid))
        killed_at = time.time()
        await victim.kill_9()
        # The step the victim was in when it died may have been recorded meanwhile.
        [(last_step,)] = await setup.rows(
            "SELECT max(step_index) FROM workflow_steps WHERE workflow_id = %s", workflow_id
        )
        deadline = time.monotonic() + RECOVERY_LIMIT_S
        resumed: list[tuple[Any, ...]] = []
        while not resumed:
            resumed = await setup.rows(
                "SELECT recorded_at, step_index FROM workflow_steps WHERE workflow_id = %s "
                "AND (convert_from(value, 'UTF8')::jsonb ->> 'pid')::int <> %s "
                "ORDER BY step_index LIMIT 1",
                workflow_id,
                victim.pid,
            )
            if time.monotonic() > deadline:
                raise MeasureError(f"no other worker resumed the workflow in {RECOVERY_LIMIT_S} s")
            await asyncio.sleep(0.02)
        recorded_at, resumed_at = resumed[0]
        # Events of the workflow's jobs since the kill (those of jobs that ended are deleted
        # with them). A 'scheduled' event's time is when the job is due, not when it was said.
        events = await setup.rows(
            "SELECT 'job ' || j.id || ' ' || CASE e.type WHEN 'scheduled' THEN 'due' "
            "ELSE e.type::text END, extract(epoch FROM e.at)::float8 "
            "FROM procrastinate_events e JOIN procrastinate_jobs j ON j.id = e.job_id "
            "WHERE j.args ->> 'workflow_id' = %s AND e.at > to_timestamp(%s) ORDER BY e.at",
            workflow_id,
            killed_at,
        )
        settings = StorageSettings(backend="postgres", postgres_dsn=setup.dsn, path=setup.folder)
        async with await PostgresStore.open(settings, maintain=False) as store:
            await store.request_cancel(workflow_id)
        while (
            await setup.rows("SELECT status FROM workflows WHERE workflow_id = %s", workflow_id)
        )[0][0] == "running":
            if time.monotonic() > deadline:
                raise MeasureError("the cancelled workflow did not stop")
            await asyncio.sleep(0.1)
        return Recovery(
            settings=label,
            seconds=float(recorded_at) - killed_at,
            events=[(str(kind), float(at) - killed_at) for kind, at in events],
            killed_after_step=int(last_step),
            resumed_at_step=int(resumed_at),
        )
    finally:
        await setup.stop_workers(workers)


# ---------------------------------------------------------------------------------------------
# The index: PostgreSQL beside SQLite on the same rows


def _plan_line(node: dict[str, Any]) -> str:
    """A plan on one line: each node's type (and index), outermost first, with the rows a scan
    fetched and then dropped; a node with several inputs shows them as (a & b)."""
    part = node["Node Type"]
    if "Index Name" in node:
        part += f" ({node['Index Name']})"
    removed = node.get("Rows Removed by Index Recheck") or node.get("Rows Removed by Filter")
    if removed:
        part += f" [{removed:,} rows fetched and dropped]"
    children = node.get("Plans") or []
    if len(children) == 1:
        return f"{part} > {_plan_line(children[0])}"
    if children:
        return f"{part} > (" + " & ".join(_plan_line(c) for c in children) + ")"
    return part


async def slowest_and_median_needle(store: Any, samples: int = 40) -> list[str]:
    """Of `samples` selective needles (``siteN.example``, as `bench.index` asks), timed once each
    through the store, the slowest and the median: their plans differ (see the report)."""

    from .index import SITES

    rng = random.Random(5)
    timed = []
    for _ in range(samples):
        needle = f"site{rng.randrange(SITES)}.example"
        began = time.perf_counter()
        await store.search(ResultQuery(url_contains=needle))
        timed.append((time.perf_counter() - began, needle))
    timed.sort()
    return [timed[-1][1], timed[len(timed) // 2][1]]


async def explain_url_search(
    store: Any, cases: Sequence[tuple[int | None, str]]
) -> list[tuple[str, ...]]:
    """EXPLAIN ANALYZE, best of 3, of the URL search the store runs (`PostgresStore.search_where`
    and the ORDER BY of `PostgresIndex.search`) per (user id or None, needle): how PostgreSQL finds the newest 25."""
    shown = []
    for user_id, needle in cases:
        where, params = store.search_where(ResultQuery(url_contains=needle, user_id=user_id))
        [(matches,)] = await store.database.fetch(
            "count", f"SELECT count(*) FROM workflows WHERE {where}", params
        )
        best, line = float("inf"), ""
        for _ in range(3):
            [(plan,)] = await store.database.fetch(
                "explain",
                "EXPLAIN (ANALYZE, FORMAT JSON) SELECT * FROM workflows "
                f"WHERE {where} ORDER BY created_at DESC, id DESC LIMIT 25",
                params,
            )
            best = min(best, float(plan[0]["Execution Time"]))
            line = _plan_line(plan[0]["Plan"])
        who = "all users" if user_id is None else "one user"
        shown.append((f"{needle} ({who})", f"{int(matches):,}", line, f"{best:.2f}"))
    return shown


@dataclass
class IndexResult:
    rows: int
    sqlite_build_s: float
    postgres_build_s: float
    postgres_mb: float
    sqlite_mb: float
    kinds: list[Any]
    explained: list[tuple[str, ...]]


async def index_phase(server: Any, rows: int, queries: int, budget_s: float) -> IndexResult:
    from notifier.config import StorageSettings
    from notifier.store import ResultStore
    from notifier.store.postgres import PostgresStore
    from notifier.store.result_store import INDEX_NAME
    from notifier.testing.postgres import fresh_database

    from . import index as sqlite_bench

    tmp = tempfile.mkdtemp(prefix=".bench-distributed-", dir=PROJECT_ROOT)
    try:
        folder = Path(tmp) / "sqlite"
        print(f"  SQLite: building {rows:,} rows (bench.index.build)", flush=True)
        meta, sqlite_build_s = await sqlite_bench.build(folder, rows)
        sqlite_mb = sum(p.stat().st_size for p in folder.glob(f"{INDEX_NAME}*")) / 1e6
        with fresh_database(server, prefix="bench_distributed_index_") as dsn:
            settings = StorageSettings(backend="postgres", postgres_dsn=dsn, path=Path(tmp))
            async with await PostgresStore.open(settings):  # creates the schema
                pass
            # No retention while the old rows sit here: maintain=False, like the CLI.
            postgres = await PostgresStore.open(settings, maintain=False)
            sqlite = await ResultStore.open(StorageSettings(path=folder), maintain=False)
            try:
                print(f"  PostgreSQL: loading the same {rows:,} rows (insert_many)", flush=True)
                records = sqlite_bench.generate(rows, meta.t0, seed=7, sample_ids=[])
                began = time.perf_counter()
                done = 0
                while done < rows:
                    size = min(sqlite_bench.BATCH, rows - done)
                    await postgres.insert_many(itertools.islice(records, size))
                    done += size
                    rate = done / (time.perf_counter() - began)
                    print(f"  loaded {done:,} rows ({rate:,.0f} rows/s)", flush=True)
                await postgres.url_search_ready()
                postgres_build_s = time.perf_counter() - began
                [(size_bytes,)] = await postgres.database.fetch(
                    "size", "SELECT pg_total_relation_size('workflows')", []
                )
                await sqlite.url_search_ready()
                kinds = []
                for label, store in (("SQLite", sqlite), ("PostgreSQL", postgres)):
                    for kind in sqlite_bench.query_kinds(store, meta):  # type: ignore[arg-type]
                        if kind.name == "get by id" or kind.name in URL_KINDS:
                            kinds.append(
                                sqlite_bench.Kind(
                                    f"{label}: {kind.name}", kind.run, is_search=kind.is_search
                                )
                            )
                await sqlite_bench.measure(kinds, queries, budget_s)
                needles = await slowest_and_median_needle(postgres)
                user = 100_000 + 7  # one of bench.index's users
                explained = await explain_url_search(
                    postgres,
                    [
                        *((None, needle) for needle in needles),
                        (None, "/news/"),
                        (user, "/news/"),
                        (user, needles[0].removesuffix(".example")),
                    ],
                )
            finally:
                await sqlite.close()
                await postgres.close()
        return IndexResult(
            rows=rows,
            sqlite_build_s=sqlite_build_s,
            postgres_build_s=postgres_build_s,
            postgres_mb=int(size_bytes) / 1e6,
            sqlite_mb=sqlite_mb,
            kinds=kinds,
            explained=explained,
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# The run


def parse_args() -> argparse.Namespace:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--workflows", type=int, default=400)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=500, help="timed queries per kind")
    parser.add_argument(
        "--kind-budget-s", type=float, default=10.0, help="time budget per query kind"
    )
    parser.add_argument("--skip-index", action="store_true", help="no index part (4)")
    parser.add_argument("--probe-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.workflows, args.rows, args.queries = 100, 100_000, 200
    return args


async def run() -> None:
    args = parse_args()
    if args.probe_child:
        await probe_child()
        return
    quiet_logs(args.log_level)
    from notifier.testing import DiscordEmulator, EmulatorConfig, default_rate_limits
    from notifier.testing.postgres import find_postgres, fresh_database

    print(machine_line())
    print("load average before: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(
        f"distributed: {args.workflows} workflows of {STEPS} steps x {PAUSE_S * 1e3:g} ms with "
        f"{', '.join(map(str, args.workers))} worker(s) (max_concurrent {MAX_CONCURRENT} each); "
        f"recovery after kill -9 ({'short' if args.quick else 'default and short'} settings); "
        + ("no index part" if args.skip_index else f"index at {args.rows:,} rows")
    )
    runs: list[Run] = []
    limited: Run | None = None
    recoveries: list[Recovery] = []
    index: IndexResult | None = None
    with find_postgres() as found:
        if found.server is None:
            raise MeasureError(f"no PostgreSQL: {found.reason}")
        server = found.server
        print(f"PostgreSQL: {server.source}", flush=True)
        with fresh_database(server, prefix="bench_distributed_") as dsn:
            async with (
                DiscordEmulator(EmulatorConfig(rate_limits=without_webhook_limits())) as emulator,
                contextlib.AsyncExitStack() as stack,
            ):
                folder = Path(tempfile.mkdtemp(prefix=".bench-distributed-", dir=PROJECT_ROOT))
                stack.callback(shutil.rmtree, folder, True)
                (folder / "workflows").mkdir()
                (folder / "workflows" / "stepper.py").write_text(STEPPER, encoding="utf-8")
                default = write_config(folder, "default", emulator, dsn, {})
                short = write_config(folder, "short", emulator, dsn, SHORT_SETTINGS)
                setup = Setup(emulator=emulator, dsn=dsn, folder=folder, stack=stack)
                setup.users = [emulator.add_user(f"user{n}").username for n in range(USERS)]
                await setup.migrate()
                print("  starting the gateway", flush=True)
                await setup.start_gateway(default)
                probe = await stack.enter_async_context(Probe.running(dsn))
                try:
                    for count in args.workers:
                        runs.append(
                            await throughput_run(setup, probe, default, count, args.workflows)
                        )
                        last = runs[-1]
                        print(
                            f"  {count} worker(s): {last.per_s:.1f} workflows/s, gateway tx p99 "
                            f"{fmt_ms(percentile(last.latencies, 99))} ms",
                            flush=True,
                        )
                    if not args.quick:
                        # Discord's per-interaction webhook limits back on: one worker, a few
                        # workflows (nextcord shares one bucket among all interactions).
                        emulator.config.rate_limits = default_rate_limits()
                        limited = await throughput_run(setup, probe, default, 1, LIMITED_WORKFLOWS)
                        emulator.config.rate_limits = without_webhook_limits()
                        print(f"  with webhook limits: {limited.per_s:.2f} workflows/s", flush=True)
                    if not args.quick:
                        recoveries.append(await recovery_run(setup, default, "default"))
                        print(f"  recovery, default: {recoveries[-1].seconds:.1f} s", flush=True)
                    recoveries.append(await recovery_run(setup, short, "short (the tests')"))
                    print(f"  recovery, short: {recoveries[-1].seconds:.1f} s", flush=True)
                finally:
                    if setup.conn is not None:
                        await setup.conn.close()
        if not args.skip_index:
            index = await index_phase(server, args.rows, args.queries, args.kind_budget_s)
    print("load average after: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    report(args, runs, limited, recoveries, index)


def report(
    args: argparse.Namespace,
    runs: list[Run],
    limited: Run | None,
    recoveries: list[Recovery],
    index: IndexResult | None,
) -> None:
    base = runs[0].per_s if runs and runs[0].workers == 1 else None
    shown = [(str(r.workers), r) for r in runs]
    if limited is not None:
        shown.append(("1, webhook limits on", limited))
    print_table(
        f"Throughput: workflows of {STEPS} steps x {PAUSE_S * 1e3:g} ms from a full queue; "
        "seconds from the thaw to the last delivery",
        [
            "workers",
            "workflows",
            "seconds",
            "workflows/s",
            "vs 1 worker",
            "told once",
            "via",
            "429s",
            "webhook requests/workflow",
            "webhook requests/s per worker",
            "gateway intake/s",
            "peak connections",
        ],
        [
            (
                label,
                r.workflows,
                f"{r.seconds:.2f}",
                f"{r.per_s:.1f}",
                f"{r.per_s / base:.2f}x" if base and r is not limited else "-",
                f"{r.told_once}/{r.workflows}",
                ", ".join(f"{k} {v}" for k, v in r.via.most_common()),
                r.rate_limited,
                f"{r.webhook_requests / r.workflows:.1f}",
                f"{r.webhook_requests / r.seconds / r.workers:.1f}",
                f"{r.intake_per_s:.0f}",
                r.peak_connections,
            )
            for label, r in shown
        ],
    )
    groups = [
        "machine",
        "workers",
        "postgres",
        "this process (emulator)",
        "gateway",
        "probe",
        "others",
    ]
    print_table(
        f"CPU over each drain, in cores busy on average ({os.cpu_count()} cores)",
        ["workers", *groups],
        [(label, *(f"{r.cpu.get(g, 0.0):.2f}" for g in groups)) for label, r in shown],
    )
    print_table(
        "Where a workflow's time went: its worker slot (first step's start to delivery), the "
        "slots kept busy, each step's cost beyond its pause, the wait after the thaw",
        [
            "workers",
            "slot p50 s",
            "slot p90 s",
            "slots busy",
            "step extra p50 ms",
            "step extra p99 ms",
            "start wait p50 s",
            "start wait max s",
        ],
        [
            (
                label,
                f"{percentile(r.slot_s, 50):.2f}",
                f"{percentile(r.slot_s, 90):.2f}",
                f"{sum(r.slot_s) / (r.seconds * r.workers * MAX_CONCURRENT):.0%}",
                fmt_ms(percentile(r.step_overhead_s, 50), 1),
                fmt_ms(percentile(r.step_overhead_s, 99), 1),
                f"{percentile(r.waited_s, 50):.2f}",
                f"{max(r.waited_s):.2f}",
            )
            for label, r in shown
        ],
    )
    print_table(
        "The gateway's transaction (row + token + job, committed) while the workers drain, "
        f"one every {PROBE_INTERVAL_S * 1e3:g} ms",
        ["workers", "transactions", "p50 ms", "p99 ms", "max ms"],
        [
            (
                r.workers,
                len(r.latencies),
                fmt_ms(percentile(r.latencies, 50)),
                fmt_ms(percentile(r.latencies, 99)),
                fmt_ms(max(r.latencies) if r.latencies else float("nan")),
            )
            for r in runs
        ],
    )
    if recoveries:
        print_table(
            "Recovery after kill -9 of the worker running a workflow: seconds after the kill",
            ["settings", "job events (s after kill)", "next step recorded", "steps"],
            [
                (
                    r.settings,
                    ", ".join(f"{kind} {at:.1f}" for kind, at in r.events) or "-",
                    f"{r.seconds:.2f}",
                    f"last before kill {r.killed_after_step}, next {r.resumed_at_step}",
                )
                for r in recoveries
            ],
        )
    if index is not None:
        print_table(
            f"Index at {index.rows:,} rows: SQLite built in {index.sqlite_build_s:.0f} s "
            f"({index.sqlite_mb:,.0f} MB), PostgreSQL loaded in {index.postgres_build_s:.0f} s "
            f"({index.postgres_mb:,.0f} MB with indexes); queries interleaved",
            ["query", "queries", "p50 ms", "p99 ms", "max ms", "mean rows returned"],
            [
                (
                    k.name,
                    len(k.latencies),
                    f"{percentile(k.latencies, 50) * 1e3:.2f}",
                    f"{percentile(k.latencies, 99) * 1e3:.2f}",
                    f"{max(k.latencies) * 1e3:.2f}",
                    f"{sum(k.matches) / max(1, len(k.matches)):,.1f}",
                )
                for k in index.kinds
            ],
        )
        print_table(
            "Where a PostgreSQL URL search spends its time (EXPLAIN ANALYZE, best of 3)",
            ["needle", "matches", "plan", "ms"],
            index.explained,
        )

    targets: list[Target] = []
    ratio_parts: list[str] = []
    four = next((r for r in runs if r.workers == 4), None)
    if four is not None and base:
        ratio = four.per_s / base
        targets.append(
            Target(
                "throughput, 4 workers vs 1",
                ">= 3x",
                f"{ratio:.2f}x ({four.per_s:.1f} vs {base:.1f} workflows/s)",
                ratio >= 3.0,
            )
        )
        ratio_parts.append(f"4 workers / 1 worker {ratio:.2f}x")
    if four is not None:
        p99 = percentile(four.latencies, 99)
        targets.append(
            Target(
                "gateway transaction p99, 4 workers", "< 20 ms", f"{fmt_ms(p99)} ms", p99 < 0.020
            )
        )
        ratio_parts.append(f"gateway tx p99 {fmt_ms(p99)} ms")
    for r in runs:
        targets.append(
            Target(
                f"delivered once, {r.workers} worker(s)",
                f"{r.workflows}/{r.workflows}",
                f"{r.told_once}/{r.workflows}",
                r.told_once == r.workflows,
            )
        )
    for r in recoveries:
        if r.settings == "default":
            targets.append(
                Target(
                    "recovery after kill -9, default settings",
                    "<= 45 s",
                    f"{r.seconds:.1f} s",
                    r.seconds <= 45.0,
                )
            )
        ratio_parts.append(f"recovery ({r.settings.split()[0]}) {r.seconds:.1f} s")
    if index is not None:
        for k in index.kinds:
            if not k.name.startswith("PostgreSQL"):
                continue
            p99 = percentile(k.latencies, 99)
            limit = 0.020 if k.is_search else 0.002
            targets.append(
                Target(f"p99 {k.name}", f"< {limit * 1e3:g} ms", f"{p99 * 1e3:.2f} ms", p99 < limit)
            )
        pg = [k for k in index.kinds if k.name.startswith("PostgreSQL")]
        by_id = percentile(pg[0].latencies, 99)
        worst = max(pg[1:], key=lambda k: percentile(k.latencies, 99))
        ratio_parts.append(
            f"PostgreSQL by id p99 {by_id * 1e3:.2f} ms, slowest URL search p99 "
            f"{percentile(worst.latencies, 99) * 1e3:.2f} ms"
        )
    print_targets(targets)
    print("ratio: " + "; ".join(ratio_parts))


if __name__ == "__main__":
    main_guard(run)
