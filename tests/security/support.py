"""Shared by the security tests: the project's root. The bot, its steered workflow, sinks, waits
and the SMTP server (`notifier.testing.smtp`) come from `notifier.testing`."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
