"""Helpers for the README tests: the environment for the project's scripts. (Waits, sinks and
processes: `notifier.testing`.)"""

from __future__ import annotations

import os
import sys

from notifier.testing import child_env


def script_env(**extra: str) -> dict[str, str]:
    """The environment for `scripts/...`: this one without Discord settings, reusing the venv that
    runs the tests (so the scripts' venv check finds it installed instead of building one)."""
    if "NOTIFIER_VENV" not in os.environ and sys.prefix != sys.base_prefix:
        extra.setdefault("NOTIFIER_VENV", sys.prefix)
    return child_env(**extra)
