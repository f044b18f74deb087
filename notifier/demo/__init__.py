"""The no-token demo: the bot, the embedded Discord emulator, a slow site and sinks on 127.0.0.1.

`bot.py` with no Discord token runs `run_demo`; `plan` holds its timings, `story` the scripted
user and the printed timeline, `smtp` the mail sink.
"""

from __future__ import annotations

from .run import run_demo

__all__ = ["run_demo"]
