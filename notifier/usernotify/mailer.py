"""Users' mail (verification codes and notices) through the operator's own SMTP server.

`user_notifications.email_notifier` names a `notifiers:` entry whose plugin is `email`; its first
`urls` entry (``${VAR}`` already expanded by the config loader) is a real ``mailto://`` or
``mailtos://`` URL. It is read by Apprise's own e-mail plugin, so host, port, login, TLS mode and
sender mean here exactly what they mean to the operator's notifier (Apprise's provider table turns
``mailto://me:pw@gmail.com`` into smtp.gmail.com:587 with STARTTLS, and so on).

The mail itself is sent with aiosmtplib, not Apprise. Apprise's mailto only answers True or False,
and a user's address that the server refuses (SMTP 5xx at RCPT or after DATA) must be told apart
from a server that is down or slow: the first turns the user's e-mail channel off (retrying cannot
help, and mailing a refusing address again looks like spam), the second is retried by the outbox.
aiosmtplib is asyncio-native too, so a send is one coroutine on the loop, not a thread.

A 5xx at EHLO, AUTH or MAIL FROM is the operator's setup (a wrong password, a sender the server
does not accept), not the user's address: it is a `MailFailed`, so the address stays on while the
outbox retries and the operator reads the error. The password never appears in a repr, a log
line or an error message.
"""

from __future__ import annotations

import asyncio
import email.utils
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, Final, Literal

import aiosmtplib

from ..config import Settings
from ..errors import ConfigError, NotifierError

__all__ = [
    "MailError",
    "MailFailed",
    "MailRefused",
    "MailServer",
    "mail_server",
    "send_mail",
]

type SecureMode = Literal["insecure", "starttls", "ssl"]
_SECURE_MODES: Final = frozenset({"insecure", "starttls", "ssl"})


class MailError(NotifierError):
    """A mail that was not accepted. Catch one of the two children."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        self.message = message
        self.code = code
        super().__init__(message)


class MailRefused(MailError):
    """The server refused the recipient or the message for good (SMTP 5xx): permanent. `code`
    and `message` are the server's own (``550 no such user``), safe to show the user."""


class MailFailed(MailError):
    """Nothing was (known to be) accepted, but a later try may work: a 4xx, a refused or lost
    connection, a timeout, or a 5xx about the operator's setup (login, sender)."""


@dataclass(frozen=True, slots=True)
class MailServer:
    """Where and how users' mail is sent: read from the operator's ``mailto(s)://`` URL."""

    host: str
    port: int
    secure_mode: SecureMode
    from_address: str  # "Name <a@b.c>" or "a@b.c"
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    verify_certificate: bool = True

    @property
    def sender(self) -> str:
        """The bare envelope sender (MAIL FROM)."""
        return email.utils.parseaddr(self.from_address)[1]

    @classmethod
    def from_url(cls, url: str) -> MailServer:
        """Read a ``mailto://`` / ``mailtos://`` URL the way Apprise's e-mail plugin reads it.

        Raises ConfigError (never showing the password) when Apprise cannot make a server of it.
        """
        from apprise.plugins.email import NotifyEmail

        scheme = url.strip().partition("://")[0].lower()
        if scheme not in ("mailto", "mailtos"):
            raise ConfigError("", f"not a mailto:// or mailtos:// URL ({scheme or 'no'} scheme)")
        parsed: Mapping[str, Any] | None = NotifyEmail.parse_url(url.strip())  # type: ignore[no-untyped-call]
        if not parsed:
            raise ConfigError("", "Apprise cannot read this mailto URL")
        try:
            plugin = NotifyEmail(**parsed)  # type: ignore[no-untyped-call]
        except (TypeError, ValueError) as exc:
            # Apprise's messages name fields, not the password; keep only the exception type.
            raise ConfigError(
                "", f"Apprise refuses this mailto URL ({type(exc).__name__})"
            ) from None
        mode = str(getattr(plugin, "secure_mode", "") or "insecure").lower()
        if mode not in _SECURE_MODES:
            mode = "starttls" if plugin.secure else "insecure"
        name, address = _from_pair(plugin.from_addr, default_name=str(plugin.app_id))
        if not address:
            raise ConfigError("", "the mailto URL gives no sender address (add ?from=...)")
        port = plugin.port
        return cls(
            host=str(plugin.smtp_host or plugin.host),
            port=int(port) if port else (465 if mode == "ssl" else 587 if plugin.secure else 25),
            secure_mode=mode,  # type: ignore[arg-type]  # checked against _SECURE_MODES above
            from_address=email.utils.formataddr((name, address)) if name else address,
            user=plugin.user or None,
            password=plugin.password or None,
            verify_certificate=bool(plugin.verify_certificate),
        )


