"""Loopback HTTP sinks for the benchmarks, run as a child process by `common.SinkProcess`.

    python -m bench.sinks --count 5 --delay-ms 50

Binds `count` aiohttp servers on 127.0.0.1 (ports chosen by the OS), prints `PORTS p1 p2 ...`, and
answers every request after `delay_ms` with a small JSON body (200). `GET /__count` answers how
many requests that sink has answered. Exits on SIGTERM, or after `--max-s` seconds at most.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from aiohttp import web


class Sink:
    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.count = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/__count":
            return web.json_response({"count": self.count})
        await request.read()
        if self.delay_s > 0:
            await asyncio.sleep(self.delay_s)
        self.count += 1
        return web.json_response({"ok": True, "id": str(self.count)})


async def serve(count: int, delay_s: float, max_s: float) -> None:
    runners: list[web.AppRunner] = []
    ports: list[int] = []
    for _ in range(count):
        sink = Sink(delay_s)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", sink.handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
        await site.start()
        runners.append(runner)
        ports.append(int(runner.addresses[0][1]))
    print("PORTS " + " ".join(map(str, ports)), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    try:
        await asyncio.wait_for(stop.wait(), max_s)
    except TimeoutError:
        print("sinks: --max-s reached, exiting", file=sys.stderr)
    for runner in runners:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=5)
    parser.add_argument("--delay-ms", type=float, default=50.0)
    parser.add_argument("--max-s", type=float, default=1800.0)
    args = parser.parse_args()
    asyncio.run(serve(args.count, args.delay_ms / 1000.0, args.max_s))


if __name__ == "__main__":
    main()
