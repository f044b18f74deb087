"""A local SMTP server for the security tests (accepts mail but offers no AUTH). The bot, its
steered workflow, sinks and waits come from `notifier.testing`."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from notifier.testing import free_port

PROJECT_ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------
# SMTP: accepts mail but offers no AUTH, so a mailto:// URL with a password fails to log in


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(bytes(envelope.original_content or envelope.content))
        return "250 OK"


@dataclass
class SmtpServer:
    port: int
    mailbox: _Mailbox

    def url(self, userinfo: str) -> str:
        return f"mailto://{userinfo}@127.0.0.1:{self.port}?from=bot@example.com&to=ops@example.com"


@contextlib.contextmanager
def smtp_server() -> Any:
    mailbox = _Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield SmtpServer(controller.port, mailbox)
    finally:
        controller.stop()