def _from_pair(value: Any, *, default_name: str) -> tuple[str, str]:
    """Apprise keeps the sender as (name or False, address); its own default name (the app id,
    "Apprise") is dropped: users should not get mail from "Apprise"."""
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2:
        name, address = value
        name = name if isinstance(name, str) and name != default_name else ""
        return name, str(address or "")
    return "", str(value or "")


def mail_server(settings: Settings) -> MailServer | None:
    """The server of the notifier `user_notifications.email_notifier` names, or None when no
    notifier is named (then e-mail is not offered). The config already checked that the entry
    exists and uses the `email` plugin. Raises ConfigError (field path included) when its URL
    cannot be read."""
    name = settings.user_notifications.email_notifier
    if name is None:
        return None
    for index, entry in enumerate(settings.notifiers):
        if entry.name != name:
            continue
        urls = entry.options.get("urls")
        first = urls if isinstance(urls, str) else (urls[0] if urls else None)
        where = f"notifiers[{index}].options.urls[0]"
        if not isinstance(first, str):
            raise ConfigError(where, "the e-mail notifier for users' mail has no URL")
        try:
            return MailServer.from_url(first)
        except ConfigError as exc:
            raise ConfigError(where, exc.message) from None
    raise ConfigError(
        "user_notifications.email_notifier", f"no notifier is named {name!r}"
    )  # pragma: no cover - the config's own validator refuses this first


def _message(server: MailServer, to: str, subject: str, body: str, message_id: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = server.from_address
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = email.utils.formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = message_id
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to the bot
    message.set_content(body)
    return message


async def send_mail(
    server: MailServer,
    to: str,
    subject: str,
    body: str,
    *,
    timeout_s: float,
    message_id: str,
) -> None:
    """Send one plain-text mail to `to`, or raise MailRefused (5xx about the recipient or the
    message: permanent) or MailFailed (everything retryable, and the operator's own setup).

    `message_id` (``<...@...>``) should be the same on every retry of one notice, so a receiving
    system that saw a mail whose acceptance we never heard about can drop the copy. `timeout_s`
    bounds the whole conversation (aiosmtplib's own timeout is per step, so a server answering
    each step just in time could otherwise hold the send far longer)."""
    message = _message(server, to, subject, body, message_id)
    try:
        async with asyncio.timeout(timeout_s):
            await aiosmtplib.send(
                message,
                sender=server.sender,
                recipients=[to],
                hostname=server.host,
                port=server.port,
                username=server.user,
                password=server.password,
                use_tls=server.secure_mode == "ssl",
                start_tls=server.secure_mode == "starttls",
                validate_certs=server.verify_certificate,
                timeout=timeout_s,
            )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        first = exc.recipients[0] if exc.recipients else None
        code = first.code if first is not None else None
        text = first.message if first is not None else "recipient refused"
        raise _by_code(code, f"the mail server refused the address ({code} {text})") from None
    except aiosmtplib.SMTPRecipientRefused as exc:
        raise _by_code(
            exc.code, f"the mail server refused the address ({exc.code} {exc.message})"
        ) from None
    except aiosmtplib.SMTPDataError as exc:
        raise _by_code(
            exc.code, f"the mail server refused the message ({exc.code} {exc.message})"
        ) from None
    except (aiosmtplib.SMTPAuthenticationError, aiosmtplib.SMTPSenderRefused) as exc:
        what = "login" if isinstance(exc, aiosmtplib.SMTPAuthenticationError) else "sender"
        raise MailFailed(
            f"the mail server refused the bot's {what} ({exc.code} {exc.message}); "
            "the operator's e-mail notifier needs fixing",
            code=exc.code,
        ) from None
    except aiosmtplib.SMTPResponseException as exc:
        raise MailFailed(
            f"the mail server answered {exc.code} {exc.message}", code=exc.code
        ) from None
    except TimeoutError:
        raise MailFailed(f"the mail server did not answer within {timeout_s:g}s") from None
    except (aiosmtplib.SMTPException, OSError) as exc:
        reason = (
            getattr(exc, "message", None) or getattr(exc, "strerror", None) or type(exc).__name__
        )
        raise MailFailed(
            f"could not talk to the mail server {server.host}:{server.port} ({reason})"
        ) from None


def _by_code(code: int | None, text: str) -> MailError:
    if code is not None and 500 <= code < 600:
        return MailRefused(text, code=code)
    return MailFailed(text, code=code)
