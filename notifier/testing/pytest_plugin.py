"""pytest plugin (entry point ``notifier_emulator``): the ``discord_emulator`` fixture.

Provides:

* ``discord_emulator_base_config`` -- suite-wide :class:`EmulatorConfig`
  defaults; override it in a ``conftest.py``.
* ``discord_emulator_config`` -- the base config with per-test overrides from
  ``@pytest.mark.discord_emulator(interaction_ttl_s=1.5, ...)``.
* ``discord_emulator`` -- a started :class:`DiscordEmulator` with
  ``nextcord.http.Route.BASE`` pointed at it; both are undone afterwards.
* ``postgres_server`` (session) -- a PostgreSQL server found or started by
  :func:`notifier.testing.postgres.find_postgres`; skips naming the reason when
  there is none, or fails when ``NOTIFIER_REQUIRE_POSTGRES=1`` (CI).
* ``postgres_dsn`` -- the DSN of a new, empty database on that server with
  ``pg_trgm`` enabled, dropped (``WITH (FORCE)``) after the test.

Heavy imports happen inside the fixtures so that merely having this plugin
installed costs nothing for unrelated test runs (and psycopg, the ``postgres``
extra, is needed only by tests that ask for PostgreSQL).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Final, NoReturn

import pytest

from .config import EmulatorConfig

if TYPE_CHECKING:
    from ..app import NotifierBot
    from .emulator import DiscordEmulator
    from .postgres import PostgresServer

MARKER = "discord_emulator"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**fields): EmulatorConfig overrides for the discord_emulator fixture",
    )
    config.addinivalue_line(
        "markers", "notifier_config(overrides): config.yaml-shaped overrides for the bot fixture"
    )


@pytest.fixture
def discord_emulator_base_config() -> EmulatorConfig:
    """Suite-wide defaults; override this fixture in a ``conftest.py`` to change them."""
    return EmulatorConfig()


@pytest.fixture
def discord_emulator_config(
    request: pytest.FixtureRequest, discord_emulator_base_config: EmulatorConfig
) -> EmulatorConfig:
    """The base config plus the fields of a ``discord_emulator`` marker, if any."""
    base = discord_emulator_base_config
    config = dataclasses.replace(base, rate_limits=dict(base.rate_limits))
    marker = request.node.get_closest_marker(MARKER)
    if marker is not None:
        config = dataclasses.replace(config, **marker.kwargs)
    return config


try:
    from pytest_asyncio import fixture as _async_fixture
except ImportError:  # pragma: no cover - pytest then reports the unhandled async fixture
    _async_fixture = pytest.fixture  # type: ignore[assignment]


@_async_fixture
async def discord_emulator(
    discord_emulator_config: EmulatorConfig,
) -> AsyncIterator[DiscordEmulator]:
    """A running emulator with nextcord's ``Route.BASE`` redirected to it."""
    from .emulator import DiscordEmulator
    from .nextcord_support import patch_route_base

    async with DiscordEmulator(discord_emulator_config) as emulator:
        with patch_route_base(emulator):
            yield emulator


@pytest.fixture
def emulator(discord_emulator: DiscordEmulator) -> DiscordEmulator:
    """Short name for ``discord_emulator``."""
    return discord_emulator


@_async_fixture
async def bot(
    request: pytest.FixtureRequest, discord_emulator: DiscordEmulator, tmp_path: Path
) -> AsyncIterator[NotifierBot]:
    """The project's real bot, connected to the emulator, storing under ``tmp_path``.

    ``@pytest.mark.notifier_config({...})`` deep-merges config.yaml-shaped overrides.
    """
    from .project_bot import bot_settings, running_bot

    marker = request.node.get_closest_marker("notifier_config")
    overrides = marker.args[0] if marker is not None and marker.args else {}
    settings = bot_settings(discord_emulator, tmp_path / "data", overrides)
    async with running_bot(discord_emulator, settings) as running:
        yield running


# PostgreSQL ---------------------------------------------------------------------------------------

# Set in CI (.ci/run): a PostgreSQL test that finds no server fails instead of skipping.
REQUIRE_POSTGRES_ENV: Final = "NOTIFIER_REQUIRE_POSTGRES"
_TRUTHY: Final = frozenset({"1", "true", "yes", "on"})
_FALSY: Final = frozenset({"", "0", "false", "no", "off"})


def postgres_required(env: Mapping[str, str]) -> bool:
    """Whether `NOTIFIER_REQUIRE_POSTGRES` in `env` makes a missing server a failure, not a skip.
    An unknown value is an error, so a typo cannot quietly turn CI's failures into skips."""
    value = env.get(REQUIRE_POSTGRES_ENV, "").strip().lower()
    if value in _TRUTHY:
        return True
    if value in _FALSY:
        return False
    raise ValueError(
        f"{REQUIRE_POSTGRES_ENV}={env[REQUIRE_POSTGRES_ENV]!r}: expected 1/true/yes/on or "
        "0/false/no/off (or unset)"
    )


def no_postgres(reason: str, env: Mapping[str, str]) -> NoReturn:
    """End the test for want of PostgreSQL: skip naming `reason`, or fail when `env` requires it."""
    if postgres_required(env):
        pytest.fail(
            f"{REQUIRE_POSTGRES_ENV} is set and no PostgreSQL server was found: {reason}",
            pytrace=False,
        )
    pytest.skip(f"no PostgreSQL server: {reason}")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The PostgreSQL server this session's tests use (see `notifier.testing.postgres`); a
    throwaway cluster started for it is stopped and removed at the end of the session."""
    postgres_required(os.environ)  # a typo in the setting is an error even when a server answers
    try:
        from .postgres import find_postgres
    except ImportError as error:  # psycopg absent: an environment without the postgres extra
        no_postgres(f"{error} (pip install 'nextcord-notifier[postgres]')", os.environ)
    with find_postgres(os.environ) as found:
        if found.server is None:
            no_postgres(found.reason, os.environ)
        yield found.server


@pytest.fixture
def postgres_dsn(postgres_server: PostgresServer) -> Iterator[str]:
    """A new, empty database for this test alone (``pg_trgm`` enabled); dropped afterwards."""
    from .postgres import fresh_database

    with fresh_database(postgres_server) as dsn:
        yield dsn
