"""One REST budget for every process of a bot: a token bucket row in PostgreSQL.

Theory of operation
-------------------
Discord allows a bot 50 requests per second in all (interaction callbacks and webhook calls
exempt), however many processes share its token; beyond that it answers 429 with ``global: true``,
and 10,000 answers of 401, 403 or 429 in ten minutes get the bot's address banned for a while.
nextcord's limiter counts one process only (``max_global_requests=50`` each), so a gateway and
N workers together may send N+1 times too many. The processes of one bot therefore share one
bucket, a row of ``notifier_rest_budget`` keyed by a hash of the bot token (never the token):

    tokens        how many requests may go at once, at most ``burst``; below 0: requests queued
    refreshed_at  when `tokens` was computed (the database's clock: one clock for every host)

Each request takes its turn with one statement (`_TAKE`): under the row's lock it refills the
bucket for the time since `refreshed_at` (``rate_per_s`` a second, never above ``burst``) and
takes one. It always takes, even from an empty bucket: the level goes below zero, and the
statement answers how long this caller must wait for the turn it just reserved
(``-tokens / rate_per_s`` seconds). So a request costs one statement whatever the contention
(nobody polls the database, nobody wakes up to lose a race), turns are handed out in the order
the statements reach the row, across processes, and the requests that go in any span of ``t``
seconds are at most ``rate_per_s * t + burst``: in any one second, ``rate_per_s + burst``. Keep
that sum under 50 minus what goes around the budget; the defaults (45/s, burst 3: at most 48 in
any second) leave a little for network jitter and for calls made without the budget.

A waiter cancelled while it waits for its turn gives the turn back (one statement adding the
token back, in the background; `close` waits for it): cancelling takes nothing. A process killed
while its requests wait does not give their turns back; they pass unused, which wastes a little
of the budget and never exceeds it.

When the database cannot be reached the requests do not stop: each process falls back to a
bucket of its own at ``fallback_rate_per_s`` (default 2/s: twenty processes stay under 50),
says so once in the log, tries the database again every ``RETRY_AWAY_S`` and uses the shared
bucket again as soon as a statement succeeds.

The schema: `ensure_schema` creates the table if it is missing, under a transaction-level
advisory lock so that processes starting together do not race. (When the PostgreSQL store's
migrations (`notifier_schema_versions`) exist, the table belongs there.)

The hook: `install_rest_budget(client, budget)` makes every bot-token REST request of a nextcord
client wait for its turn first (`compat.before_bot_requests`). Only a bot whose results live in
PostgreSQL opens a budget; without PostgreSQL nothing here is imported, psycopg included.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from loguru import logger

from ..config import dsn_secrets
from ..logs import MASK, redactor
from .compat import before_bot_requests

if TYPE_CHECKING:
    import nextcord
    import psycopg
    from psycopg_pool import AsyncConnectionPool

__all__ = [
    "DEFAULT_BURST",
    "DEFAULT_FALLBACK_RATE_PER_S",
    "DEFAULT_RATE_PER_S",
    "TABLE",
    "RestBudget",
    "RestBudgetSettings",
    "Turn",
    "budget_key",
    "ensure_schema",
    "install_rest_budget",
]

# Discord's 50 requests/s less headroom: at most rate + burst = 48 requests in any second.
DEFAULT_RATE_PER_S: Final = 45.0
DEFAULT_BURST: Final = 3.0
# Per process, while the database is away: twenty processes together stay under 50/s.
DEFAULT_FALLBACK_RATE_PER_S: Final = 2.0
TABLE: Final = "notifier_rest_budget"
# Two connections per process: a turn holds one for a fraction of a millisecond.
POOL_MAX_SIZE: Final = 2
# How long a turn waits for a pooled connection before it falls back (the server is away).
POOL_WAIT_S: Final = 2.0
CONNECT_TIMEOUT_S: Final = 5
# While the database is away, turns come from the process's own bucket without asking it; it is
# tried again this often (one request then waits up to POOL_WAIT_S to find out).
RETRY_AWAY_S: Final = 5.0
APPLICATION_NAME: Final = "notifier-rest-budget"
# pg_advisory_xact_lock key for creating the table: the first 8 bytes of sha256(TABLE), signed.
_SCHEMA_LOCK: Final = int.from_bytes(
    hashlib.sha256(TABLE.encode()).digest()[:8], "big", signed=True
)

_SCHEMA: Final = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    bot_key text PRIMARY KEY,
    rate_per_s double precision NOT NULL CHECK (rate_per_s > 0),
    burst double precision NOT NULL CHECK (burst >= 1),
    tokens double precision NOT NULL,
    refreshed_at timestamptz NOT NULL
)
"""
# A new bot starts with a full bucket; a process started with other settings changes the row's
# rate and burst (the last one started wins, and every process then follows the row).
_UPSERT: Final = f"""
INSERT INTO {TABLE} (bot_key, rate_per_s, burst, tokens, refreshed_at)
VALUES (%(key)s, %(rate)s, %(burst)s, %(burst)s, clock_timestamp())
ON CONFLICT (bot_key) DO UPDATE SET rate_per_s = excluded.rate_per_s, burst = excluded.burst
"""
# One turn (%(count)s = 1), or one turn given back (-1). clock_timestamp() is read once the row's
# lock is held (a statement that waited for the lock sees the time it got it); the second call
# is microseconds later, and greatest() keeps `refreshed_at` from going back.
_TAKE: Final = f"""
UPDATE {TABLE}
   SET tokens = least(
           burst,
           tokens + rate_per_s
               * greatest(0, extract(epoch FROM clock_timestamp() - refreshed_at)::float8)
       ) - %(count)s,
       refreshed_at = greatest(refreshed_at, clock_timestamp())
 WHERE bot_key = %(key)s
RETURNING tokens, rate_per_s, refreshed_at
"""


