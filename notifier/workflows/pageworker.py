"""The page worker: a child process that decodes and analyses web pages for the bot, one at a
time, under limits a thread in the bot could never be put under.

    python -P -m notifier.workflows.pageworker --fd N --memory-bytes M   (started by `pagepool`)

Why a process: the bot's event loop also runs the gateway heartbeat and every other user's
workflow, and a page is written by a stranger. In a thread, a page that costs minutes of CPU
(libxml2 is quadratic in the number of distinct attributes of one tag: 32,000 take 1 s, 233,000
take 164 s) would hold the GIL in turn with the loop, could not be stopped by `/workflow cancel`
(a thread cannot be cancelled) and would tie up the default thread pool that DNS lookups and file
reads share. Here a page gets, each:

- CPU time: `ITIMER_PROF` raises in the analysis after `cpu_s` seconds of CPU (the page fails,
  the worker lives on); `ITIMER_VIRTUAL` CPU_KILL_GRACE_S later ends a worker stuck in C code
  (SIGVTALRM), RLIMIT_CPU a second after that (SIGXCPU); the bot reports the same limit;
- memory: RLIMIT_AS (`--memory-bytes`) for the worker's whole address space; a page past it
  fails with MemoryError and the worker retires, and after every page freed memory goes back to
  the system (`malloc_trim`), a worker still above RETIRE_RSS_BYTES retiring too;
- priority: the worker runs under SCHED_IDLE (Linux; elsewhere at NICENESS): when the bot's
  loop wakes it takes the core at once, even from a worker in the middle of a page (with nice 10
  alone the probe of the hostile benchmark saw 8-15 ms stalls, with SCHED_IDLE 7-8 ms on a host
  busy with other tests, none of it in the bot's code). The price: on a host whose every core is
  busy with other work, pages wait, up to their wall-clock limit, rather than the bot;
- wall-clock time and cancellation are the bot's side (`pagepool` kills the worker).

Inflating (gzip, deflate) happens here too, capped at the page size limit: aiohttp inflated a
2 MiB gzip page in one callback on the loop (7 ms), and a bomb of any ratio stops at the cap.

The worker's environment holds no secret (the bot passes PATH, the locale and the package's
PYTHONPATH only), its stdin/stdout are /dev/null, and it talks to the bot over one socket whose
frames are in `pagewire`; replies are JSON. It exits when the bot closes the socket (or dies).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import math
import os
import resource
import signal
import socket
import sys
import zlib
from collections.abc import Mapping
from types import FrameType
from typing import Any, Final

import orjson
from yarl import URL

from .analysis import analyse_html
from .charsets import decode_page
from .pagewire import CONTENT_ENCODINGS, READY, REPLY_HEAD, REQUEST_HEAD, PageSummary, summarise

__all__ = [
    "CPU_KILL_GRACE_S",
    "NICENESS",
    "RETIRE_RSS_BYTES",
    "PageTooLarge",
    "analyse_page",
    "inflate",
    "main",
    "serve",
]

#: Seconds of CPU past `cpu_s` after which the kernel ends a worker the exception could not stop.
CPU_KILL_GRACE_S: Final = 0.5
NICENESS: Final = 10
#: A worker whose resident memory stays above this after a page (and malloc_trim) retires.
RETIRE_RSS_BYTES: Final = 256 * 1024 * 1024
#: A request header (URL, site, charset) longer than this is not from the bot.
_MAX_HEADER_BYTES: Final = 16 * 1024


class _OverBudget(Exception):
    """The page used its CPU time (raised by the SIGPROF handler)."""


class PageTooLarge(Exception):
    """The page inflates past the size limit (a gzip bomb, or just a big page compressed)."""


_in_page = False


def _on_cpu_timer(signum: int, frame: FrameType | None) -> None:
    if _in_page:
        raise _OverBudget


def _limit_process(memory_bytes: int) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = memory_bytes if hard == resource.RLIM_INFINITY else min(memory_bytes, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    with contextlib.suppress(OSError):
        os.nice(NICENESS)
    with contextlib.suppress(OSError, AttributeError):  # Linux only; niceness stays elsewhere
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGPROF, _on_cpu_timer)


def _arm_cpu_limit(cpu_s: float) -> None:
    """Three clocks on this page's CPU time: at `cpu_s` the SIGPROF handler raises in Python
    code; at `cpu_s + CPU_KILL_GRACE_S` of user time SIGVTALRM (default action) ends a worker
    the exception could not reach, deep in C (libxml2's attribute run); RLIMIT_CPU (whole
    seconds, user and system time) is the last word."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used_s = usage.ru_utime + usage.ru_stime
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    backstop = math.ceil(used_s + cpu_s + CPU_KILL_GRACE_S) + 1
    if hard != resource.RLIM_INFINITY:
        backstop = min(backstop, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (backstop, hard))
    signal.setitimer(signal.ITIMER_VIRTUAL, cpu_s + CPU_KILL_GRACE_S)
    signal.setitimer(signal.ITIMER_PROF, cpu_s)


