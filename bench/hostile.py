"""Benchmark 7 — hostile pages: 20 comprehensive /autointel crawls of a site written to hurt a
crawler, at once; the bot's memory and its event-loop lag.

    .venv/bin/python -m bench.hostile [--quick] [--crawls 20] [--depth comprehensive]
                                      [--parsers] [--default-gc]

What runs is the autointel workflow as the bot builds it (`build_autointel`, the project's
default settings but `allow_private_networks`, so 2 page workers, 5 s of CPU per page, 2 MiB
pages), its runs started together as 20 users would, on one event loop with a 1 ms probe. The
site (`notifier.testing.site.HostileSite`, in a child process on 127.0.0.1 so that serving it
costs this loop nothing) has only hostile pages: 1 MiB declared `charset=punycode` (by header,
by `<meta>`), `"<a " * n`, 2 MiB of distinct links, a gzip bomb (64 KB inflating to 64 MiB),
`"<div>" * n`, 2 MiB of distinct words, and one tag of 230,000 distinct attributes (which
libxml2 needs minutes for: the CPU limit stops it); its index links to each, and every link of
the links page leads to another of them. A comprehensive crawl analyses 40 pages: all of them.

Meanwhile a bystander, another user, runs a quick crawl of a small ordinary page (a `DemoSite`
in the same child process) every `--bystander-s` seconds: how long it takes shows whether the
hostile crawls stall everyone else's runs.

Memory: resident set of this process plus its page workers, sampled every 50 ms; the growth is
the peak minus the resident set before the first page (before any worker existed). Lag: the
probe over the whole run. Targets (issue 15): RSS growth < 300 MB, p99 lag < 5 ms (and the
acceptance test's max < 50 ms, reported). After the crawls, each kind is analysed once alone
(wall-clock seconds per page, what a worker did with it); `--parsers` adds the parser
comparison behind `notifier.workflows.analysis`'s choice (each parser on each hostile input in
its own process, 20 s at most; selectolax and resiliparse only if importable).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

from notifier.config import AutointelSettings
from notifier.runner.gc_tuning import tune_garbage_collector
from notifier.testing.site import HITS_PATH, HOSTILE_KINDS
from notifier.workflows import WorkflowFailed
from notifier.workflows.autointel import build_autointel
from notifier.workflows.pagepool import PagePool, PageRejected

from .common import (
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
RUN_LIMIT_S = 1200.0
RSS_TARGET_BYTES = 300 * 1000 * 1000
LAG_P99_TARGET_S = 0.005
LAG_MAX_ACCEPTANCE_S = 0.050
PARSER_LIMIT_S = 20.0


# ---------------------------------------------------------------------------------------------
# The site, in a child process


async def serve_site(max_s: float) -> None:
    """`--serve-site`: HostileSite and a DemoSite on 127.0.0.1; prints `PORTS hostile demo`,
    serves until stdin closes (the benchmark ended or died) or `max_s` passes."""
    from notifier.testing.site import DemoSite, HostileSite

    async with HostileSite() as hostile, DemoSite(pages=3) as demo:
        print(f"PORTS {hostile.port} {demo.port}", flush=True)
        stdin = asyncio.StreamReader()
        await asyncio.get_running_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stdin.read(), max_s)


class SiteProcess:
    """`python -m bench.hostile --serve-site` as a child: the sites, off this process's loop."""

    def __init__(self) -> None:
        self.hostile_port = 0
        self.demo_port = 0
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> SiteProcess:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "bench.hostile", "--serve-site"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=PROJECT_ROOT,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()  # the bodies take about a second to build
        if not line.startswith("PORTS "):
            self.__exit__()
            raise MeasureError("the hostile site did not start (no PORTS line)")
        self.hostile_port, self.demo_port = (int(p) for p in line.split()[1:3])
        return self

    def __exit__(self, *exc: object) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def url(self, kind: str = "") -> str:
        return f"http://127.0.0.1:{self.hostile_port}/{kind}"

    async def hits(self) -> list[str]:
        """The paths the hostile site has served so far."""
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{self.hostile_port}{HITS_PATH}") as response,
        ):
            found = await response.json()
        return [str(path) for path in found]

    @property
    def demo_url(self) -> str:
        return f"http://127.0.0.1:{self.demo_port}/"


# ---------------------------------------------------------------------------------------------
# Memory of this process and its page workers


