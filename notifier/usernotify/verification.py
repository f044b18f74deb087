"""E-mail verification: nobody can make the bot mail an address its owner did not confirm.

Theory of operation. ``/notify set via:email target:a@b.c`` issues a 6-digit code (`secrets`,
uniform over 000000-999999) mailed to the address; the address becomes a channel only when
``/notify verify`` gives that code back. What makes guessing and flooding useless:

- The code lives 15 minutes (`CODE_TTL_S`) and survives five wrong answers (`MAX_WRONG_CODES`):
  the fifth kills it and the user must ask for a new one. A guesser gets 5 tries in a million.
- Only a hash of the code is stored: HMAC-SHA256 keyed by the user and the address, so a code
  is bound to the address it was sent to and one user's code hash says nothing about another's.
  Six digits are cheap to brute-force from a hash, so this keeps the code out of a casual look at
  the database (``users show``, a backup), no more; the attempt limit and the expiry are what
  protect the address.
- Codes sent are counted per UTC day: 3 per user (`CODES_PER_USER_PER_DAY`) and 5 per address
  across every user (`CODES_PER_ADDRESS_PER_DAY`), the address counted by its SHA-256 only. One
  person with many accounts still cannot make the bot mail a stranger more than five times a day.
  A code counts from the moment it is about to be sent, whatever the mail server then says: a
  count that forgave failures could be used to hammer the server.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from typing import Final

from ..errors import NotifierError
from ..store.user_settings import PendingCode, UserSettingsStore, mask_address

__all__ = [
    "CODES_PER_ADDRESS_PER_DAY",
    "CODES_PER_USER_PER_DAY",
    "CODE_DIGITS",
    "CODE_TTL_S",
    "MAX_ADDRESS_CHARS",
    "MAX_WRONG_CODES",
    "VerificationRefused",
    "Verifier",
    "address_hash",
    "check_address",
    "code_hash",
    "day_start",
    "mask_address",
    "mask_addresses_in",
    "new_code",
]

CODE_DIGITS: Final = 6
CODE_TTL_S: Final = 15 * 60.0
MAX_WRONG_CODES: Final = 5
CODES_PER_USER_PER_DAY: Final = 3
CODES_PER_ADDRESS_PER_DAY: Final = 5
MAX_ADDRESS_CHARS: Final = 254  # RFC 5321's path limit, less the angle brackets

_LOCAL_CHARS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+")
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_TOP_LABEL = re.compile(r"[a-z]{2,63}|xn--[a-z0-9-]{1,59}")
_CODE = re.compile(rf"[0-9]{{{CODE_DIGITS}}}")
# Anything shaped like an address inside free text: the local part's usual characters (no quotes,
# brackets or slashes, which surround an address in a server's words more often than they are in
# it), then a domain, dotted or not (a server may name a local mailbox, ``alice@mailhost``).
_ADDRESS_IN_TEXT = re.compile(
    r"[A-Za-z0-9!#$%&*+=?^_{|}~.-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
)


class VerificationRefused(NotifierError):
    """A code was not issued or not accepted; `reason` says why in words fit for the user."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def check_address(text: str) -> str:
    """The address `text` names, trimmed, its domain lowercased; or VerificationRefused saying
    what is wrong with it. Plain ``local@domain.tld`` only: no display names, quoted local parts,
    IP-literal domains or comments, which a mail server reads differently from a person."""
    address = text.strip()
    if not address:
        raise VerificationRefused("the address is empty")
    if len(address) > MAX_ADDRESS_CHARS:
        raise VerificationRefused(
            f"the address is {len(address)} characters long; the limit is {MAX_ADDRESS_CHARS}"
        )
    if not address.isascii():
        raise VerificationRefused(
            "the address has characters outside ASCII; give its ASCII form (xn--... domains)"
        )
    if address.count("@") != 1:
        raise VerificationRefused("the address must have exactly one @ (like name@example.com)")
    local, _, domain = address.partition("@")
    if not local or not domain:
        raise VerificationRefused("the address needs a name before the @ and a domain after it")
    if len(local) > 64:
        raise VerificationRefused("the part before the @ is longer than 64 characters")
    if not _LOCAL_CHARS.fullmatch(local):
        raise VerificationRefused(
            "the part before the @ may hold letters, digits and . _ + - (no spaces, quotes, "
            "commas or brackets)"
        )
    if local.startswith(".") or local.endswith(".") or ".." in local:
        raise VerificationRefused("the part before the @ cannot start or end with a dot or hold ..")
    domain = domain.lower().removesuffix(".")
    labels = domain.split(".")
    if (
        len(labels) < 2
        or not all(_LABEL.fullmatch(label) for label in labels)
        or not _TOP_LABEL.fullmatch(labels[-1])
    ):
        raise VerificationRefused(
            f"the domain {domain[:60]!r} is not a mail domain (like example.com)"
        )
    return f"{local}@{domain}"


