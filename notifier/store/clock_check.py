"""Retention's clock check: a sweep deletes nothing on the word of a clock that jumped.

Why: retention's cutoff is "now minus ``retention_days``", and "now" is the wall clock. A store
opened with the clock 31 days ahead (a dead RTC battery, a VM restored from a snapshot, a wrong
NTP server, a hand-set date) removed every result and every file. So before an automatic sweep
(at start and every ``retention_interval``) the store asks whether the clock is believable, and
if not it purges nothing and logs a WARNING saying why. Two signs, either enough:

1. **The clock jumped since the last sweep.** With each sweep the store records the wall clock
   beside the host's uptime clock (``CLOCK_BOOTTIME``: counts suspend, is never set, so it cannot
   jump) and the host's boot id. On the same boot, the wall clock may have advanced by the
   uptime clock's amount, not more: a difference over one ``retention_interval`` is a jump,
   whether it happened while the bot ran or while it was stopped (a bot stopped for a week is not
   a jump: the uptime clock counted the week too). After a reboot the two clocks cannot be
   compared; the second sign still can.
2. **The clock is past everything the store knows by more than the retention period.** The
   latest time the store ever recorded (its last sweep, the newest workflow created or finished)
   is evidence that the clock once read so. If "now" is more than ``retention_days`` plus one
   ``retention_interval`` past it, every result would go at once, the newest included, though no
   running bot would have let the newest grow that old unswept.

"Believable again" means: the clock came back (sign 1), or the store recorded activity under the
new clock while the host stayed up (sign 2 then passes, sign 1 still compares with the last
sweep). An operator who knows the clock is right runs ``python -m notifier results purge
--older-than 30d``: a purge by hand does what it is told, and records a sweep, so the clock it ran
under is the reference from then on.

Pure decisions here (`clock_doubt`); the store reads the clocks and the index.
"""

from __future__ import annotations

import functools
import json
import math
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

__all__ = [
    "LAST_SWEEP_NOTE",
    "HostTime",
    "Uptime",
    "clock_doubt",
    "decode_sweep",
    "encode_sweep",
    "host_uptime",
]

LAST_SWEEP_NOTE: Final = "retention.last_sweep"
_BOOT_ID_PATH: Final = Path("/proc/sys/kernel/random/boot_id")
_PROCESS_BOOT_PREFIX: Final = "process-"

# (boot id, seconds on a clock that is never set) -> what the host says now.
Uptime = Callable[[], tuple[str, float]]


@dataclass(frozen=True, slots=True)
class HostTime:
    """The wall clock read together with the host's uptime clock, and which boot that is."""

    wall_s: float
    boot_id: str
    uptime_s: float


@functools.cache
def _boot_id() -> str:
    try:
        text = _BOOT_ID_PATH.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        text = ""
    # Without a boot id, this process's own monotonic clock, named so that no other process
    # compares with it (sign 1 then works while this process lives).
    return text or f"{_PROCESS_BOOT_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"


def host_uptime() -> tuple[str, float]:
    """The host's boot id and CLOCK_BOOTTIME; elsewhere than Linux, a per-process id and the
    monotonic clock. The boot id is read once per process (call it first from a thread)."""
    boot_id = _boot_id()
    if boot_id.startswith(_PROCESS_BOOT_PREFIX) or not hasattr(time, "CLOCK_BOOTTIME"):
        return boot_id, time.monotonic()
    return boot_id, time.clock_gettime(time.CLOCK_BOOTTIME)


def encode_sweep(sweep: HostTime) -> str:
    return json.dumps(
        {"wall_s": sweep.wall_s, "boot_id": sweep.boot_id, "uptime_s": sweep.uptime_s}
    )


def decode_sweep(text: str | None) -> HostTime | None:
    """The recorded sweep, or None if there is none or it is not one this store wrote."""
    if text is None:
        return None
    try:
        value = json.loads(text)
        sweep = HostTime(float(value["wall_s"]), str(value["boot_id"]), float(value["uptime_s"]))
    except (ValueError, TypeError, KeyError):
        return None
    if not (math.isfinite(sweep.wall_s) and math.isfinite(sweep.uptime_s)):
        return None
    return sweep


def _span(seconds: float) -> str:
    if seconds >= 2 * 86_400:
        return f"{seconds / 86_400:.1f} days"
    if seconds >= 2 * 3_600:
        return f"{seconds / 3_600:.1f} hours"
    if seconds >= 120:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds:.0f} s"


def _utc(epoch_s: float) -> str:
    try:
        return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%d %H:%M UTC")
    except (OverflowError, OSError, ValueError):
        return f"{epoch_s:.0f} (Unix seconds)"


def clock_doubt(
    now: HostTime,
    last_sweep: HostTime | None,
    newest_activity_s: float | None,
    *,
    retention_s: float,
    interval_s: float,
) -> str | None:
    """None if a sweep may trust `now`; otherwise why not, as the warning says it."""
    if last_sweep is not None and last_sweep.boot_id == now.boot_id:
        wall_s = now.wall_s - last_sweep.wall_s
        uptime_s = now.uptime_s - last_sweep.uptime_s
        if wall_s - uptime_s > interval_s:
            return (
                f"the clock jumped {_span(wall_s - uptime_s)} ahead since the last sweep at "
                f"{_utc(last_sweep.wall_s)} (the wall clock moved {_span(wall_s)}, the host's "
                f"uptime clock {_span(uptime_s)}; more than storage.retention_interval, "
                f"{_span(interval_s)})"
            )
    known = [] if newest_activity_s is None else [newest_activity_s]
    if last_sweep is not None:
        known.append(last_sweep.wall_s)
    if known and now.wall_s - max(known) > retention_s + interval_s:
        latest = max(known)
        return (
            f"the clock says {_utc(now.wall_s)}, {_span(now.wall_s - latest)} after the latest "
            f"time this store recorded ({_utc(latest)}): past storage.retention_days plus one "
            "storage.retention_interval, so every result would go at once"
        )
    return None
