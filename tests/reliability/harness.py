"""The parts every cell of the fault matrix uses beside `notifier.testing` (whose `HttpSink` is the
ops sink): an SMTP sink that can go down and come back on the same port, a loguru capture, metric
snapshots, the operator CLI as a real process (`notifier.testing.processes.run_cli`, passed on),
and a size-limited tmpfs for a disk that really fills up.

Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loguru import logger
from prometheus_client import REGISTRY

from notifier.testing import free_port
from notifier.testing.processes import run_cli

PROJECT_ROOT = Path(__file__).resolve().parents[2]

__all__ = [
    "PROJECT_ROOT",
    "LogCapture",
    "MetricSnapshot",
    "SmtpSink",
    "Tmpfs",
    "run_cli",
]


# ---------------------------------------------------------------------------------------------
# An SMTP server (aiosmtpd) that can go down and come back on the same port


class _Collect:
    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.content
        text = content.decode("utf-8", "replace") if isinstance(content, bytes) else str(content)
        self._sink.messages.append({"to": list(envelope.rcpt_tos), "data": text})
        return "250 Message accepted for delivery"


@dataclass
class SmtpSink:
    """Plain SMTP on 127.0.0.1 (no TLS, no auth), recording every accepted mail."""

    port: int = field(default_factory=free_port)
    messages: list[dict[str, Any]] = field(default_factory=list)
    _controller: Any = None

    def url(self) -> str:
        return f"mailto://127.0.0.1:{self.port}?from=bot@example.com&to=ops@example.com"

    async def start(self) -> None:
        from aiosmtpd.controller import Controller

        controller = Controller(_Collect(self), hostname="127.0.0.1", port=self.port)
        await asyncio.to_thread(controller.start)
        self._controller = controller

    async def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            await asyncio.to_thread(controller.stop)


# ---------------------------------------------------------------------------------------------
# Logs


class _ToLoguru(logging.Handler):
    """Stdlib logging (nextcord, aiohttp, asyncio) into loguru, as production's setup does."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        logger.opt(exception=record.exc_info).log(level, f"[{record.name}] {record.getMessage()}")


@dataclass
class LogCapture:
    """Lines as `LEVEL | message` with any exception's traceback appended."""

    lines: list[tuple[str, str]] = field(default_factory=list)

    def _sink(self, message: Any) -> None:
        record = message.record
        text = record["message"]
        if record["exception"] is not None:
            text += "\n" + str(message)  # loguru's rendering carries the "Traceback" block
        self.lines.append((record["level"].name, f"{record['time']:%H:%M:%S.%f} {text}"))

    @classmethod
    @contextlib.contextmanager
    def installed(cls) -> Iterator[LogCapture]:
        capture = cls()
        sink_id = logger.add(capture._sink, level="DEBUG", backtrace=False, diagnose=False)
        handler = _ToLoguru(level=logging.WARNING)
        root = logging.getLogger()
        root.addHandler(handler)
        try:
            yield capture
        finally:
            root.removeHandler(handler)
            logger.remove(sink_id)

    def dump_to_env_dir(self, name: str) -> None:
        """With MATRIX_LOG_DIR set, keep the cell's log in `<dir>/<name>.log` (for debugging)."""
        folder = os.environ.get("MATRIX_LOG_DIR")
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            text = "\n".join(f"{level:<8} {line}" for level, line in self.lines)
            (Path(folder) / f"{name}.log").write_text(text + "\n")

    def tracebacks(self) -> list[str]:
        return [text for _, text in self.lines if "Traceback" in text]

    def errors(self) -> list[str]:
        return [text for level, text in self.lines if level in ("ERROR", "CRITICAL")]

    def unexpected_errors(self, allowed: list[str]) -> list[str]:
        patterns = [re.compile(p) for p in allowed]
        return [e for e in self.errors() if not any(p.search(e) for p in patterns)]

    def contains(self, pattern: str) -> bool:
        compiled = re.compile(pattern)
        return any(compiled.search(text) for _, text in self.lines)


# ---------------------------------------------------------------------------------------------
# Metrics

_FAMILIES = frozenset(
    {
        "notifier_workflow_results_persisted",
        "notifier_workflow_delivery",
        "notifier_discord_session_closed",
        "notifier_notifications_sent",
        "notifier_store_write_failures",
        "notifier_orphaned_results_retrieved",
        "notifier_workflow_results_lost",
    }
)


@dataclass(frozen=True)
class MetricSnapshot:
    """The project's counters at one moment (default registry: the bot under test's)."""

    values: Mapping[tuple[str, frozenset[tuple[str, str]]], float]

    @classmethod
    def take(cls) -> MetricSnapshot:
        values: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in REGISTRY.collect():
            if family.name not in _FAMILIES:
                continue
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    values[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return cls(values)

    def total(self, name: str, **labels: str) -> float:
        """Sum over samples of `name` whose labels include `labels`."""
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.values.items() if n == name and wanted <= ls)

    def moved(self, before: MetricSnapshot, name: str, **labels: str) -> float:
        return self.total(name, **labels) - before.total(name, **labels)


# ---------------------------------------------------------------------------------------------
# A disk that really fills up


class TmpfsUnavailable(Exception):
    """The machine does not let this test mount a filesystem (the reason is the message)."""


@dataclass
class Tmpfs:
    """A size-limited tmpfs mounted at `path` (root, `mount -t tmpfs -o size=...`)."""

    path: Path
    size_bytes: int
    _filler: Path | None = None

    def mount(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        if sys.platform != "linux":
            raise TmpfsUnavailable(f"tmpfs needs Linux, this is {sys.platform}")
        command = ["mount", "-t", "tmpfs", "-o", f"size={self.size_bytes},mode=0700"]
        try:
            proc = subprocess.run(
                [*command, "tmpfs", str(self.path)], capture_output=True, text=True, check=False
            )
        except OSError as exc:  # no mount(8) on this machine
            raise TmpfsUnavailable(f"cannot run mount: {exc}") from None
        if proc.returncode != 0:
            raise TmpfsUnavailable(
                f"cannot mount a size-limited tmpfs here ({(proc.stderr or proc.stdout).strip()})"
            )

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True, check=False)

    def free_bytes(self) -> int:
        stats = os.statvfs(self.path)
        return stats.f_bavail * stats.f_frsize

    def fill(self) -> None:
        """Take every free block: the next write that needs a new block gets ENOSPC."""
        self._filler = self.path / "filler.bin"
        fd = os.open(self._filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (1024 * 1024, 64 * 1024, 4096, 512, 1):
                chunk = b"\0" * size
                while True:
                    try:
                        os.write(fd, chunk)
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        break
        finally:
            os.close(fd)

    def free(self) -> None:
        if self._filler is not None:
            self._filler.unlink(missing_ok=True)
            self._filler = None