def budget_key(bot_token: str) -> str:
    """The row of a bot: a hash of its token (the same bot in every process; the token itself
    never reaches the database)."""
    return hashlib.sha256(bot_token.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class RestBudgetSettings:
    """How fast the processes of one bot may send together (the proposed config keys:
    ``discord.rest_budget_per_s``, ``discord.rest_budget_burst``,
    ``discord.rest_budget_fallback_per_s``)."""

    rate_per_s: float = DEFAULT_RATE_PER_S
    burst: float = DEFAULT_BURST
    fallback_rate_per_s: float = DEFAULT_FALLBACK_RATE_PER_S

    def __post_init__(self) -> None:
        if not self.rate_per_s > 0:
            raise ValueError(f"rate_per_s must be above 0 (got {self.rate_per_s!r})")
        if not self.burst >= 1:
            raise ValueError(f"burst must be at least 1 (got {self.burst!r})")
        if not self.fallback_rate_per_s > 0:
            raise ValueError(
                f"fallback_rate_per_s must be above 0 (got {self.fallback_rate_per_s!r})"
            )


@dataclass(frozen=True)
class Turn:
    """A request's turn: `at` is when it may go (on the database's clock for a shared turn, on
    this host's for a fallback one), `waited_s` how long the caller slept for it."""

    at: datetime
    waited_s: float
    shared: bool


class _LocalBucket:
    """The same bucket in memory, for one process while the database is away."""

    def __init__(self, rate_per_s: float, burst: float) -> None:
        self._rate = rate_per_s
        self._burst = burst
        self._tokens = burst
        self._at = time.monotonic()

    def take(self, count: float = 1.0) -> float:
        """Take (or give back, with -1) a turn; the seconds until it comes."""
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate) - count
        self._at = now
        return max(0.0, -self._tokens / self._rate)


