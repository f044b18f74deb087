"""A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps every mail it accepts, for tests of what
the bot mails: the operators' `email` notifier and the users' verified addresses.

It can also refuse chosen recipients at RCPT, in the words a test chooses (a 550 for a mailbox that
went away, a 450 for a server that only defers), so a test sees how the bot takes a refusal.

This module imports aiosmtpd (a dev dependency) and is imported only by the tests that mail;
`notifier.testing` does not re-export it. (The demo's own sink, `notifier.demo.smtp`, needs no
aiosmtpd.)
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from .loopback import free_port

__all__ = ["Mailbox", "SmtpServer", "body_of", "serve_smtp"]


def body_of(message: EmailMessage) -> str:
    """What a person reads of `message`: its plain-text body, else its HTML one."""
    part = message.get_body(preferencelist=("plain", "html"))
    assert part is not None
    content = part.get_content()
    assert isinstance(content, str)
    return content


class Mailbox:
    """aiosmtpd handler: keeps every accepted mail, parsed; answers RCPT with `refusal` for an
    address in `refused` (``{address}`` in it becomes the address as the bot sent it)."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.refused: set[str] = set()
        self.refusal = "550 5.1.1 mailbox unavailable"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.refused:
            return self.refusal.replace("{address}", address)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.original_content or envelope.content
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[EmailMessage]:
        """The mails whose To: is `address`, oldest first."""
        return [m for m in self.messages if m["To"] == address]

    def code_for(self, address: str) -> str:
        """The verification code in the last mail to `address` ("Your code is 123456.")."""
        text = body_of(self.to(address)[-1])
        found = re.search(r"Your code is (\d{6})\.", text)
        assert found, text
        return found.group(1)


@dataclass
class SmtpServer:
    port: int
    mailbox: Mailbox

    @property
    def messages(self) -> list[EmailMessage]:
        return self.mailbox.messages

    def url(self, *, to: str = "ops@example.com", userinfo: str = "") -> str:
        """The operator's `mailto://` URL for this server (Apprise's form), from bot@example.com."""
        auth = f"{userinfo}@" if userinfo else ""
        return f"mailto://{auth}127.0.0.1:{self.port}?from=bot@example.com&to={to}"


@contextlib.contextmanager
def serve_smtp() -> Iterator[SmtpServer]:
    """Plain SMTP (no TLS, no AUTH) on a free port of 127.0.0.1, stopped on the way out."""
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield SmtpServer(controller.port, mailbox)
    finally:
        controller.stop()
