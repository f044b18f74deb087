"""pytest plugin (entry point ``notifier_emulator``): the ``discord_emulator`` fixture.

Provides:

* ``discord_emulator_base_config`` -- suite-wide :class:`EmulatorConfig`
  defaults; override it in a ``conftest.py``.
* ``discord_emulator_config`` -- the base config with per-test overrides from
  ``@pytest.mark.discord_emulator(interaction_ttl_s=1.5, ...)``.
* ``discord_emulator`` -- a started :class:`DiscordEmulator` with
  ``nextcord.http.Route.BASE`` pointed at it; both are undone afterwards.

Heavy imports happen inside the fixtures so that merely having this plugin
installed costs nothing for unrelated test runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from .config import EmulatorConfig

if TYPE_CHECKING:
    from ..app import NotifierBot
    from .emulator import DiscordEmulator

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
