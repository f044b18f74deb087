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

Turns are taken with one statement (`_TAKE`): under the row's lock it refills the bucket for the
time since `refreshed_at` (``rate_per_s`` a second, never above ``burst``) and takes as many turns
as the process has callers waiting. It always takes, even from an empty bucket: the level goes
below zero, and the caller of the turn k places before the batch's last sleeps ``-(tokens + k) /
rate_per_s`` seconds (when positive) for the turn it reserved. So nobody polls the database and
nobody wakes up to lose a race; turns are handed out in the order the statements reach the row,
across processes; and the requests that go in any span of ``t`` seconds are at most ``rate_per_s *
t + burst``: in any one second, ``rate_per_s + burst``. Keep that sum under 50 minus what goes
around the budget and minus the jitter between a turn and its request's arrival at Discord (waking
up, nextcord, the network): the defaults (45/s, burst 1: at most 46 in any second) leave 4.
Measured (bench/rest_budget.py, 8 and 20 processes on 2 shared cores): never more than 45 turns in
any second, but up to 50 requests arriving in one, when the emulator's own loop stalled for up to
110 ms and handled the requests of that time together.

Each process has at most one statement in flight (`_pump`): callers who arrive meanwhile wait for
the next one, which takes all their turns at once. Two thousand requests queued at once cost a
few statements, not two thousand, and the row's lock is never what they wait for.

A caller cancelled before its statement is sent takes nothing. One cancelled later (the statement
in flight, or asleep until its turn) gives its turn back with the next statement (``tokens + 1``;
`settle` and `close` wait for it): cancelling takes nothing. A process killed while its callers
wait does not give their turns back; they pass unused, which wastes a little of the budget and
never exceeds it.

When the database cannot be reached the requests do not stop: each process falls back to a
bucket of its own at ``fallback_rate_per_s`` (default 2/s: twenty processes stay under 50),
says so once in the log, tries the database again every ``RETRY_AWAY_S`` and uses the shared
bucket again as soon as a statement succeeds.

The schema: the table is the migration set ``rest_budget`` (`REST_BUDGET_MIGRATIONS`), with its
version row in ``notifier_schema_versions`` like the store's and the outbox's sets. `open`
applies it (`apply_rest_budget_migrations`, through the one migration engine,
`notifier.schema_migrations`: one transaction under its advisory lock, so processes starting
together apply each step once); a database at a newer version is refused in words. ``notifier db
migrate`` registers `REST_BUDGET_SET` as it registers the outbox's.

The hook: `install_rest_budget(client, budget)` makes every bot-token request of a nextcord
client wait for its turn right before it goes out (`compat.before_bot_requests`): after
nextcord's own limiters, so a request nextcord holds for its route's bucket takes its turn when
it is sent, not when it was queued (queued turns would all go out together when the bucket
resets), and once per attempt, so nextcord's retry after a 429 takes a turn too. Only a bot whose
results live in PostgreSQL opens a budget; without PostgreSQL nothing here is imported, psycopg
included. Importing the module loads neither psycopg nor nextcord (``notifier db migrate`` reads
`REST_BUDGET_MIGRATIONS` without them).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from loguru import logger

from ..config import DiscordSettings, dsn_secrets
from ..errors import StoreError
from ..logs import MASK, redactor
from ..schema_migrations import SchemaNewer, migrate, numbered

if TYPE_CHECKING:
    import nextcord
    import psycopg
    from psycopg_pool import AsyncConnectionPool

__all__ = [
    "DEFAULT_BURST",
    "DEFAULT_FALLBACK_RATE_PER_S",
    "DEFAULT_RATE_PER_S",
    "REST_BUDGET_COMPONENT",
    "REST_BUDGET_MIGRATIONS",
    "REST_BUDGET_SET",
    "TABLE",
    "RestBudget",
    "RestBudgetSettings",
    "Turn",
    "apply_rest_budget_migrations",
    "budget_key",
    "install_rest_budget",
    "share_rest_budget",
]

# Discord's 50 requests/s less headroom: at most rate + burst = 46 requests in any second.
DEFAULT_RATE_PER_S: Final = 45.0
DEFAULT_BURST: Final = 1.0
# Per process, while the database is away: twenty processes together stay under 50/s.
DEFAULT_FALLBACK_RATE_PER_S: Final = 2.0
TABLE: Final = "notifier_rest_budget"
# One statement in flight per process (`_pump`), and one connection for `level`.
POOL_MAX_SIZE: Final = 2
# How long a statement waits for a pooled connection before it falls back (the server is away).
POOL_WAIT_S: Final = 5.0
CONNECT_TIMEOUT_S: Final = 5
# While the database is away, turns come from the process's own bucket without asking it; it is
# tried again this often (one request then waits up to POOL_WAIT_S to find out).
RETRY_AWAY_S: Final = 5.0
APPLICATION_NAME: Final = "notifier-rest-budget"
REST_BUDGET_COMPONENT: Final = "rest_budget"