def _rss_of(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0  # it just exited


@dataclass
class RssSampler:
    """Peak resident set of this process alone and with its page workers, every 50 ms."""

    pool: PagePool
    peak_self: int = 0
    peak_total: int = 0
    peak_workers: int = 0

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[RssSampler]:
        async def sample() -> None:
            for _ in range(1_000_000):  # bounded: about 14 hours
                own = rss_bytes()
                pids = self.pool.pids
                self.peak_self = max(self.peak_self, own)
                self.peak_total = max(self.peak_total, own + sum(_rss_of(p) for p in pids))
                self.peak_workers = max(self.peak_workers, len(pids))
                await asyncio.sleep(0.05)

        task = asyncio.create_task(sample())
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


# ---------------------------------------------------------------------------------------------
# Crawls


@dataclass
class Outcomes:
    crawl_s: list[float] = field(default_factory=list)
    failed_runs: Counter[str] = field(default_factory=Counter)
    pages: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    result_bytes: list[int] = field(default_factory=list)
    bystander_s: list[float] = field(default_factory=list)


def _ignore(**_: Any) -> None:
    return None


async def crawl(spec: Any, url: str, depth: str, outcomes: Outcomes) -> None:
    began = time.perf_counter()
    try:
        result = await spec.run({"url": url, "depth": depth}, _ignore)
    except WorkflowFailed as exc:
        outcomes.failed_runs[exc.message.split(": ", 1)[-1]] += 1
    else:
        import json

        outcomes.result_bytes.append(len(json.dumps(result)))
        for page in result["pages"]:
            outcomes.pages[page["status"]] += 1
        for error in result["errors"]:
            outcomes.errors[error["error"]] += 1
    outcomes.crawl_s.append(time.perf_counter() - began)


async def bystander(
    spec: Any, url: str, every_s: float, stop: asyncio.Event, out: Outcomes
) -> None:
    while not stop.is_set():
        began = time.perf_counter()
        result = await spec.run({"url": url, "depth": "quick"}, _ignore)
        if result["pages_analysed"] != 1:
            raise MeasureError(f"the bystander's crawl analysed {result['pages_analysed']} pages")
        out.bystander_s.append(time.perf_counter() - began)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)


async def one_at_a_time(pool: PagePool, site: SiteProcess) -> list[tuple[str, str, str]]:
    """Each kind fetched raw and analysed alone: seconds in the worker and what came of it."""
    rows = []
    settings = AutointelSettings()
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        for kind in HOSTILE_KINDS:
            async with session.get(site.url(kind)) as response:
                body = await response.read()
                encoding = response.headers.get("Content-Encoding", "").lower()
                charset = response.charset
            url = URL(site.url(kind))
            began = time.perf_counter()
            try:
                summary = await pool.analyse(
                    body,
                    url=url,
                    site=URL(site.url()),
                    charset=charset,
                    encoding=encoding,
                    max_bytes=settings.max_page_bytes,
                )
                outcome = f"analysed: {summary.word_count:,} words, {len(summary.links):,} links"
            except PageRejected as exc:
                outcome = f"failed: {exc.reason}"
            rows.append((kind, f"{len(body):,}", f"{time.perf_counter() - began:.2f}", outcome))
    return rows


# ---------------------------------------------------------------------------------------------
# Parsers compared (--parsers)

_PARSER_INPUTS = {
    "`<a ` run (tag run)": "<a ",
    "`<div>` nesting": "<div>",
    "`<ul><li>` run": "<ul><li>",
    "`<a>` run": "<a>",
    "`<p><b>` run": "<p><b>",
    "links `<a href=/p/N>`": None,
    "one 2 MiB attribute": None,
    "distinct attributes in one tag": None,
    "`<!--` run": "<!--",
    "`</` run": "</",
}


