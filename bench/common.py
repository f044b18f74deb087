"""What every benchmark shares: percentiles, the event-loop lag probe, RSS, the table printer,
target verdicts, quiet logging, and loopback HTTP sinks in a separate process."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "GcPauses",
    "LagProbe",
    "LagStats",
    "MeasureError",
    "SinkProcess",
    "StallSampler",
    "Target",
    "base_parser",
    "fmt_ms",
    "idle_lag",
    "machine_line",
    "main_guard",
    "make_result",
    "percentile",
    "print_table",
    "print_targets",
    "quiet_logs",
    "rss_bytes",
]

PROBE_INTERVAL_S: Final = 0.001
# The probe stops recording after this many samples (about 3 hours at 1 kHz): bounded memory.
PROBE_MAX_SAMPLES: Final = 10_000_000


class MeasureError(RuntimeError):
    """The benchmark could not measure (not: a target was missed). The script exits 1."""


# ---------------------------------------------------------------------------------------------
# Numbers


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100) with linear interpolation between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (p / 100.0) * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def fmt_ms(seconds: float, digits: int = 2) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1e3:.{digits}f}"


def rss_bytes() -> int:
    """Resident set size of this process, from /proc (Linux)."""
    with open("/proc/self/statm", encoding="ascii") as handle:
        resident_pages = int(handle.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


# ---------------------------------------------------------------------------------------------
# Event-loop lag


@dataclass(frozen=True, slots=True)
class LagStats:
    """Lag of a 1 ms probe: how late each wake-up came, in seconds."""

    samples: int
    p50: float
    p99: float
    max: float

    @classmethod
    def of(cls, lags: Sequence[float]) -> LagStats:
        return cls(
            samples=len(lags),
            p50=percentile(lags, 50),
            p99=percentile(lags, 99),
            max=max(lags) if lags else math.nan,
        )


@dataclass
class LagProbe:
    """A task on the loop under test that sleeps 1 ms again and again and records how late it
    woke (actual sleep minus 1 ms). Anything that holds the loop (a blocking call, a long
    callback, a thread holding the GIL) shows up as lag. `phase(name)` starts a new bucket so one
    run can report start-up, steady state and shutdown separately."""

    interval_s: float = PROBE_INTERVAL_S
    phases: dict[str, list[float]] = field(default_factory=dict)
    _current: list[float] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None
    _count: int = 0
    _asleep_since: float | None = None

    def phase(self, name: str) -> None:
        self._current = self.phases.setdefault(name, [])

    async def _run(self) -> None:
        clock = time.perf_counter
        while self._count < PROBE_MAX_SAMPLES:
            self._asleep_since = clock()
            await asyncio.sleep(self.interval_s)
            self._current.append(max(0.0, clock() - self._asleep_since - self.interval_s))
            self._asleep_since = None
            self._count += 1

    def _stop(self) -> None:
        # A loop blocked until the very end (a sync call on it) never let the probe wake: count
        # the wake-up it was owed as one sample, so the stall is not silently dropped.
        if self._asleep_since is not None:
            late = time.perf_counter() - self._asleep_since - self.interval_s
            if late > 0:
                self._current.append(late)
            self._asleep_since = None

    @contextlib.asynccontextmanager
    async def running(self, first_phase: str = "all") -> AsyncIterator[LagProbe]:
        self.phase(first_phase)
        self._task = asyncio.create_task(self._run(), name="lag-probe")
        await asyncio.sleep(0)
        try:
            yield self
        finally:
            self._stop()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def stats(self, *names: str) -> LagStats:
        """Stats over the named phases (all phases if none are named)."""
        chosen = names or tuple(self.phases)
        lags = [lag for name in chosen for lag in self.phases.get(name, [])]
        return LagStats.of(lags)


async def idle_lag(seconds: float = 1.0) -> LagStats:
    """The probe on an idle loop: the floor set by timer granularity, not by any work."""
    probe = LagProbe()
    async with probe.running("idle"):
        await asyncio.sleep(seconds)
    return probe.stats()


# ---------------------------------------------------------------------------------------------
# Output


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain aligned text table (first column left-aligned, the rest right-aligned)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        parts = [
            row[i].ljust(widths[i]) if i == 0 else row[i].rjust(widths[i]) for i in range(len(row))
        ]
        return "| " + " | ".join(parts) + " |"

    print(f"\n{title}")
    print(line(cells[0]))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells[1:]:
        print(line(row))
    sys.stdout.flush()


@dataclass(frozen=True, slots=True)
class Target:
    """One target of the issue and whether this run met it."""

    name: str
    wanted: str
    measured: str
    met: bool


def print_targets(targets: Sequence[Target]) -> None:
    print_table(
        "Targets",
        ["target", "wanted", "measured", "met"],
        [(t.name, t.wanted, t.measured, "yes" if t.met else "NO") for t in targets],
    )


def machine_line() -> str:
    cpus = os.cpu_count() or 0
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as handle:
        for raw in handle:
            if raw.startswith("model name"):
                model = raw.split(":", 1)[1].strip()
                break
    return (
        f"machine: {cpus} cores ({model or platform.machine()}), Python "
        f"{platform.python_version()}, {platform.system()} {platform.release()}, "
        f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}"
    )


def quiet_logs(level: str = "WARNING") -> None:
    """The project logs through loguru at INFO; a benchmark prints tables, so only warnings and
    errors go to stderr (a delivery failure must still be seen)."""
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level=level)


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--quick", action="store_true", help="small sizes: a smoke run, not the documented figures"
    )
    parser.add_argument(
        "--log-level", default="WARNING", help="loguru level for the project's logs (stderr)"
    )
    return parser


def add_gc_flag(parser: argparse.ArgumentParser) -> None:
    """`--default-gc`: keep CPython's collector settings instead of the ones bot.py applies
    (`notifier.runner.gc_tuning`), for benchmarks that measure the bot's loop."""
    parser.add_argument(
        "--default-gc",
        action="store_true",
        help="keep CPython's collector settings (bot.py tunes them; see notifier.runner.gc_tuning)",
    )


