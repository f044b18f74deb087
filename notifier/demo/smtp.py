"""A tiny SMTP sink on 127.0.0.1 for the demo: it accepts every e-mail and keeps it in memory.

The demo shows the `email` notifier plugin delivering for real (Apprise's `mailto://` speaks SMTP to
this server), without a mail server and without a dependency only the tests have (aiosmtpd). It is
the least of SMTP a client needs: HELO/EHLO, MAIL, RCPT, DATA (dot-unstuffed), RSET, NOOP, QUIT; no
TLS, no authentication, no relaying. Never bind it anywhere but the loopback.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from types import TracebackType
from typing import Final, Self

__all__ = ["ReceivedMail", "SmtpSink"]

MAX_MESSAGE_BYTES: Final = 10 * 1024 * 1024
_LINE_LIMIT: Final = 64 * 1024


@dataclass(frozen=True, slots=True)
class ReceivedMail:
    """One accepted e-mail: the envelope, the parsed message and when it arrived (Unix time)."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage
    received_at: float = field(default_factory=time.time)

    @property
    def subject(self) -> str:
        return str(self.message.get("Subject", ""))

    def text(self) -> str:
        """The plain-text body (or the first text part), decoded."""
        part = self.message.get_body(preferencelist=("plain", "html"))
        if part is None:
            return ""
        content = part.get_content()
        return content if isinstance(content, str) else ""


def _address(argument: str) -> str:
    """`FROM:<a@b>` or `TO:<a@b> SIZE=1` -> `a@b`."""
    _, _, rest = argument.partition(":")
    rest = rest.strip()
    if rest.startswith("<"):
        return rest[1:].partition(">")[0]
    return rest.split(" ", 1)[0]


class SmtpSink:
    """`async with SmtpSink() as sink:` then point a client at 127.0.0.1:`sink.port`."""

    def __init__(self, *, hostname: str = "notifier-demo") -> None:
        self.hostname = hostname
        self.messages: list[ReceivedMail] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._received = asyncio.Condition()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._session, "127.0.0.1", 0, limit=_LINE_LIMIT)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def mailto_url(self, *, sender: str, to: str) -> str:
        """The Apprise URL that sends here (plain SMTP, no login)."""
        return f"mailto://127.0.0.1:{self.port}?from={sender}&to={to}"

    async def wait_for(self, count: int) -> list[ReceivedMail]:
        """Wait until at least `count` e-mails have arrived; return them all."""
        async with self._received:
            await self._received.wait_for(lambda: len(self.messages) >= count)
        return list(self.messages)

    # -- the protocol --------------------------------------------------------------------------

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def reply(text: str) -> None:
            writer.write(text.encode("ascii") + b"\r\n")
            await writer.drain()

        mail_from: str | None = None
        rcpt_tos: list[str] = []
        try:
            await reply(f"220 {self.hostname} ESMTP ready")
            while line := await reader.readline():
                command = line.decode("ascii", "replace").rstrip("\r\n")
                verb, _, argument = command.partition(" ")
                verb = verb.upper()
                if verb == "EHLO":
                    await reply(
                        f"250-{self.hostname}\r\n250-8BITMIME\r\n250 SIZE {MAX_MESSAGE_BYTES}"
                    )
                elif verb == "HELO":
                    await reply(f"250 {self.hostname}")
                elif verb == "MAIL":
                    mail_from, rcpt_tos = _address(argument), []
                    await reply("250 OK")
                elif verb == "RCPT":
                    if mail_from is None:
                        await reply("503 MAIL first")
                        continue
                    rcpt_tos.append(_address(argument))
                    await reply("250 OK")
                elif verb == "DATA":
                    if mail_from is None or not rcpt_tos:
                        await reply("503 MAIL and RCPT first")
                        continue
                    await reply("354 End data with <CR><LF>.<CR><LF>")
                    data = await self._read_data(reader)
                    if data is None:
                        await reply("552 Message too large")
                    else:
                        await self._keep(mail_from, rcpt_tos, data)
                        await reply("250 OK: queued")
                    mail_from, rcpt_tos = None, []
                elif verb == "RSET":
                    mail_from, rcpt_tos = None, []
                    await reply("250 OK")
                elif verb == "NOOP":
                    await reply("250 OK")
                elif verb == "QUIT":
                    await reply("221 Bye")
                    break
                else:
                    await reply("502 Command not implemented")
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def _read_data(self, reader: asyncio.StreamReader) -> bytes | None:
        """Lines up to the lone dot, with RFC 5321 dot-stuffing undone; None if too large."""
        lines: list[bytes] = []
        size = 0
        while True:
            line = await reader.readline()
            if not line:
                raise ConnectionError("the client went away in DATA")
            if line in (b".\r\n", b".\n"):
                break
            if line.startswith(b"."):
                line = line[1:]
            size += len(line)
            if size <= MAX_MESSAGE_BYTES:
                lines.append(line)
        return b"".join(lines) if size <= MAX_MESSAGE_BYTES else None

    async def _keep(self, mail_from: str, rcpt_tos: list[str], data: bytes) -> None:
        # Wire line endings (CRLF) become Python's, as a local mailbox stores them.
        message = email.message_from_bytes(
            data.replace(b"\r\n", b"\n"), policy=email.policy.default
        )
        assert isinstance(message, EmailMessage)  # guaranteed by policy.default
        async with self._received:
            self.messages.append(ReceivedMail(mail_from, tuple(rcpt_tos), message))
            self._received.notify_all()