def mask_addresses_in(text: str) -> str:
    """`text` with every e-mail address in it masked as `mask_address` shows one: for what goes
    to a log line. A mail server's refusal usually quotes an address (``550 5.1.1
    <alice@example.com>: user unknown``), and not always as the bot sent it (another case, the
    mailbox an alias led to), so replacing the one address the bot knows is not enough. The user
    may see their own address in a reply; the operator's logs get none."""
    return _ADDRESS_IN_TEXT.sub(lambda found: mask_address(found.group()), text)


def address_hash(address: str) -> str:
    """The address as the per-address limit counts it (the store's contract): SHA-256 of the
    lowercased address, so the count names nobody and outlives a user's `forget`."""
    return hashlib.sha256(address.lower().encode()).hexdigest()


def new_code() -> str:
    """Six digits from the OS's CSPRNG, leading zeros kept."""
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def code_hash(user_id: int, address: str, code: str) -> str:
    """What is stored of a code: HMAC-SHA256 of the code keyed by (user, lowercased address)."""
    key = f"notifier-verify\x1f{user_id}\x1f{address.lower()}".encode()
    return hmac.new(key, code.encode(), hashlib.sha256).hexdigest()


def day_start(now: float) -> float:
    """The Unix time of 00:00 UTC of the day `now` falls in (the limits' day)."""
    day = time.gmtime(now)
    return float(calendar.timegm((day.tm_year, day.tm_mon, day.tm_mday, 0, 0, 0, 0, 0, 0)))


class Verifier:
    """Issues and checks codes against the settings store; sends nothing (the caller mails the
    code, then calls `cancel` if the server refused the address)."""

    def __init__(self, store: UserSettingsStore, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    async def issue(
        self,
        user_id: int,
        address: str,
        *,
        events: tuple[str, ...] = (),
        workflows: tuple[str, ...] = (),
    ) -> str:
        """A new code for `address` (checked with `check_address` first), replacing any pending
        one, counted against both daily limits. The `events` and `workflows` the channel is to be
        for are stored with it (no events: the defaults). Raises VerificationRefused naming the
        limit reached."""
        now = self._clock()
        since = day_start(now)
        per_user = await self._store.codes_sent_since(since=since, user_id=user_id)
        if per_user >= CODES_PER_USER_PER_DAY:
            raise VerificationRefused(
                f"you have asked for {per_user} codes today; the limit is "
                f"{CODES_PER_USER_PER_DAY} codes per user per day (UTC); try again after 00:00 UTC"
            )
        hashed = address_hash(address)
        per_address = await self._store.codes_sent_since(since=since, address_hash=hashed)
        if per_address >= CODES_PER_ADDRESS_PER_DAY:
            raise VerificationRefused(
                f"{mask_address(address)} has been sent {per_address} codes today; the limit is "
                f"{CODES_PER_ADDRESS_PER_DAY} codes per address per day (UTC), whoever asks; "
                "try again after 00:00 UTC"
            )
        code = new_code()
        pending = PendingCode(
            address=address,
            code_hash=code_hash(user_id, address, code),
            expires_at=now + CODE_TTL_S,
            events=events,
            workflows=workflows,
        )
        await self._store.log_code_sent(user_id, hashed, now=now)
        await self._store.put_code(user_id, pending, now=now)
        return code

    async def cancel(self, user_id: int) -> None:
        """Drop the pending code (its mail was refused: there is nothing to verify)."""
        await self._store.delete_code(user_id)

    async def confirm(self, user_id: int, code: str) -> PendingCode:
        """The user's pending code (its address and the choices stored with it), if `code` is
        it (the code is then used up); otherwise VerificationRefused saying what to do. The
        fifth wrong code, or an expired one, deletes the pending code."""
        pending = await self._store.pending_code(user_id)
        if pending is None:
            raise VerificationRefused(
                "no code is waiting for you; ask for one with /notify set via:email target:..."
            )
        if self._clock() >= pending.expires_at:
            await self._store.delete_code(user_id)
            raise VerificationRefused(
                f"the code sent to {mask_address(pending.address)} has expired (codes last "
                f"{CODE_TTL_S / 60:.0f} minutes); ask for a new code"
            )
        typed = code.strip().replace(" ", "")
        good = _CODE.fullmatch(typed) is not None and hmac.compare_digest(
            code_hash(user_id, pending.address, typed), pending.code_hash
        )
        if good:
            await self._store.delete_code(user_id)
            return pending
        attempts = await self._store.count_wrong_code(user_id)
        if attempts >= MAX_WRONG_CODES:
            await self._store.delete_code(user_id)
            raise VerificationRefused(
                f"that code is wrong, and that was the {MAX_WRONG_CODES}th wrong code: this code "
                "no longer works; ask for a new code with /notify set via:email"
            )
        left = MAX_WRONG_CODES - attempts
        shape = "" if _CODE.fullmatch(typed) else f" (a code is {CODE_DIGITS} digits)"
        raise VerificationRefused(
            f"that code is wrong{shape}; {left} more {'try' if left == 1 else 'tries'} before "
            "this code stops working"
        )
