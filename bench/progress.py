"""Benchmark 6 — progress under pressure: 100 updates/s for 30 s against real rate-limit buckets.

    .venv/bin/python -m bench.progress [--quick] [--rate 100] [--seconds 30]

The project's real bot (`NotifierBot`, nextcord 3.2) runs against the loopback Discord emulator
with its default rules, rate limits included (edits of an interaction's message: 5 per 2 s per
webhook; channel messages and edits: 5 per 5 s per channel). The bot uses the project's default
`progress.min_interval` (2 s; the emulator test helpers lower it to 0.2 s, not here).

A user runs `/autointel`; its body is replaced (as in the bot tests' SteeredWorkflow) by one that
reports progress `--rate` times a second, on a fixed schedule, for `--seconds`, then returns a
result. The script counts what reached Discord: edits of the status message, 429 answers (target
0), every request on the interaction's routes, and shows the final state the user sees.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from notifier.config import ProgressSettings
from notifier.testing import DiscordEmulator, EmulatorConfig
from notifier.testing.model import Message
from notifier.testing.project_bot import bot_settings, running_bot
from notifier.workflows import ReportProgress, WorkflowSpec

from .common import (
    LagProbe,
    MeasureError,
    Target,
    base_parser,
    fmt_ms,
    machine_line,
    main_guard,
    print_table,
    print_targets,
    quiet_logs,
)


def text_of(message: Message | None) -> str:
    if message is None:
        return ""
    parts = [message.content, json.dumps(message.embeds, ensure_ascii=False)]
    return "\n".join(parts + [a.filename for a in message.attachments])


def shown(message: Message | None) -> str:
    """What a person reads in a message, on one line: content, then each embed's title and the
    first two lines of its description."""
    if message is None:
        return "(none)"
    bits = [message.content] if message.content else []
    for embed in message.embeds:
        bits.append(str(embed.get("title", "")))
        bits.extend(str(embed.get("description", "")).splitlines()[:2])
    return " | ".join(b for b in bits if b)[:300]


class Pressure:
    """The workflow body: `rate` reports a second for `seconds`, on a fixed schedule."""

    def __init__(self, rate: float, seconds: float) -> None:
        self.rate = rate
        self.seconds = seconds
        self.started = asyncio.Event()
        self.reports = 0
        self.first_at = 0.0
        self.last_at = 0.0

    async def validate(self, options: Mapping[str, str]) -> dict[str, str]:
        return {"url": options.get("url", ""), "depth": options.get("depth", "quick")}

    async def run(self, options: Mapping[str, str], report: ReportProgress) -> dict[str, Any]:
        self.started.set()
        total = int(self.rate * self.seconds)
        begin = time.monotonic()
        self.first_at = time.monotonic()
        for step in range(1, total + 1):
            report(stage="crunching", progress=step / total * 0.99, detail=f"update {step}")
            self.reports += 1
            delay = begin + step / self.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        self.last_at = time.monotonic()
        return {
            "url": options.get("url", ""),
            "title": "Pressure result",
            "summary": f"{self.reports} progress updates in {self.seconds:g} s",
            "updates": self.reports,
        }


async def run() -> None:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--rate", type=float, default=100.0, help="updates per second")
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    if args.quick:
        args.seconds = 6.0
    quiet_logs(args.log_level)
    min_interval = ProgressSettings().min_interval
    print(machine_line())
    print(
        f"progress: {args.rate:g} updates/s for {args.seconds:g} s, progress.min_interval "
        f"{min_interval:g} s (project default), emulator rate limits on"
    )
    pressure = Pressure(args.rate, args.seconds)
    probe = LagProbe()
    with tempfile.TemporaryDirectory(prefix="bench-progress-") as tmp:
        async with DiscordEmulator(EmulatorConfig()) as emulator:
            settings = bot_settings(
                emulator, Path(tmp) / "data", {"progress": {"min_interval": min_interval}}
            )
            async with running_bot(emulator, settings) as bot:
                bot.workflows["autointel"] = WorkflowSpec(
                    name="autointel",
                    description="reports progress under pressure",
                    validate=pressure.validate,
                    run=pressure.run,
                )
                async with probe.running():
                    handle = await emulator.trigger_command(
                        "autointel", {"url": "http://127.0.0.1/pressure"}, user="alice"
                    )
                    await asyncio.wait_for(pressure.started.wait(), 15)
                    result = await handle.wait_for_message(
                        lambda m: "Pressure result" in text_of(m), timeout_s=args.seconds + 60
                    )
                    await handle.wait_until(
                        lambda h: h.original is not None and "100%" in text_of(h.original),
                        timeout_s=30,
                    )
                final = handle.original
                edits = [
                    r for r in emulator.requests if r.method == "PATCH" and "@original" in r.path
                ]
                on_interaction = [
                    r
                    for r in emulator.requests
                    if f"/webhooks/{emulator.application_id}/" in r.path
                ]
                rate_limited = emulator.stats.rate_limited
                statuses = dict(emulator.stats.by_status)
    if final is None:
        raise MeasureError("the status message never appeared")
    expected = int(args.rate * args.seconds)
    if pressure.reports != expected:
        raise MeasureError(f"the workflow made {pressure.reports} reports, not {expected}")
    # Request times are on the emulator's clock: time.monotonic() (never advanced here).
    during = [r for r in edits if pressure.first_at <= r.at <= pressure.last_at]
    gaps = [b.at - a.at for a, b in itertools.pairwise(during)]
    versions = len(final.history) + 1
    lag = probe.stats()
    print_table(
        f"Progress under pressure: {expected:,} updates in {args.seconds:g} s",
        ["item", "value"],
        [
            ("progress reports made by the workflow", f"{pressure.reports:,}"),
            ("edits of the status message (PATCH @original)", f"{len(edits)}"),
            ("... while the workflow was reporting", f"{len(during)}"),
            (
                "gap between edits while reporting (min / median)",
                f"{min(gaps, default=0):.2f} s / {statistics.median(gaps) if gaps else 0:.2f} s",
            ),
            ("versions of the status message a user saw", f"{versions}"),
            ("requests on the interaction's webhook routes", f"{len(on_interaction)}"),
            ("HTTP statuses answered", ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()))),
            ("429 answers received", f"{rate_limited}"),
            ("status message at the end", shown(final)),
            ("result message", shown(result)),
            ("bot loop lag p99 / max (1 ms probe)", f"{fmt_ms(lag.p99)} / {fmt_ms(lag.max)} ms"),
        ],
    )
    final_ok = "100%" in text_of(final) and "finished" in text_of(final)
    print_targets(
        [
            Target("429s received", "0", f"{rate_limited}", rate_limited == 0),
            Target(
                "final state shown (100%, finished, result posted)",
                "yes",
                "yes" if final_ok else "no",
                final_ok,
            ),
        ]
    )
    print(
        f"ratio: {pressure.reports:,} updates became {len(edits)} edits "
        f"({pressure.reports / max(1, len(edits)):,.0f}:1), {rate_limited} x 429"
    )


if __name__ == "__main__":
    main_guard(run)
