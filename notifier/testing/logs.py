"""The bot's own logging, captured: `production_logs` configures logging exactly as bot.py does
(`notifier.logs.setup_logging`: the loguru format, the redactor as patcher, stdlib logging of
nextcord, aiohttp, Apprise and procrastinate routed into loguru) with a list as the sink, and puts
the previous configuration back afterwards. Every line a test makes is the line an operator's log
would hold, tracebacks included."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

from loguru import logger

from ..logs import setup_logging

__all__ = ["CapturedLogs", "production_logs"]


@dataclass
class CapturedLogs:
    lines: list[str] = field(default_factory=list)

    def write(self, message: str) -> None:
        self.lines.append(str(message))

    def text(self) -> str:
        return "".join(self.lines)


@contextlib.contextmanager
def production_logs(level: str = "DEBUG") -> Iterator[CapturedLogs]:
    captured = CapturedLogs()
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    saved_patcher = logger._core.patcher  # type: ignore[attr-defined]
    setup_logging(level, sink=captured.write)
    # A second, plain copy on stderr: pytest shows it when a test fails.
    logger.add(sys.stderr, level="INFO", format="{time:HH:mm:ss.SSS} {level} {name}: {message}")
    try:
        yield captured
    finally:
        logger.remove()
        logger.configure(patcher=saved_patcher)
        logger.add(sys.stderr, level="DEBUG")
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved_handlers:
            root.addHandler(handler)
        root.setLevel(saved_level)