def _parser_input(name: str, size: int) -> str:
    unit = _PARSER_INPUTS[name]
    if unit is not None:
        return unit * (size // len(unit))
    if name.startswith("links"):
        return "".join(f'<a href="/p/{i}">x</a> ' for i in range(size // 24))
    if name.startswith("one"):
        return '<a href="' + "x" * (size - 20) + '">y</a>'
    return "<a" + "".join(f" a{i}=1" for i in range(size // 9)) + ">"


def _run_parser(parser: str, name: str, size: int) -> None:
    """In a child: parse (and walk) one input, print CPU seconds."""
    text = _parser_input(name, size)
    began = time.process_time()
    if parser == "html.parser":
        from html.parser import HTMLParser

        parser_ = HTMLParser()
        parser_.feed(text)
        parser_.close()  # most of the quadratic work waits for the end of input
    elif parser == "lxml (analyse_html)":
        from notifier.workflows.analysis import analyse_html

        analyse_html(text, "http://site.test/")
    elif parser == "selectolax (lexbor)":
        from selectolax.lexbor import LexborHTMLParser

        for _ in LexborHTMLParser(text).root.traverse(include_text=True):
            pass
    elif parser == "resiliparse (lexbor)":
        from resiliparse.parse.html import HTMLTree

        HTMLTree.parse(text)
    print(f"{time.process_time() - began:.2f}")


def parser_table(extra_path: str | None) -> None:
    """The comparison; `extra_path` (for the parse children only) is where the optional parsers
    are installed if not in this environment (`pip install --target DIR selectolax ...`)."""
    env = dict(os.environ)
    if extra_path:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [extra_path, env.get("PYTHONPATH")]))
    parsers = ["html.parser", "lxml (analyse_html)"]
    for optional, module in (
        ("selectolax (lexbor)", "selectolax"),
        ("resiliparse (lexbor)", "resiliparse"),
    ):
        probe = subprocess.run(
            [sys.executable, "-c", f"import {module}"],
            capture_output=True,
            cwd=PROJECT_ROOT,
            env=env,
        )
        if probe.returncode == 0:
            parsers.append(optional)
    size = 2 * 1024 * 1024
    rows = []
    for name in _PARSER_INPUTS:
        row = [name]
        for parser in parsers:
            try:
                done = subprocess.run(
                    [sys.executable, "-m", "bench.hostile", "--parse", parser, name, str(size)],
                    capture_output=True,
                    text=True,
                    timeout=PARSER_LIMIT_S,
                    cwd=PROJECT_ROOT,
                    env=env,
                )
                row.append(done.stdout.strip() or "error")
            except subprocess.TimeoutExpired:
                row.append(f"> {PARSER_LIMIT_S:g}")
        rows.append(row)
    print_table(
        "Parsers on 2 MiB of each hostile input: CPU seconds (parse and walk; lxml: the whole "
        "analysis)",
        ["input", *parsers],
        rows,
    )


# ---------------------------------------------------------------------------------------------


async def run() -> None:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--crawls", type=int, default=20)
    parser.add_argument("--depth", default="comprehensive")
    parser.add_argument("--bystander-s", type=float, default=2.0)
    parser.add_argument("--parsers", action="store_true", help="also compare the parsers")
    parser.add_argument(
        "--parser-path", help="a folder with selectolax/resiliparse for --parsers (not installed)"
    )
    add_gc_flag(parser)
    parser.add_argument(
        "--stalls", action="store_true", help="sample where the loop is when it stalls > 5 ms"
    )
    parser.add_argument("--serve-site", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--parse", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_site:
        await serve_site(max_s=RUN_LIMIT_S + 600)
        return
    if args.parse:
        _run_parser(args.parse[0], args.parse[1], int(args.parse[2]))
        return
    if args.quick:
        args.crawls, args.depth = 4, "deep"
    quiet_logs(args.log_level)
    settings = AutointelSettings(allow_private_networks=True)
    print(machine_line())
    print(
        f"hostile: {args.crawls} {args.depth} crawls at once of a hostile site "
        f"({settings.pages[args.depth]} pages each, up to {settings.max_page_bytes:,} bytes a "
        f"page), {settings.analysis_workers} page workers, {settings.analysis_cpu_seconds:g} s "
        "of CPU per page"
    )
    with SiteProcess() as site:
        pool = PagePool(workers=settings.analysis_workers, page_cpu_s=settings.analysis_cpu_seconds)
        spec = build_autointel(settings, pages=pool)
        outcomes = Outcomes()
        probe, rss = LagProbe(), RssSampler(pool)
        stalls = StallSampler(probe, threshold_s=0.005, interval_s=0.001) if args.stalls else None
        try:
            gc.collect()
            if not args.default_gc:
                tune_garbage_collector()  # as bot.py does once the bot is up
            await asyncio.sleep(0.5)
            baseline = rss_bytes()
            stop = asyncio.Event()
            began = time.perf_counter()
            async with probe.running(), rss.running():
                with stalls or contextlib.nullcontext():
                    watcher = asyncio.create_task(
                        bystander(spec, site.demo_url, args.bystander_s, stop, outcomes)
                    )
                    async with asyncio.timeout(RUN_LIMIT_S):
                        await asyncio.gather(
                            *(
                                crawl(spec, site.url(), args.depth, outcomes)
                                for _ in range(args.crawls)
                            )
                        )
                        stop.set()
                        await watcher
            elapsed_s = time.perf_counter() - began
            alone = await one_at_a_time(pool, site)
        except TimeoutError:
            raise MeasureError(f"the crawls did not end within {RUN_LIMIT_S:g} s") from None
        finally:
            await pool.close()

    if len(outcomes.crawl_s) != args.crawls:
        raise MeasureError(f"{len(outcomes.crawl_s)} of {args.crawls} crawls ended")
    lag = probe.stats()
    growth_total = rss.peak_total - baseline
    growth_self = rss.peak_self - baseline
    print_table(
        f"Hostile crawls: {args.crawls} x {args.depth}, {elapsed_s:.1f} s in all",
        ["measure", "value"],
        [
            (
                "crawls completed / failed",
                f"{len(outcomes.result_bytes)} / {sum(outcomes.failed_runs.values())}",
            ),
            (
                "crawl duration p50 / max",
                f"{percentile(outcomes.crawl_s, 50):.1f} s / {max(outcomes.crawl_s):.1f} s",
            ),
            ("pages by status", ", ".join(f"{k} {v:,}" for k, v in outcomes.pages.items())),
            *[(f"page error: {reason}", f"{n:,}") for reason, n in outcomes.errors.items()],
            *[(f"run failed: {reason}", f"{n:,}") for reason, n in outcomes.failed_runs.items()],
            ("stored result size, max", f"{max(outcomes.result_bytes or [0]):,} bytes"),
            (
                "page worker processes started (at most at once)",
                f"{pool.started} ({rss.peak_workers})",
            ),
            ("RSS before the first page", f"{baseline / 1e6:,.0f} MB"),
            (
                "peak RSS, this process",
                f"{rss.peak_self / 1e6:,.0f} MB (+{growth_self / 1e6:,.0f} MB)",
            ),
            (
                "peak RSS, with the page workers",
                f"{rss.peak_total / 1e6:,.0f} MB (+{growth_total / 1e6:,.0f} MB)",
            ),
            (
                "loop lag p50 / p99 / max (probe samples)",
                f"{fmt_ms(lag.p50)} / {fmt_ms(lag.p99)} / {fmt_ms(lag.max)} ms ({lag.samples:,})",
            ),
            (
                f"bystander's quick crawl, every {args.bystander_s:g} s: p50 / max "
                f"(x{len(outcomes.bystander_s)})",
                f"{percentile(outcomes.bystander_s, 50) * 1e3:,.0f} / "
                f"{max(outcomes.bystander_s or [0.0]) * 1e3:,.0f} ms",
            ),
        ],
    )
    if stalls is not None:
        print_table(
            "Where the loop was while the probe was > 5 ms late (--stalls)",
            ["seconds", "innermost frames (project or library)"],
            stalls.top(),
        )
    print_table(
        "Each hostile page alone, through a page worker (after the crawls)",
        ["page", "bytes served", "seconds", "outcome"],
        alone,
    )
    if args.parsers:
        parser_table(args.parser_path)
    print_targets(
        [
            Target(
                "RSS growth, bot and page workers",
                "< 300 MB",
                f"{growth_total / 1e6:,.0f} MB",
                growth_total < RSS_TARGET_BYTES,
            ),
            Target("loop lag p99", "< 5 ms", f"{fmt_ms(lag.p99)} ms", lag.p99 < LAG_P99_TARGET_S),
            Target(
                "loop lag max (the acceptance test's bound)",
                "< 50 ms",
                f"{fmt_ms(lag.max)} ms",
                lag.max < LAG_MAX_ACCEPTANCE_S,
            ),
        ]
    )
    print(
        f"ratio: RSS growth {growth_total / 1e6:,.0f} MB = "
        f"{growth_total / RSS_TARGET_BYTES:.2f}x the 300 MB budget; p99 lag {fmt_ms(lag.p99)} ms "
        f"= {lag.p99 / LAG_P99_TARGET_S:.2f}x the 5 ms budget"
    )


if __name__ == "__main__":
    main_guard(run)