class _Masked:
    """Error texts without the DSN's password."""

    def __init__(self, dsn: str) -> None:
        self._secrets = sorted((s for s in dsn_secrets(dsn) if s), key=len, reverse=True)

    def __call__(self, exc: BaseException) -> str:
        text = " ".join(str(exc).split()) or type(exc).__name__
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text


async def ensure_schema(connection: psycopg.AsyncConnection[Any]) -> None:
    """Create the budget's table if it is missing, under an advisory lock held to the end of the
    transaction (processes starting together wait for each other instead of racing)."""
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        await connection.execute(_SCHEMA)


class RestBudget:
    """The shared bucket of one bot, reached through a small connection pool.

    ``budget = await RestBudget.open(dsn, bot_token)``, then ``await budget.take()`` before each
    request (or `install_rest_budget` on a client), and ``await budget.close()`` at the end.
    """

    def __init__(
        self,
        pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]],
        key: str,
        settings: RestBudgetSettings,
        masked: Callable[[BaseException], str],
    ) -> None:
        self._pool = pool
        self.key = key
        self.settings = settings
        self._masked = masked
        self._fallback = _LocalBucket(settings.fallback_rate_per_s, 1.0)
        self._away = False  # the last statement failed: turns come from `_fallback`
        self._retry_at = 0.0  # while away, the next try of the database (time.monotonic())
        self._refunds: set[asyncio.Task[None]] = set()

    @classmethod
    async def open(
        cls,
        dsn: str,
        bot_token: str,
        settings: RestBudgetSettings | None = None,
        *,
        pool_max_size: int = POOL_MAX_SIZE,
    ) -> RestBudget:
        """Connect, create the table if needed and the bot's row (with `settings`' rate and
        burst). Raises psycopg.OperationalError, in libpq's words without the password, if the
        server cannot be reached: a process that starts without its database should say so,
        not run on."""
        import psycopg
        from psycopg_pool import AsyncConnectionPool

        settings = settings or RestBudgetSettings()
        masked = _Masked(dsn)
        redactor.add(dsn_secrets(dsn))
        pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
            dsn,
            kwargs={
                "autocommit": True,
                "connect_timeout": CONNECT_TIMEOUT_S,
                "application_name": APPLICATION_NAME,
            },
            min_size=1,
            max_size=pool_max_size,
            open=False,
            check=AsyncConnectionPool.check_connection,
            timeout=POOL_WAIT_S,
            name="notifier-rest-budget",
        )
        key = budget_key(bot_token)
        try:
            # One direct connection first: a server that is away fails here at once, in libpq's
            # words, where the pool would retry until its timeout and say only that.
            async with await psycopg.AsyncConnection.connect(
                dsn,
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT_S,
                application_name=APPLICATION_NAME,
            ) as connection:
                await ensure_schema(connection)
                await connection.execute(
                    _UPSERT, {"key": key, "rate": settings.rate_per_s, "burst": settings.burst}
                )
            await pool.open(wait=True, timeout=POOL_WAIT_S + CONNECT_TIMEOUT_S)
        except psycopg.Error as exc:  # PoolTimeout included: no connection within the wait
            await pool.close()
            raise psycopg.OperationalError(
                f"REST budget: cannot use PostgreSQL: {masked(exc)}"
            ) from None
        except BaseException:
            await pool.close()
            raise
        return cls(pool, key, settings, masked)

    async def take(self) -> Turn:
        """Wait for this request's turn. Cancelled while waiting, it gives the turn back."""
        reserving = asyncio.ensure_future(self._reserve(1.0))
        try:
            at, wait_s, shared = await asyncio.shield(reserving)
        except asyncio.CancelledError:
            self._give_back_later(reserving)
            raise
        if wait_s > 0:
            try:
                await asyncio.sleep(wait_s)
            except asyncio.CancelledError:
                self._give_back_later(reserving)
                raise
        return Turn(at=at, waited_s=wait_s, shared=shared)

    async def level(self) -> float:
        """The bucket's level now, without taking anything (below 0: turns handed out ahead)."""
        async with self._pool.connection() as connection:
            cursor = await connection.execute(
                f"SELECT least(burst, tokens + rate_per_s * greatest(0, extract(epoch FROM "
                f"clock_timestamp() - refreshed_at)::float8)) FROM {TABLE} WHERE bot_key = %s",
                (self.key,),
            )
            row = await cursor.fetchone()
        if row is None:
            raise LookupError(f"no {TABLE} row for this bot")
        return float(row[0])

    async def settle(self) -> None:
        """Return once every turn a cancelled waiter held has been given back."""
        while self._refunds:
            await asyncio.gather(*list(self._refunds), return_exceptions=True)

    async def close(self) -> None:
        """Give back the turns of cancelled waiters, then close the pool."""
        await self.settle()
        await self._pool.close()

    # -- internals ----------------------------------------------------------------------------

    async def _reserve(self, count: float) -> tuple[datetime, float, bool]:
        """Take (1) or give back (-1) a turn: when it comes, the seconds until then, and whether
        the shared bucket gave it."""
        import psycopg
        from psycopg_pool import PoolTimeout

        if self._away and time.monotonic() < self._retry_at:
            return self._fallback_turn(count)
        try:
            async with self._pool.connection() as connection:
                cursor = await connection.execute(_TAKE, {"key": self.key, "count": count})
                row = await cursor.fetchone()
                if row is None:  # the row was deleted under us: make it again, once
                    await connection.execute(
                        _UPSERT,
                        {
                            "key": self.key,
                            "rate": self.settings.rate_per_s,
                            "burst": self.settings.burst,
                        },
                    )
                    cursor = await connection.execute(_TAKE, {"key": self.key, "count": count})
                    row = await cursor.fetchone()
        except (psycopg.Error, PoolTimeout) as exc:
            if not self._away:
                logger.warning(
                    "REST budget: PostgreSQL failed ({}); this process sends at most {:g} "
                    "requests/s on its own until it answers again",
                    self._masked(exc),
                    self.settings.fallback_rate_per_s,
                )
            self._away = True
            self._retry_at = time.monotonic() + RETRY_AWAY_S
            return self._fallback_turn(count)
        if row is None:
            raise LookupError(f"no {TABLE} row for this bot, even after creating it")
        if self._away:
            logger.info("REST budget: PostgreSQL answers again; the shared budget applies")
            self._away = False
        tokens, rate_per_s, refreshed_at = row
        wait_s = max(0.0, -float(tokens) / float(rate_per_s))
        return refreshed_at + timedelta(seconds=wait_s), wait_s, True

    def _fallback_turn(self, count: float) -> tuple[datetime, float, bool]:
        wait_s = self._fallback.take(count)
        return datetime.now(UTC) + timedelta(seconds=wait_s), wait_s, False

    def _give_back_later(self, reserving: asyncio.Future[tuple[datetime, float, bool]]) -> None:
        """Give back the turn `reserving` took (once it is known), in a task `close` waits for."""
        task = asyncio.get_running_loop().create_task(self._give_back(reserving))
        self._refunds.add(task)
        task.add_done_callback(self._refunds.discard)

    async def _give_back(self, reserving: asyncio.Future[tuple[datetime, float, bool]]) -> None:
        try:
            _, _, shared = await reserving
        except Exception:  # noqa: BLE001 - the turn was never taken: nothing to give back
            return
        if not shared:
            self._fallback.take(-1.0)
            return
        await self._reserve(-1.0)


def install_rest_budget(client: nextcord.Client, budget: RestBudget) -> Callable[[], None]:
    """Make every bot-token REST request of `client` wait for its turn in `budget` first;
    returns the function that removes the hook (call it before closing the budget)."""

    async def wait() -> None:
        await budget.take()

    return before_bot_requests(client, wait)
