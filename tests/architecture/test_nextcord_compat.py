"""notifier.discord.compat: every private nextcord name in one place, checked when it is imported.

A nextcord release that drops one of them must stop the bot at start, in one line that names the
installed version and the tested range, not break every reply later.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

import nextcord
import nextcord.gateway
import nextcord.http
import pytest

from notifier.discord import compat
from notifier.errors import NextcordIncompatible

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _no_init(self: object, *args: object, **kwargs: object) -> None:
    """An ``__init__`` that sets nothing, standing in for a release that renamed an attribute."""


# (what the check names, how to take it away from the installed nextcord)
REMOVALS: list[tuple[str, Callable[[pytest.MonkeyPatch], None]]] = [
    ("nextcord.http.Route.BASE", lambda mp: mp.delattr(nextcord.http.Route, "BASE")),
    (
        "HTTPClient.request(auth=...)",
        lambda mp: mp.setattr(nextcord.http.HTTPClient, "request", lambda self, route: None),
    ),
    ("HTTPClient.__session", lambda mp: mp.setattr(nextcord.http.HTTPClient, "__init__", _no_init)),
    ("HTTPClient.recreate()", lambda mp: mp.delattr(nextcord.http.HTTPClient, "recreate")),
    ("Interaction._session", lambda mp: mp.setattr(nextcord.Interaction, "__slots__", ("id",))),
    ("Client._connection", lambda mp: mp.setattr(nextcord.Client, "__init__", _no_init)),
    (
        "DiscordWebSocket._keep_alive",
        lambda mp: mp.setattr(nextcord.gateway.DiscordWebSocket, "__init__", _no_init),
    ),
    (
        "KeepAliveHandler._last_ack",
        lambda mp: mp.setattr(nextcord.gateway.KeepAliveHandler, "__init__", _no_init),
    ),
    ("ShardInfo._parent", lambda mp: mp.setattr(nextcord.ShardInfo, "__slots__", ("id",))),
]


@pytest.fixture
def fresh_import() -> Iterator[Callable[[], object]]:
    """Import compat anew (its check runs at import); the module every other one holds is put
    back afterwards."""
    original = sys.modules["notifier.discord.compat"]

    def load() -> object:
        sys.modules.pop("notifier.discord.compat", None)
        return importlib.import_module("notifier.discord.compat")

    yield load
    sys.modules["notifier.discord.compat"] = original


@pytest.mark.parametrize(("name", "remove"), REMOVALS, ids=[name for name, _ in REMOVALS])
def test_a_nextcord_without_one_private_name_stops_the_import_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
    fresh_import: Callable[[], object],
    name: str,
    remove: Callable[[pytest.MonkeyPatch], None],
) -> None:
    remove(monkeypatch)
    monkeypatch.setattr(nextcord, "__version__", "3.9.0")

    with pytest.raises(NextcordIncompatible) as caught:
        fresh_import()

    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("nextcord 3.9.0 is installed, but notifier is tested with nextcord")
    assert compat.TESTED_NEXTCORD in message
    assert f"needs {name}, which this version lacks" in message


def test_the_installed_nextcord_has_every_name(fresh_import: Callable[[], object]) -> None:
    module = fresh_import()
    assert module.api_base().startswith("http")  # type: ignore[attr-defined]


def test_the_tested_range_is_the_range_pyproject_pins() -> None:
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    (pin,) = [d for d in project["dependencies"] if d.startswith("nextcord")]
    assert pin == f"nextcord{compat.TESTED_NEXTCORD}"


def test_bot_py_prints_the_one_line_and_exits_3(tmp_path: Path) -> None:
    """The operator's view: the bot refuses to start, with the line and nothing else."""
    config = tmp_path / "config.yaml"
    config.write_text(f"storage: {{path: {tmp_path / 'data'}}}\n")
    script = textwrap.dedent(
        f"""
        import runpy, sys
        import nextcord.http
        del nextcord.http.Route.BASE
        sys.argv = ["bot.py", "--config", {str(config)!r}, "--demo"]
        runpy.run_path({str(PROJECT_ROOT / "bot.py")!r}, run_name="__main__")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 3, done.stderr
    assert done.stderr.splitlines() == [
        f"error: nextcord {nextcord.__version__} is installed, but notifier is tested with "
        f"nextcord {compat.TESTED_NEXTCORD} and needs nextcord.http.Route.BASE, which this "
        f"version lacks; install a tested release: pip install 'nextcord{compat.TESTED_NEXTCORD}'"
    ]
    assert not (tmp_path / "data").exists()  # stopped before the store was opened