# Step N brings the budget's table from version N-1 to N. Never edit a released step: append one.
REST_BUDGET_MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: one token bucket per bot.
    f"""
    CREATE TABLE IF NOT EXISTS {TABLE} (
        bot_key      text             PRIMARY KEY,
        rate_per_s   double precision NOT NULL CHECK (rate_per_s > 0),
        burst        double precision NOT NULL CHECK (burst >= 1),
        tokens       double precision NOT NULL,
        refreshed_at timestamptz      NOT NULL
    )
    """,
)
REST_BUDGET_SET: Final = numbered(REST_BUDGET_COMPONENT, REST_BUDGET_MIGRATIONS)
# A new bot starts with a full bucket; a process started with other settings changes the row's
# rate and burst (the last one started wins, and every process then follows the row).
_UPSERT: Final = f"""
INSERT INTO {TABLE} (bot_key, rate_per_s, burst, tokens, refreshed_at)
VALUES (%(key)s, %(rate)s, %(burst)s, %(burst)s, clock_timestamp())
ON CONFLICT (bot_key) DO UPDATE SET rate_per_s = excluded.rate_per_s, burst = excluded.burst
"""
# %(taken)s turns taken and %(given_back)s given back by cancelled callers, in one statement.
# clock_timestamp() is read once the row's lock is held (a statement that waited for the lock sees
# the time it got it); the second call is microseconds later, and greatest() keeps `refreshed_at`
# from going back.
_TAKE: Final = f"""
UPDATE {TABLE}
   SET tokens = least(
           burst,
           tokens + %(given_back)s + rate_per_s
               * greatest(0, extract(epoch FROM clock_timestamp() - refreshed_at)::float8)
       ) - %(taken)s,
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
        self.rate_per_s = rate_per_s
        self._burst = burst
        self._tokens = burst
        self._at = time.monotonic()

    def take(self, taken: int, given_back: int) -> float:
        """`_TAKE` in memory: the level after it."""
        now = time.monotonic()
        refilled = self._tokens + given_back + (now - self._at) * self.rate_per_s
        self._tokens = min(self._burst, refilled) - taken
        self._at = now
        return self._tokens


@dataclass(frozen=True)
class _Batch:
    """What one statement answered: the level after it, the rate, when it ran, and whether the
    shared bucket answered it (False: the fallback bucket did)."""

    level: float
    rate_per_s: float
    at: datetime
    shared: bool

    def turn(self, index: int, taken: int) -> tuple[datetime, float]:
        """When the `index`-th of the `taken` turns comes, and the seconds until then."""
        wait_s = max(0.0, -(self.level + (taken - 1 - index)) / self.rate_per_s)
        return self.at + timedelta(seconds=wait_s), wait_s


class _Masked:
    """Error texts without the DSN's password."""

    def __init__(self, dsn: str) -> None:
        self._secrets = sorted((s for s in dsn_secrets(dsn) if s), key=len, reverse=True)

    def __call__(self, exc: BaseException) -> str:
        text = " ".join(str(exc).split()) or type(exc).__name__
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text


