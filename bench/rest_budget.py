"""Benchmark — one REST budget for every process of a bot: 2,000 messages from 8 and 20 processes.

    .venv/bin/python -m bench.rest_budget [--quick] [--messages 2000] [--processes 8 20]
                                          [--rate 45] [--burst 1] [--budget-only]

Discord allows a bot 50 requests per second in all, however many processes share its token;
nextcord's own limiter counts one process (50/s each). Here N processes of one bot (real nextcord
3.2 clients, each its own Python process) post `--messages` channel messages in all, as fast as
they can (every message of a process at once, `asyncio.gather`), to the loopback Discord
emulator with Discord's global limit (50 requests in any second, per bot token, 429 with
``global: true`` beyond it). Each process posts round-robin to ten channels of its own.

The per-channel limit (5 messages per 5 s) is off here: Discord names a route's bucket without
its channel (``X-RateLimit-Bucket``), and nextcord 3.2 keys its buckets by that name alone, so
once it has learnt it, one process sends at most 5 messages per 5 s over *all* its channels (12
messages to 12 channels took 10 s here). With it on, every process would crawl at 1 message/s
and the global limit would never be reached; that is nextcord's limit, not the budget's.

Each N runs twice, on a fresh emulator:

- without the shared budget: nextcord's per-process limiter only (what a gateway and workers
  do today);
- with it: `notifier.discord.rest_budget` (a token bucket row in PostgreSQL, `--rate` per second,
  `--burst`), installed on each client with `install_rest_budget`, so every bot-token request,
  the login included, waits for its turn.

The processes log in, say READY, and all start on one GO. Counted on the emulator, from GO:
requests answered 429 (global and per channel), messages posted, the most requests it accepted
in any one second, and the throughput (messages posted / seconds from GO to the last one); from
the processes: messages nextcord gave up on (5 attempts), and with the budget the most turns it
handed out in any one second (on the database's clock: at most rate + burst by construction).
The two "most in 1 s" columns differ by the jitter between a turn and the request's arrival
(waking up, nextcord, the loopback network, the emulator's own loop, all on shared cores); the
longest stall of the emulator's loop (a 1 ms probe on it) is shown beside them. PostgreSQL is found or started as in
the tests (`notifier.testing.postgres`), in a database of its own dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

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

PROJECT_ROOT = Path(__file__).resolve().parent.parent
POST_MESSAGE: Final = "/channels/{channel_id}/messages"
TOKEN_ENV: Final = "BENCH_BOT_TOKEN"
CHANNELS_PER_PROCESS: Final = 10
# Only keep a broken run from hanging.
START_LIMIT_S: Final = 180.0
RUN_LIMIT_S: Final = 600.0


# ---------------------------------------------------------------------------------------------
# A child: one process of the bot


async def child(args: argparse.Namespace) -> None:
    """Log in, say READY, wait for GO on stdin, post every message at once, print a summary."""
    import nextcord

    from notifier.discord.compat import before_bot_requests, set_api_base
    from notifier.discord.rest_budget import RestBudget, RestBudgetSettings

    logging.getLogger("nextcord").setLevel(logging.ERROR)  # one warning per 429 otherwise
    token = os.environ[TOKEN_ENV]
    set_api_base(args.api)
    channels = [int(c) for c in args.channels.split(",")]
    client = nextcord.Client()
    budget: RestBudget | None = None
    remove: Callable[[], None] | None = None
    turns: list[float] = []  # when each request's turn came, on the database's clock
    if args.dsn:
        settings = RestBudgetSettings(rate_per_s=args.rate, burst=args.burst)
        budget = await RestBudget.open(args.dsn, token, settings)
        shared = budget

        async def wait() -> None:  # install_rest_budget's, keeping the turns it is given
            turns.append((await shared.take()).at.timestamp())

        remove = before_bot_requests(client, wait)
    outcomes: list[object] = []
    try:
        await client.login(token)
        print("READY", flush=True)
        await asyncio.to_thread(sys.stdin.readline)  # GO
        outcomes = await asyncio.gather(
            *(
                client.http.send_message(channels[i % len(channels)], f"{args.prefix} {i}")
                for i in range(args.count)
            ),
            return_exceptions=True,
        )
    finally:
        await client.close()
        if remove is not None:
            remove()
        if budget is not None:
            await budget.close()
    failed = [type(o).__name__ for o in outcomes if isinstance(o, BaseException)]
    summary = {"posted": len(outcomes) - len(failed), "gave_up": len(failed), "turns": turns}
    print(json.dumps(summary), flush=True)


# ---------------------------------------------------------------------------------------------
# The parent: the emulator, PostgreSQL, the runs


@dataclass(frozen=True)
class RunResult:
    processes: int
    budget: bool
    messages: int
    posted: int
    gave_up: int
    global_429: int
    route_429: int
    most_in_one_s: int
    most_turns_in_one_s: int
    seconds: float
    emulator_lag_max_s: float

    @property
    def per_s(self) -> float:
        return self.posted / self.seconds if self.seconds > 0 else 0.0


@contextlib.asynccontextmanager
async def postgres_database() -> AsyncIterator[str]:
    """A fresh database on the server the tests would use (found, or a throwaway cluster)."""
    try:
        from notifier.testing.postgres import find_postgres, fresh_database
    except ImportError as exc:
        raise MeasureError(f"psycopg is not installed ({exc}): pip install -e '.[dev]'") from exc
    with find_postgres() as found:
        if found.server is None:
            raise MeasureError(f"no PostgreSQL server: {found.reason}")
        with fresh_database(found.server, prefix="bench_rest_budget_") as dsn:
            yield dsn


def _most_in_any_window(times: Sequence[float], window_s: float) -> int:
    ordered = sorted(times)
    return max(
        (bisect.bisect_left(ordered, t + window_s) - i for i, t in enumerate(ordered)), default=0
    )


async def _read_line(stream: asyncio.StreamReader, what: str) -> str:
    line = await stream.readline()
    if not line:
        raise MeasureError(f"a sender process exited before {what}")
    return line.decode().strip()


async def one_run(
    processes: int, messages: int, dsn: str | None, rate: float, burst: float
) -> RunResult:
    from notifier.testing import DiscordEmulator, EmulatorConfig

    per_process = [
        messages // processes + (1 if i < messages % processes else 0) for i in range(processes)
    ]
    # Discord's global limit; no per-channel limits (the module docstring says why).
    async with DiscordEmulator(EmulatorConfig(rate_limits={})) as emulator:
        own_channels = [
            [emulator.add_channel(f"p{p}-c{c}").id for c in range(CHANNELS_PER_PROCESS)]
            for p in range(processes)
        ]
        env = {**os.environ, TOKEN_ENV: emulator.bot_token, "PYTHONUNBUFFERED": "1"}
        env.pop("DISCORD_TOKEN", None)
        budget_args = ["--rate", str(rate), "--burst", str(burst)] + (["--dsn", dsn] if dsn else [])
        children = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.rest_budget",
                "--child",
                "--api",
                emulator.api_base,
                "--channels",
                ",".join(str(c) for c in own_channels[p]),
                "--count",
                str(per_process[p]),
                "--prefix",
                f"p{p}",
                *budget_args,
                cwd=PROJECT_ROOT,
                env=env,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            for p in range(processes)
        ]
        probe = LagProbe()  # the emulator's loop: a stall there bunches requests that came apart
        try:
            async with asyncio.timeout(START_LIMIT_S):
                for proc in children:
                    assert proc.stdout is not None
                    ready = await _read_line(proc.stdout, "READY")
                    if ready != "READY":
                        raise MeasureError(f"a sender said {ready!r} instead of READY")
            go_at = time.monotonic()  # the emulator's clock (never advanced here)
            for proc in children:
                assert proc.stdin is not None
                proc.stdin.write(b"GO\n")
                await proc.stdin.drain()
            async with asyncio.timeout(RUN_LIMIT_S), probe.running():
                summaries = []
                for proc in children:
                    assert proc.stdout is not None
                    summaries.append(json.loads(await _read_line(proc.stdout, "its summary")))
                    await proc.wait()
        finally:
            for proc in children:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
        after_go = [r for r in emulator.requests if r.at >= go_at]
        posts = [r for r in after_go if r.method == "POST" and r.route == POST_MESSAGE]
        accepted = [r.at for r in after_go if r.auth == "bot" and r.status != 429]
        limited = [r for r in after_go if r.status == 429]
        global_429 = sum(
            1 for r in limited if isinstance(r.response, dict) and r.response.get("global")
        )
        arrived = sum(
            1
            for channel_list in own_channels
            for channel in channel_list
            for message in emulator.channel_messages(channel)
            if not message.deleted
        )
        posted_at = [r.at for r in posts if r.status == 200]
    if arrived != sum(s["posted"] for s in summaries):
        raise MeasureError(
            f"the emulator holds {arrived} messages, the senders say they posted "
            f"{sum(s['posted'] for s in summaries)}"
        )
    return RunResult(
        processes=processes,
        budget=dsn is not None,
        messages=messages,
        posted=arrived,
        gave_up=sum(s["gave_up"] for s in summaries),
        global_429=global_429,
        route_429=len(limited) - global_429,
        most_in_one_s=_most_in_any_window(accepted, 1.0),
        most_turns_in_one_s=_most_in_any_window([t for s in summaries for t in s["turns"]], 1.0),
        seconds=(max(posted_at) - go_at) if posted_at else 0.0,
        emulator_lag_max_s=probe.stats().max,
    )


async def run() -> None:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--messages", type=int, default=2000, help="messages in all, per run")
    parser.add_argument("--processes", type=int, nargs="+", default=[8, 20])
    parser.add_argument("--rate", type=float, default=None, help="budget per second (45)")
    parser.add_argument("--burst", type=float, default=None, help="budget burst (1)")
    parser.add_argument(
        "--budget-only", action="store_true", help="skip the runs without the shared budget"
    )
    args = parser.parse_args()
    from notifier.discord.rest_budget import DEFAULT_BURST, DEFAULT_RATE_PER_S

    rate = DEFAULT_RATE_PER_S if args.rate is None else args.rate
    burst = DEFAULT_BURST if args.burst is None else args.burst
    if args.quick:
        args.messages = 400
        args.processes = [4]
    quiet_logs(args.log_level)
    print(machine_line())
    print(
        f"rest_budget: {args.messages:,} channel messages per run from "
        f"{' and '.join(str(p) for p in args.processes)} processes; emulator with Discord's "
        f"global limit (50 requests/s per bot, per-channel limits off); shared budget "
        f"{rate:g}/s, burst {burst:g} (at most {rate + burst:g} in any second)"
    )
    results: list[RunResult] = []
    async with postgres_database() as dsn:
        for processes in args.processes:
            for with_budget in (True,) if args.budget_only else (False, True):
                print(
                    f"... {processes} processes, "
                    f"{'with the shared budget' if with_budget else 'nextcord alone'}",
                    flush=True,
                )
                results.append(
                    await one_run(
                        processes, args.messages, dsn if with_budget else None, rate, burst
                    )
                )
    print_table(
        f"{args.messages:,} messages per run, every process posting as fast as it can",
        [
            "processes",
            "REST pacing",
            "429 global",
            "429 channel",
            "posted",
            "gave up",
            "most turns in 1 s",
            "most accepted in 1 s",
            "seconds",
            "messages/s",
            "emulator loop lag max",
        ],
        [
            (
                r.processes,
                f"shared budget {rate:g}/s" if r.budget else "nextcord alone (50/s each)",
                f"{r.global_429:,}",
                f"{r.route_429:,}",
                f"{r.posted:,}",
                f"{r.gave_up:,}",
                r.most_turns_in_one_s if r.budget else "-",
                r.most_in_one_s,
                f"{r.seconds:.1f}",
                f"{r.per_s:.1f}",
                f"{fmt_ms(r.emulator_lag_max_s, 0)} ms",
            )
            for r in results
        ],
    )
    with_budget = [r for r in results if r.budget]
    targets = [
        Target(
            f"429s with the shared budget, {r.processes} processes",
            "0",
            f"{r.global_429 + r.route_429}",
            r.global_429 + r.route_429 == 0 and r.posted == r.messages,
        )
        for r in with_budget
    ]
    targets += [
        Target(
            f"throughput with the budget, {r.processes} processes",
            f">= 95% of {rate:g}/s",
            f"{r.per_s:.1f}/s ({r.per_s / rate:.0%})",
            r.per_s >= 0.95 * rate,
        )
        for r in with_budget
    ]
    print_targets(targets)
    parts = [
        f"{r.processes} processes: {r.global_429 + r.route_429:,} x 429 "
        f"{'with the budget' if r.budget else 'without'}"
        + (f" ({r.per_s:.1f} msg/s of {rate:g})" if r.budget else "")
        for r in results
    ]
    print("ratio: " + "; ".join(parts))


def main() -> None:
    if "--child" in sys.argv:
        parser = argparse.ArgumentParser()
        parser.add_argument("--child", action="store_true")
        parser.add_argument("--api", required=True)
        parser.add_argument("--channels", required=True)
        parser.add_argument("--count", type=int, required=True)
        parser.add_argument("--prefix", required=True)
        parser.add_argument("--dsn")
        parser.add_argument("--rate", type=float, required=True)
        parser.add_argument("--burst", type=float, required=True)
        asyncio.run(child(parser.parse_args()))
        return
    main_guard(run)


if __name__ == "__main__":
    main()
