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
from typing import TYPE_CHECKING

import pytest

from .config import EmulatorConfig

if TYPE_CHECKING:
    from .emulator import DiscordEmulator

MARKER = "discord_emulator"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**fields): EmulatorConfig overrides for the discord_emulator fixture",
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