async def apply_rest_budget_migrations(connection: psycopg.AsyncConnection[Any]) -> int:
    """Bring the budget's table to the newest version this code knows, through the one migration
    engine (`notifier.schema_migrations`: one transaction under the schema advisory lock); return
    that version. StoreError if the database is at a newer one (a newer notifier migrated it)."""
    try:
        await migrate(connection, [REST_BUDGET_SET])
    except SchemaNewer as exc:
        raise StoreError(
            f"the REST budget's table in this database is at schema version {exc.found}, newer "
            f"than this notifier knows ({exc.latest}): a newer notifier migrated it; run that "
            "version (or newer) here"
        ) from None
    return REST_BUDGET_SET.latest


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
        self._waiting: list[asyncio.Future[tuple[datetime, float, bool]]] = []
        self._given_back = 0  # shared turns of cancelled callers, for the next statement
        self._pump_task: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls,
        dsn: str,
        bot_token: str,
        settings: RestBudgetSettings | None = None,
        *,
        pool_max_size: int = POOL_MAX_SIZE,
    ) -> RestBudget:
        """Connect, migrate the budget's table (`apply_rest_budget_migrations`) and create or
        update the bot's row (with `settings`' rate and burst). Raises psycopg.OperationalError,
        in libpq's words without the password, if the server cannot be reached (a process that
        starts without its database should say so, not run on), StoreError if the table's schema
        is newer than this code knows."""
        import psycopg
        from psycopg_pool import AsyncConnectionPool

        from ..pg_pool import IdleCheckedConnection, check_if_idle, note_returned

        settings = settings or RestBudgetSettings()
        masked = _Masked(dsn)
        redactor.add(dsn_secrets(dsn))
        pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
            dsn,
            connection_class=IdleCheckedConnection,
            kwargs={
                "autocommit": True,
                "connect_timeout": CONNECT_TIMEOUT_S,
                "application_name": APPLICATION_NAME,
            },
            min_size=1,
            max_size=pool_max_size,
            open=False,
            # A connection used moments ago goes out without a ping of its own (`pg_pool`).
            check=check_if_idle,
            reset=note_returned,
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
                await apply_rest_budget_migrations(connection)
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
        """Wait for this request's turn. Cancelled before it comes, it takes nothing."""
        turn: asyncio.Future[tuple[datetime, float, bool]] = (
            asyncio.get_running_loop().create_future()
        )
        self._waiting.append(turn)
        self._start_pump()
        at, wait_s, shared = await turn  # cancelled here: the pump sees it (module docstring)
        if wait_s > 0:
            try:
                await asyncio.sleep(wait_s)
            except asyncio.CancelledError:
                self._give_back(shared)
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
        """Return once no statement is due: every waiting caller has its turn and every turn a
        cancelled caller held has been given back."""
        while self._pump_task is not None and not self._pump_task.done():
            await asyncio.shield(self._pump_task)

    async def close(self) -> None:
        """Give back the turns of cancelled callers (`settle`), then close the pool."""
        await self.settle()
        await self._pool.close()

    # -- internals ----------------------------------------------------------------------------

    def _start_pump(self) -> None:
        if self._pump_task is None or self._pump_task.done():
            self._pump_task = asyncio.get_running_loop().create_task(
                self._pump(), name="rest-budget"
            )

    def _give_back(self, shared: bool) -> None:
        """A cancelled caller's turn, asleep until it came: back to the bucket it came from."""
        if shared:
            self._given_back += 1
            self._start_pump()
        else:
            self._fallback.take(0, 1)

    async def _pump(self) -> None:
        """One statement at a time, for every caller waiting when it is sent (module docstring)."""
        while self._waiting or self._given_back:
            batch = [turn for turn in self._waiting if not turn.done()]  # cancelled: take nothing
            self._waiting.clear()
            given_back, self._given_back = self._given_back, 0
            if not batch and not given_back:
                continue
            try:
                answer = await self._statement(len(batch), given_back)
            except Exception as exc:  # noqa: BLE001 - every caller hears of it, the pump goes on
                for turn in batch:
                    if not turn.done():
                        turn.set_exception(exc)
                continue
            for index, turn in enumerate(batch):
                if turn.cancelled():  # cancelled while the statement was in flight
                    self._give_back(answer.shared)
                    continue
                at, wait_s = answer.turn(index, len(batch))
                turn.set_result((at, wait_s, answer.shared))

    async def _statement(self, taken: int, given_back: int) -> _Batch:
        """`_TAKE` on the shared row, or on the fallback bucket while the database fails."""
        import psycopg
        from psycopg_pool import PoolTimeout

        if self._away and time.monotonic() < self._retry_at:
            return self._fallback_batch(taken, given_back)
        params = {"key": self.key, "taken": taken, "given_back": given_back}
        try:
            async with self._pool.connection() as connection:
                cursor = await connection.execute(_TAKE, params)
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
                    cursor = await connection.execute(_TAKE, params)
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
            return self._fallback_batch(taken, 0)  # shared turns given back are lost: no harm
        if row is None:
            raise LookupError(f"no {TABLE} row for this bot, even after creating it")
        if self._away:
            logger.info("REST budget: PostgreSQL answers again; the shared budget applies")
            self._away = False
        tokens, rate_per_s, refreshed_at = row
        return _Batch(float(tokens), float(rate_per_s), refreshed_at, shared=True)

    def _fallback_batch(self, taken: int, given_back: int) -> _Batch:
        level = self._fallback.take(taken, given_back)
        return _Batch(level, self._fallback.rate_per_s, datetime.now(UTC), shared=False)


def install_rest_budget(client: nextcord.Client, budget: RestBudget) -> Callable[[], None]:
    """Make every bot-token REST request of `client` wait for its turn in `budget` first;
    returns the function that removes the hook (call it before closing the budget)."""

    from .compat import before_bot_requests  # nextcord: only for a process that holds a client

    async def wait() -> None:
        await budget.take()

    return before_bot_requests(client, wait)


async def share_rest_budget(
    client: nextcord.Client, *, dsn: str, bot_token: str, discord: DiscordSettings
) -> Callable[[], Awaitable[None]]:
    """Open the bot's budget with the ``discord.rest_budget_*`` settings and install it on
    `client` (a gateway bot or a worker's REST client); returns the coroutine function that
    removes the hook and closes the budget, for the process's shutdown."""
    budget = await RestBudget.open(
        dsn,
        bot_token,
        RestBudgetSettings(
            rate_per_s=discord.rest_budget_per_s,
            burst=discord.rest_budget_burst,
            fallback_rate_per_s=discord.rest_budget_fallback_per_s,
        ),
    )
    remove = install_rest_budget(client, budget)

    async def stop_sharing() -> None:
        remove()
        await budget.close()

    return stop_sharing
