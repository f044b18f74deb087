"""The fanout's config section as the fanout's and the users' notices' tests run it: only the
built-in plugins, retries a test need not wait for, the outbox in the test's own folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["fast_fanout"]


def fast_fanout(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    """The `fanout` section: no plugin folders, 5 s per attempt, 3 attempts 10 to 50 ms apart,
    the SQLite outbox in `tmp_path`; `overrides` replace any of these keys or add others."""
    section: dict[str, Any] = {
        "plugin_dirs": [],
        "timeout": 5.0,
        "max_attempts": 3,
        "backoff_initial": 0.01,
        "backoff_max": 0.05,
        "outbox_path": str(tmp_path / "outbox.sqlite3"),
    }
    section.update(overrides)
    return section
