"""IDENTIFYs spaced across gateway processes that share one bot token, and Discord's refusals.

Theory of operation. Discord starts at most `max_concurrency` gateway sessions of a bot per
5 seconds: each IDENTIFY falls in the bucket ``shard_id % max_concurrency`` (`identify_bucket`)
and a bucket takes one IDENTIFY per 5 s. One that comes too early is answered with op 9, and
nextcord waits and tries again; every attempt counts against the bot's daily session starts.
nextcord spaces the shards of one process (its `before_identify_hook` sleeps 5 s before every
IDENTIFY but the process's first), but two processes started together know nothing of each
other, and the first IDENTIFY of each goes at once.

`IdentifyPacer` lets processes that share a PostgreSQL database take turns, in one transaction
per IDENTIFY:

1. ``pg_advisory_xact_lock(IDENTIFY_LOCK_CLASS, bucket)``: one process per bucket at a time; the
   others queue inside PostgreSQL (no polling), and a process that dies mid-turn lets go with its
   connection;
2. read the bucket's last IDENTIFY from `IDENTIFY_TABLE` and sleep, still holding the lock, until
   `window_s` plus `margin_s` have passed since, on the server's clock (the machines' clocks
   need not agree);
3. record the server's clock as the bucket's last IDENTIFY and commit (the lock goes with the
   transaction); nextcord sends the IDENTIFY as the hook returns.

The margin: the time recorded is taken a few milliseconds before the IDENTIFY leaves (the commit's
round trip, the event loop, the network to Discord), and those milliseconds differ between two
processes; a quarter of a second keeps their IDENTIFYs the window apart where Discord counts.

`max_concurrency` is read once per process from ``GET /gateway/bot`` (``session_start_limit``;
nextcord's own `get_bot_gateway` drops it). If that fails, 1: every shard in one bucket, slower
but never refused. If PostgreSQL cannot be reached, the turn is not shared: the process waits one
window on its own (as nextcord would between its own shards) and says so in the log; an IDENTIFY
Discord then finds too early costs a retry, nothing more.

The table is created here (``CREATE TABLE IF NOT EXISTS`` under an advisory transaction lock, so
processes starting together do not race on the catalog) until the store's migration runner owns
it. psycopg is imported only when a pacer first runs: the demo and a bot without PostgreSQL never
need it.

Discord's refusal of a shard (close code 4010: a shard count other than the one the other
processes use, or a shard another session holds; 4011: sharding required) ends nextcord's
connect; `shard_refusal` turns it into the one-line ConfigError the bot exits with.
"""

from __future__ import annotations

import asyncio
import importlib.util
from typing import TYPE_CHECKING, Final

import aiohttp
import nextcord
from loguru import logger

from ..config import Settings, dsn_secrets
from ..errors import ConfigError
from ..logs import MASK
from .compat import Route, request

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "DISCORD_IDENTIFY_WINDOW_S",
    "IDENTIFY_LOCK_CLASS",
    "IDENTIFY_MARGIN_S",
    "IDENTIFY_TABLE",
    "INVALID_SHARD",
    "SHARDING_REQUIRED",
    "IdentifyPacer",
    "identify_bucket",
    "shard_refusal",
]

# Discord's rule: one IDENTIFY per bucket per 5 s.
DISCORD_IDENTIFY_WINDOW_S: Final = 5.0
# See the module docstring: the spread between recording a turn and Discord seeing the IDENTIFY.
IDENTIFY_MARGIN_S: Final = 0.25
# Discord's gateway close codes for a shard it will not serve (nextcord never reconnects after them).
INVALID_SHARD: Final = 4010
SHARDING_REQUIRED: Final = 4011

IDENTIFY_TABLE: Final = "notifier_identify_buckets"
# The first key of every advisory lock taken here ("NIDB" in ASCII); the second is the bucket, or
# `_TABLE_LOCK` while the table is created. Other components use other first keys.
IDENTIFY_LOCK_CLASS: Final = 0x4E494442
_TABLE_LOCK: Final = -1
# A process that hangs (stopped, not dead) while holding a turn keeps its connection and so the
# lock: after this long the others stop waiting for it and pace themselves.
_LOCK_WAIT_LIMIT_S: Final = 300
_CONNECT_TIMEOUT_S: Final = 5

_CREATE_TABLE: Final = f"""
CREATE TABLE IF NOT EXISTS {IDENTIFY_TABLE} (
    bucket integer PRIMARY KEY,
    last_identify_at timestamptz NOT NULL
)
"""
# Seconds still to wait (0 when none), on the server's clock; no row: this bucket never identified.
_WAIT_S: Final = f"""
SELECT greatest(0, extract(epoch FROM last_identify_at - clock_timestamp()) + %s)::float8
FROM {IDENTIFY_TABLE} WHERE bucket = %s
"""
_RECORD: Final = f"""
INSERT INTO {IDENTIFY_TABLE} (bucket, last_identify_at) VALUES (%s, clock_timestamp())
ON CONFLICT (bucket) DO UPDATE SET last_identify_at = excluded.last_identify_at
"""


def identify_bucket(shard_id: int, max_concurrency: int) -> int:
    """The rate-limit bucket of a shard's IDENTIFY (Discord's rule)."""
    return shard_id % max(1, max_concurrency)