def _disarm_cpu_limit() -> None:
    global _in_page
    _in_page = False
    signal.setitimer(signal.ITIMER_PROF, 0)
    signal.setitimer(signal.ITIMER_VIRTUAL, 0)


def inflate(body: bytes, encoding: str, max_bytes: int) -> bytes:
    """The page as served before its Content-Encoding (gzip or deflate), never inflating more
    than `max_bytes + 1` bytes: PageTooLarge past `max_bytes`, zlib.error for damaged data."""
    if encoding not in CONTENT_ENCODINGS:
        raise ValueError(f"unsupported content encoding {encoding[:20]!r}")
    if encoding in ("", "identity"):
        return body
    if encoding in ("gzip", "x-gzip"):
        wbits = 16 + zlib.MAX_WBITS
    else:  # deflate: zlib-wrapped as the standard says, raw as some servers send it
        wbits = zlib.MAX_WBITS if body[:1] and body[0] & 0x0F == 8 else -zlib.MAX_WBITS
    parts: list[bytes] = []
    size = 0
    rest = body
    while rest:  # gzip members may be concatenated
        inflater = zlib.decompressobj(wbits)
        part = inflater.decompress(rest, max_bytes + 1 - size)
        size += len(part)
        parts.append(part)
        if size > max_bytes or inflater.unconsumed_tail:
            raise PageTooLarge
        if not inflater.eof:
            raise zlib.error("the compressed data ends early")
        rest = inflater.unused_data
    return b"".join(parts)


def analyse_page(header: Mapping[str, Any], body: bytes) -> PageSummary:
    """Inflate, decode and analyse one page as the request `header` describes it (url, site,
    charset, encoding, max_bytes)."""
    url = URL(str(header["url"]))
    site = URL(str(header.get("site") or url))
    charset = header.get("charset")
    raw = inflate(body, str(header.get("encoding") or ""), int(header["max_bytes"]))
    text = decode_page(raw, charset if isinstance(charset, str) else None)
    del raw
    return summarise(analyse_html(text, url), site)


def _answer(header: Mapping[str, Any], body: bytes) -> dict[str, Any]:
    global _in_page
    cpu_s = float(header["cpu_s"])
    try:
        _in_page = True
        _arm_cpu_limit(cpu_s)
        try:
            return {"page": analyse_page(header, body).to_wire()}
        finally:
            _disarm_cpu_limit()
    except _OverBudget:
        _disarm_cpu_limit()  # again: the signal may have come before the first disarm ran
        return {"error": "cpu"}
    except PageTooLarge:
        return {"error": "too-large"}
    except zlib.error:
        return {"error": "compressed"}
    except MemoryError:
        return {"error": "memory", "retire": True}
    except Exception:  # noqa: BLE001 - any page gets an answer; the worker starts afresh
        return {"error": "failed", "retire": True}


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _trim_memory() -> None:
    """Give freed heap back to the system (glibc keeps it otherwise: a 2 MiB page of elements
    leaves 110 MB resident, 21 MB after a trim)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


def _read_exactly(sock: socket.socket, size: int) -> bytes | None:
    """`size` bytes, or None at a clean end of stream before the first byte."""
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        count = sock.recv_into(view[got:])
        if count == 0:
            if got == 0:
                return None
            raise EOFError("the bot closed the socket mid-frame")
        got += count
    return bytes(buffer)


def serve(sock: socket.socket) -> None:
    """Answer requests on `sock` until the bot closes it or the worker retires."""
    sock.sendall(READY)
    while True:
        head = _read_exactly(sock, REQUEST_HEAD.size)
        if head is None:
            return
        header_len, body_len = REQUEST_HEAD.unpack(head)
        if header_len > _MAX_HEADER_BYTES:
            return
        header_bytes = _read_exactly(sock, header_len)
        body = _read_exactly(sock, body_len) if body_len else b""
        if header_bytes is None or body is None:
            return
        reply = _answer(orjson.loads(header_bytes), body)
        del body
        _trim_memory()
        rss = _rss_bytes()
        if rss is not None and rss > RETIRE_RSS_BYTES:
            reply["retire"] = True
        payload = orjson.dumps(reply)
        sock.sendall(REPLY_HEAD.pack(len(payload)) + payload)
        if reply.get("retire"):
            return


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="notifier page worker (started by the bot)")
    parser.add_argument("--fd", type=int, required=True, help="the socket to the bot")
    parser.add_argument("--memory-bytes", type=int, required=True, help="RLIMIT_AS")
    args = parser.parse_args(argv)
    _limit_process(args.memory_bytes)
    sock = socket.socket(fileno=args.fd)
    sock.setblocking(True)
    try:
        serve(sock)
    except (BrokenPipeError, ConnectionResetError, EOFError):
        pass  # the bot went away; nothing to report to
    finally:
        sock.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
