"""Benchmark 1 — fanout: 200 workflow completions x 5 loopback HTTP sinks (1,000 deliveries).

    .venv/bin/python -m bench.fanout [--quick] [--completions 200] [--sinks 5] [--delay-ms 50]

The sinks run in a child process and answer every request after 50 ms. In one run, the same 200
notices go to the same 5 URLs through:

- ours, 5 notifiers x 1 URL: `Fanout.emit` for every completion at once, each notice one outbox
  row per notifier (1,000 rows, each committed pending, sent natively by the `apprise` plugin's
  json:// path, then committed sent); the clock stops when every row is `sent`;
- ours, 1 notifier x 5 URLs: the same through one `apprise` notifier (200 rows, 5 targets each,
  every target's result stored in the row);
- plain aiohttp: 1,000 concurrent POSTs on one default `ClientSession` (the practical limit);
- Apprise `async_notify`: 200 concurrent calls on one Apprise object holding the 5 URLs;
- sync loop: 200 sequential `Apprise.notify` calls on the event loop (the seed's style).

The fast variants run `--repeat` times (interleaved) and report the median; the Apprise ones once.
Each row also shows the worst event-loop lag seen by a 1 ms probe during that variant. Every
variant must have delivered all 1,000 requests (counted by the sinks) and, for ours, every delivery
must be recorded `sent` in the outbox, or the script exits 1.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from notifier.config import Settings
from notifier.events import Event, Notice
from notifier.fanout.dispatch import Fanout
from notifier.fanout.outbox import OutboxStatus
from notifier.plugins import PluginContext

from .common import (
    LagProbe,
    MeasureError,
    SinkProcess,
    Target,
    base_parser,
    machine_line,
    main_guard,
    print_table,
    print_targets,
    quiet_logs,
)

# Every variant gets at most this long before the run counts as "could not measure".
VARIANT_LIMIT_S = 300.0


@dataclass
class Outcome:
    name: str
    seconds: list[float]
    deliveries: int
    recorded: str
    max_lag_s: float

    @property
    def median_s(self) -> float:
        return statistics.median(self.seconds)


def make_notices(count: int) -> list[Notice]:
    return [
        Notice(
            event=Event.COMPLETED,
            workflow_id=uuid.uuid4().hex,
            user_id=1000 + i % 50,
            user_name=f"user{i % 50}",
            command="autointel",
            guild_id=42,
            channel_id=4242,
            options={"url": f"https://example.org/page/{i}", "depth": "quick"},
            summary="3 pages analysed; 12 links; title 'Example Domain'.",
            duration_s=12.5 + i % 7,
        )
        for i in range(count)
    ]


def title_body(notice: Notice) -> tuple[str, str]:
    fields = notice.template_fields()
    return (
        f"Completed: {fields['command']}",
        f"{fields['command']} for {fields['user']} completed in {fields['duration']}. "
        f"{fields['summary']}",
    )


def settings_for(root: Path, urls: Sequence[str], *, one_notifier: bool) -> Settings:
    if one_notifier:
        notifiers = [
            {"name": "all", "plugin": "apprise", "on": ["completed"], "options": {"urls": urls}}
        ]
    else:
        notifiers = [
            {"name": f"sink{i}", "plugin": "apprise", "on": ["completed"], "options": {"urls": [u]}}
            for i, u in enumerate(urls)
        ]
    return Settings.model_validate(
        {
            "storage": {"path": str(root / "data")},
            "fanout": {"plugin_dirs": [], "outbox_path": str(root / "outbox.sqlite3")},
            "notifiers": notifiers,
        }
    )


async def timed_variant(
    sinks: SinkProcess, expected: int, work: Callable[[], Coroutine[Any, Any, str]]
) -> tuple[float, float, str]:
    """Run `work` under the lag probe; check the sinks got `expected` more requests."""
    before = await asyncio.to_thread(sinks.received)
    probe = LagProbe()
    async with probe.running():
        start = time.perf_counter()
        recorded = await asyncio.wait_for(work(), VARIANT_LIMIT_S)
        elapsed = time.perf_counter() - start
    got = await asyncio.to_thread(sinks.received) - before
    if got != expected:
        raise MeasureError(f"the sinks answered {got} requests, expected {expected}")
    return elapsed, probe.stats().max, recorded


# -- the variants ---------------------------------------------------------------------------------


async def ours(
    sinks: SinkProcess, notices: Sequence[Notice], *, one_notifier: bool
) -> tuple[float, float, str]:
    urls = [u.replace("http://", "json://") for u in sinks.urls()]
    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp:
        settings = settings_for(Path(tmp), urls, one_notifier=one_notifier)
        executor = concurrent.futures.ThreadPoolExecutor(settings.fanout.executor_workers)
        async with aiohttp.ClientSession() as http:
            fanout = await Fanout.open(settings, PluginContext(http=http, executor=executor))
            try:
                rows_expected = len(notices) * (1 if one_notifier else len(urls))

                async def work() -> str:
                    await asyncio.gather(*(fanout.emit(n) for n in notices))
                    # Everything was dispatched by emit; wait until every row left `pending`.
                    while await fanout.outbox.count(OutboxStatus.PENDING):
                        await fanout.drain(timeout_s=VARIANT_LIMIT_S)
                        await asyncio.sleep(0.001)
                    return await check_outbox(fanout, rows_expected, len(urls), one_notifier)

                result = await timed_variant(sinks, len(notices) * len(urls), work)
            finally:
                await fanout.close()
                executor.shutdown(wait=False, cancel_futures=True)
    return result


async def check_outbox(fanout: Fanout, rows_expected: int, urls: int, one_notifier: bool) -> str:
    rows = await fanout.outbox.rows(limit=None)
    sent = [r for r in rows if r.status is OutboxStatus.SENT]
    if len(rows) != rows_expected or len(sent) != rows_expected:
        raise MeasureError(f"outbox holds {len(sent)}/{len(rows)} sent rows, not {rows_expected}")
    targets = sum(
        1
        for r in sent
        for t in r.targets.values()
        if t.get("status") == "sent" and t.get("settled")
    )
    if one_notifier and targets != rows_expected * urls:
        raise MeasureError(f"outbox records {targets} sent targets, not {rows_expected * urls}")
    if one_notifier:
        return f"{len(sent)} rows sent, {targets} targets sent"
    return f"{len(sent)} rows sent"


async def plain_aiohttp(sinks: SinkProcess, notices: Sequence[Notice]) -> tuple[float, float, str]:
    urls = sinks.urls()

    async def post(http: aiohttp.ClientSession, url: str, notice: Notice) -> bool:
        title, body = title_body(notice)
        payload = {"version": "1.0", "title": title, "message": body, "type": "success"}
        async with http.post(url, json=payload) as response:
            await response.read()
            return response.status == 200

    async def work() -> str:
        async with aiohttp.ClientSession() as http:
            oks = await asyncio.gather(*(post(http, u, n) for n in notices for u in urls))
        return f"{sum(oks)} answered 200 (nothing stored)"

    return await timed_variant(sinks, len(notices) * len(urls), work)


def apprise_object(urls: Sequence[str]) -> Any:
    import apprise

    apobj = apprise.Apprise()
    for url in urls:
        if not apobj.add(url):
            raise MeasureError(f"Apprise refused {url}")
    return apobj


def delivered(result: Any) -> int:
    return sum(1 for per_url in result if bool(per_url))


async def apprise_async(sinks: SinkProcess, notices: Sequence[Notice]) -> tuple[float, float, str]:
    apobj = apprise_object([u.replace("http://", "json://") for u in sinks.urls()])

    async def one(notice: Notice) -> int:
        title, body = title_body(notice)
        return delivered(await apobj.async_notify(body=body, title=title, notify_type="success"))

    async def work() -> str:
        counts = await asyncio.gather(*(one(n) for n in notices))
        return f"{sum(counts)} reported sent (nothing stored)"

    return await timed_variant(sinks, len(notices) * len(sinks.ports), work)


async def apprise_sync_loop(
    sinks: SinkProcess, notices: Sequence[Notice]
) -> tuple[float, float, str]:
    apobj = apprise_object([u.replace("http://", "json://") for u in sinks.urls()])

    async def work() -> str:
        count = 0
        for notice in notices:
            title, body = title_body(notice)
            # The seed's style: a blocking call straight on the event loop.
            count += delivered(apobj.notify(body=body, title=title, notify_type="success"))
        return f"{count} reported sent (nothing stored)"

    return await timed_variant(sinks, len(notices) * len(sinks.ports), work)


# -- the run --------------------------------------------------------------------------------------


async def run() -> None:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--completions", type=int, default=200)
    parser.add_argument("--sinks", type=int, default=5)
    parser.add_argument("--delay-ms", type=float, default=50.0)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each fast variant")
    args = parser.parse_args()
    if args.quick:
        args.completions, args.repeat = 40, 1
    quiet_logs(args.log_level)
    import logging

    logging.getLogger("apprise").setLevel(logging.ERROR)

    notices_count, sink_count = args.completions, args.sinks
    deliveries = notices_count * sink_count
    print(machine_line())
    print(
        f"fanout: {notices_count} completions x {sink_count} sinks answering after "
        f"{args.delay_ms:g} ms = {deliveries} deliveries; fast variants run {args.repeat}x "
        "(median shown)"
    )
    outcomes: dict[str, Outcome] = {}

    def add(name: str, result: tuple[float, float, str]) -> None:
        seconds, lag, recorded = result
        if name in outcomes:
            outcomes[name].seconds.append(seconds)
            outcomes[name].max_lag_s = max(outcomes[name].max_lag_s, lag)
        else:
            outcomes[name] = Outcome(name, [seconds], deliveries, recorded, lag)
        print(f"  {name}: {seconds:.3f} s", flush=True)

    with SinkProcess(sink_count, args.delay_ms) as sinks:
        # Warm-up (imports, first connections, plugin discovery), not reported.
        await ours(sinks, make_notices(5), one_notifier=False)
        await plain_aiohttp(sinks, make_notices(5))
        for _ in range(args.repeat):
            add("plain aiohttp (limit)", await plain_aiohttp(sinks, make_notices(notices_count)))
            add(
                "ours: 5 notifiers x 1 URL",
                await ours(sinks, make_notices(notices_count), one_notifier=False),
            )
            add(
                "ours: 1 notifier x 5 URLs",
                await ours(sinks, make_notices(notices_count), one_notifier=True),
            )
        add("Apprise async_notify", await apprise_async(sinks, make_notices(notices_count)))
        add("sync notify loop (seed)", await apprise_sync_loop(sinks, make_notices(notices_count)))

    limit = outcomes["plain aiohttp (limit)"].median_s
    apprise_s = outcomes["Apprise async_notify"].median_s
    rows = []
    for outcome in outcomes.values():
        runs = ", ".join(f"{s:.2f}" for s in outcome.seconds)
        rows.append(
            (
                outcome.name,
                f"{outcome.median_s:.3f}",
                runs,
                f"{outcome.deliveries / outcome.median_s:,.0f}",
                f"{outcome.median_s / limit:.2f}x",
                f"{apprise_s / outcome.median_s:.1f}x",
                f"{outcome.max_lag_s * 1e3:,.1f}",
                outcome.recorded,
            )
        )
    print_table(
        f"Fanout: {deliveries} deliveries ({notices_count} completions x {sink_count} sinks, "
        f"{args.delay_ms:g} ms each)",
        [
            "variant",
            "seconds",
            "runs (s)",
            "deliveries/s",
            "vs aiohttp",
            "faster than Apprise",
            "max loop lag ms",
            "outbox",
        ],
        rows,
    )
    main = outcomes["ours: 5 notifiers x 1 URL"]
    alt = outcomes["ours: 1 notifier x 5 URLs"]
    targets = [
        Target(
            "ours (5x1) vs Apprise async_notify",
            ">= 10x faster",
            f"{apprise_s / main.median_s:.1f}x",
            apprise_s / main.median_s >= 10,
        ),
        Target(
            "ours (5x1) vs plain aiohttp",
            "<= 1.5x its time",
            f"{main.median_s / limit:.2f}x",
            main.median_s / limit <= 1.5,
        ),
        Target(
            "ours (1x5) vs Apprise async_notify",
            ">= 10x faster",
            f"{apprise_s / alt.median_s:.1f}x",
            apprise_s / alt.median_s >= 10,
        ),
        Target(
            "ours (1x5) vs plain aiohttp",
            "<= 1.5x its time",
            f"{alt.median_s / limit:.2f}x",
            alt.median_s / limit <= 1.5,
        ),
        Target("every delivery recorded in the outbox", "all sent", "all sent", True),
    ]
    print_targets(targets)
    print(
        f"ratio: ours (5 notifiers x 1 URL) is {apprise_s / main.median_s:.1f}x faster than "
        f"Apprise async_notify and takes {main.median_s / limit:.2f}x plain aiohttp's time "
        f"(1 notifier x 5 URLs: {apprise_s / alt.median_s:.1f}x, {alt.median_s / limit:.2f}x)"
    )


if __name__ == "__main__":
    main_guard(run)