def gc_label(args: argparse.Namespace) -> str:
    """How the collector is set in this run, for the header line."""
    return "default" if args.default_gc else "the bot’s"


def main_guard(run: Any) -> None:
    """Run an async `run()`; exit 1 with a message when it could not measure."""
    try:
        asyncio.run(run())
    except MeasureError as exc:
        print(f"\nCOULD NOT MEASURE: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


# ---------------------------------------------------------------------------------------------
# Loopback HTTP sinks in their own process


class SinkProcess:
    """`count` aiohttp servers on 127.0.0.1 in a child process (`python -m bench.sinks`), each
    answering every request after `delay_ms`. A separate process, so the sinks neither share the
    GIL with the code under test nor stall when a baseline blocks its own event loop.

    `received()` asks each sink how many requests it has answered (GET /__count)."""

    def __init__(self, count: int, delay_ms: float) -> None:
        self.count = count
        self.delay_ms = delay_ms
        self.ports: list[int] = []
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> SinkProcess:
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.sinks",
                "--count",
                str(self.count),
                "--delay-ms",
                str(self.delay_ms),
            ],
            stdout=subprocess.PIPE,
            text=True,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        )
        assert self._proc.stdout is not None
        deadline = time.monotonic() + 20.0
        line = ""
        while time.monotonic() < deadline:
            line = self._proc.stdout.readline()
            if line.startswith("PORTS ") or not line:
                break
        if not line.startswith("PORTS "):
            self.__exit__(None, None, None)
            raise MeasureError("the sink process did not start (no PORTS line)")
        self.ports = [int(p) for p in line.split()[1:]]
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=5)
        self._proc = None

    def urls(self, scheme: str = "http", path: str = "/hook") -> list[str]:
        return [f"{scheme}://127.0.0.1:{port}{path}" for port in self.ports]

    def received(self) -> int:
        total = 0
        for port in self.ports:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/__count", timeout=10) as reply:
                total += int(json.loads(reply.read())["count"])
        return total


# ---------------------------------------------------------------------------------------------
# Payloads