def shard_refusal(exc: BaseException, shard_count: int | None = None) -> ConfigError | None:
    """The one line to stop with when Discord closed the gateway because of the shard settings
    (4010, 4011); None for any other failure."""
    if not isinstance(exc, nextcord.ConnectionClosed):
        return None
    if exc.code == INVALID_SHARD:
        shard = f"shard {exc.shard_id}" + (f" of {shard_count}" if shard_count else "")
        return ConfigError(
            "discord.shard_ids",
            f"Discord refused {shard} (close code {INVALID_SHARD}, invalid shard): "
            "another gateway session holds it (two processes configured with the same shard?), "
            "or discord.shard_count differs from the other processes'",
        )
    if exc.code == SHARDING_REQUIRED:
        return ConfigError(
            "discord.shard_count",
            f"Discord requires this bot to shard (close code {SHARDING_REQUIRED}): set "
            "discord.shard_count",
        )
    return None


class IdentifyPacer:
    """Takes turns with the other gateway processes of a bot before each IDENTIFY (see the
    module docstring). `dsn` is the shared database; `window_s` Discord's spacing per bucket."""

    def __init__(
        self,
        dsn: str,
        *,
        window_s: float = DISCORD_IDENTIFY_WINDOW_S,
        margin_s: float = IDENTIFY_MARGIN_S,
    ) -> None:
        self._dsn = dsn
        self._secrets = [s for s in dsn_secrets(dsn) if s]
        self.window_s = window_s
        self.margin_s = margin_s
        self._max_concurrency: int | None = None
        self._table_ready = False

    @classmethod
    def for_settings(cls, settings: Settings) -> IdentifyPacer | None:
        """The pacer of a sharded bot whose processes share ``storage.postgres_dsn``; None when
        no DSN is set (nextcord then paces this process's shards alone). ConfigError if psycopg
        is not installed."""
        dsn = settings.storage.postgres_dsn
        if dsn is None:
            return None
        if importlib.util.find_spec("psycopg") is None:
            raise ConfigError(
                "storage.postgres_dsn",
                "spacing IDENTIFYs across gateway processes needs psycopg: "
                "pip install 'nextcord-notifier[postgres]'",
            )
        return cls(dsn.get_secret_value(), window_s=settings.discord.identify_window)

    @property
    def spacing_s(self) -> float:
        """The least time between two IDENTIFYs of one bucket this pacer lets through."""
        return self.window_s + self.margin_s

    async def wait_turn(self, client: nextcord.Client, shard_id: int) -> None:
        """Return when `shard_id` may IDENTIFY: its bucket's turn is taken and recorded."""
        bucket = identify_bucket(shard_id, await self._bucket_count(client))
        import psycopg  # the postgres extra; see the module docstring

        try:
            waited_s = await self._take_turn(bucket)
        except psycopg.Error as exc:
            logger.warning(
                "IDENTIFY of shard {}: PostgreSQL did not give a turn ({}); waiting {:g} s on "
                "this process's own",
                shard_id,
                self._describe(exc),
                self.spacing_s,
            )
            await asyncio.sleep(self.spacing_s)
            return
        logger.info(
            "IDENTIFY of shard {}: bucket {}'s turn taken after waiting {:.2f} s",
            shard_id,
            bucket,
            waited_s,
        )

    async def _take_turn(self, bucket: int) -> float:
        """Steps 1-3 of the module docstring; returns the seconds slept for the window."""
        import psycopg

        async with await psycopg.AsyncConnection.connect(
            self._dsn,
            autocommit=True,
            connect_timeout=_CONNECT_TIMEOUT_S,
            application_name="notifier-identify",
        ) as conn:
            if not self._table_ready:
                await self._create_table(conn)
                self._table_ready = True
            async with conn.transaction():
                await conn.execute(f"SET LOCAL lock_timeout = '{_LOCK_WAIT_LIMIT_S}s'")
                await conn.execute(
                    "SELECT pg_advisory_xact_lock(%s, %s)", (IDENTIFY_LOCK_CLASS, bucket)
                )
                cursor = await conn.execute(_WAIT_S, (self.spacing_s, bucket))
                row = await cursor.fetchone()
                wait_s = float(row[0]) if row is not None else 0.0
                if wait_s > 0:
                    await asyncio.sleep(wait_s)
                await conn.execute(_RECORD, (bucket,))
            return wait_s

    @staticmethod
    async def _create_table(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
        async with conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(%s, %s)", (IDENTIFY_LOCK_CLASS, _TABLE_LOCK)
            )
            await conn.execute(_CREATE_TABLE)

    async def _bucket_count(self, client: nextcord.Client) -> int:
        """Discord's `max_concurrency` for this bot, asked once (1 if it cannot be read)."""
        if self._max_concurrency is None:
            try:
                data = await request(client, Route("GET", "/gateway/bot"), auth=True)
                self._max_concurrency = max(1, int(data["session_start_limit"]["max_concurrency"]))
            except (
                nextcord.HTTPException,
                aiohttp.ClientError,
                OSError,
                LookupError,
                TypeError,
                ValueError,
            ) as exc:
                logger.warning(
                    "GET /gateway/bot gave no max_concurrency ({}): every shard identifies in "
                    "one bucket",
                    exc,
                )
                self._max_concurrency = 1
        return self._max_concurrency

    def _describe(self, exc: BaseException) -> str:
        """An error on one line, the DSN's password masked (libpq may quote the DSN back)."""
        text = " ".join(str(exc).split()) or type(exc).__name__
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text