def _page(index: int, page: int) -> dict[str, Any]:
    return {
        "url": f"https://example.org/report/{index}/page/{page}",
        "title": f"Page {page} of report {index}",
        "status": 200,
        "text": ("Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 30)[:1600],
        "links": [f"https://example.org/l/{index}/{page}/{k}" for k in range(12)],
        "words": 280 + page,
        "score": 0.5 + page / 100,
    }


# Bytes one page adds to a document as the store encodes it (indent=2), measured once.
_PAGE_BYTES: Final = 2_340
# Bytes of a document with no pages and a 100-character summary (the workflow section included).
_FIXED_BYTES: Final = 600


def make_result(index: int, size_bytes: int) -> dict[str, Any]:
    """A workflow result shaped like /autointel's (a summary and a list of analysed pages) whose
    stored document is about `size_bytes` long (the store's encoding, indented JSON)."""
    pages, rest = divmod(max(0, size_bytes - _FIXED_BYTES), _PAGE_BYTES)
    summary = ("A summary of the analysed pages. " * (1 + rest // 33))[: 100 + rest]
    return {
        "url": f"https://example.org/report/{index}",
        "title": f"Report {index}",
        "summary": summary,
        "pages": [_page(index, p) for p in range(pages)],
    }


# ---------------------------------------------------------------------------------------------
# Explaining lag: garbage-collector pauses and where the loop was when it stalled


@dataclass
class GcPauses:
    """Every collection of the cyclic garbage collector while active: count and longest pause per
    generation (a full collection over a big heap stops everything, the loop included)."""

    pauses: dict[int, list[float]] = field(default_factory=dict)
    _started: float = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.setdefault(info["generation"], []).append(
                time.perf_counter() - self._started
            )

    @contextlib.contextmanager
    def active(self) -> Iterator[GcPauses]:
        import gc

        gc.callbacks.append(self._callback)
        try:
            yield self
        finally:
            gc.callbacks.remove(self._callback)

    def lines(self) -> list[tuple[int, str]]:
        return [
            (gen, f"{len(p):,} runs, longest {max(p) * 1e3:,.1f} ms, total {sum(p):.2f} s")
            for gen, p in sorted(self.pauses.items())
        ]


class StallSampler:
    """A watcher thread: while the probe on the loop is overdue by more than `threshold_s`, it
    samples the loop thread's stack every `interval_s` and counts where it was (the innermost
    frames of this project, or of the library it was in). Diagnostics only (`--stalls`)."""

    def __init__(self, probe: LagProbe, threshold_s: float = 0.02, interval_s: float = 0.005):
        import threading

        self.probe = probe
        self.threshold_s = threshold_s
        self.interval_s = interval_s
        self.where: dict[str, float] = {}
        self._stop = threading.Event()
        self._loop_thread = threading.get_ident()
        self._thread = threading.Thread(target=self._watch, name="stall-sampler", daemon=True)

    def _describe(self, frame: Any) -> str:
        parts: list[str] = []
        while frame is not None and len(parts) < 3:
            name = frame.f_code.co_filename
            if "/bench/" not in name and "asyncio/" not in name and "<frozen" not in name:
                short = name.split("site-packages/")[-1].split("/lib/python3.12/")[-1]
                short = short.split("/work/main/")[-1]
                parts.append(f"{short}:{frame.f_lineno} {frame.f_code.co_name}")
            frame = frame.f_back
        return " <- ".join(parts) or "(event loop internals)"

    def _watch(self) -> None:
        while not self._stop.wait(self.interval_s):
            since = self.probe._asleep_since
            if since is None:
                continue
            overdue = time.perf_counter() - since - self.probe.interval_s
            if overdue < self.threshold_s:
                continue
            frame = sys._current_frames().get(self._loop_thread)
            key = self._describe(frame)
            self.where[key] = self.where.get(key, 0.0) + self.interval_s

    def __enter__(self) -> StallSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def top(self, count: int = 8) -> list[tuple[str, str]]:
        ranked = sorted(self.where.items(), key=lambda kv: -kv[1])[:count]
        return [(f"{seconds:.2f}", where) for where, seconds in ranked]
