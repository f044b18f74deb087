"""`pip install nextcord-notifier` gives a bot: the wheel, installed into a fresh venv outside the
source tree, runs the README's "Installing it" commands (`notifier init`, `notifier config check`,
`notifier demo`, `notifier run --config config.yaml`) and `notifier notifiers list` from a folder
that is not the project's; `run` against the Discord emulator.

The wheel is built from a copy of the tree (what git tracks, plus new files not ignored), so no
`build/` left from an earlier build can slip into it. The fresh venv gets the wheel with
`--no-deps` and sees the dependencies through a `.pth` naming this venv's site-packages (nothing
downloaded); the distributions only the dev extras bring (pytest, hypothesis, mypy, ruff,
aiosmtpd, setuptools, ...) are made unimportable there, so a command that needs one fails here
as it would for an operator. A decoy top-level `plugins` package sits in the fresh
site-packages: importing it raises, and its plugin file raises when loaded.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import textwrap
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name
from packaging_support import (
    DEV_TOOLS,
    DISTRIBUTION,
    ROOT,
    dependency_closure,
    readme_install_commands,
)

from notifier.fanout.discovery import discover_plugins
from notifier.testing import CapturedProcess, DiscordEmulator

LIMIT_S = 300  # only stops a hung child from hanging the suite
README = readme_install_commands()


@dataclass(frozen=True)
class Installed:
    """The wheel and the fresh venv it is installed in."""

    wheel: Path
    venv: Path
    site_packages: Path
    workdir: Path  # outside the tree; `notifier init` has written config.yaml here

    def env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("DISCORD_TOKEN", "DISCORD_API_BASE", "PYTHONPATH", "VIRTUAL_ENV")
        }
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """`argv` with the venv's `bin/` program, in the work folder; waited for."""
        return subprocess.run(
            [str(self.venv / "bin" / argv[0]), *argv[1:]],
            cwd=self.workdir,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=LIMIT_S,
            check=False,
        )


def _build_wheel(into: Path) -> Path:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    source = into / "source"
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    wheels = into / "wheels"
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", str(source), "--no-deps"),
            *("--no-build-isolation", "--no-index", "-q", "-w", str(wheels)),
        ],
        check=True,
        timeout=LIMIT_S,
    )
    (wheel,) = wheels.glob("nextcord_notifier-*.whl")
    return wheel


def _dev_only_modules() -> set[str]:
    """Top-level modules of the distributions only the dev extras bring in."""
    runtime = dependency_closure(DISTRIBUTION)
    dev_only = dependency_closure(DISTRIBUTION, frozenset({"dev"})) - runtime
    assert dev_only >= DEV_TOOLS  # the list below is not empty by accident
    modules: set[str] = set()
    for module, dists in importlib.metadata.packages_distributions().items():
        names = {canonicalize_name(d) for d in dists}
        if module.isidentifier() and names & dev_only and not names & runtime:
            modules.add(module)
    return modules


BLOCKER = """\
import sys

BLOCKED = frozenset({blocked!r})


class DevExtrasAreNotInstalled:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (a dev extra)", name=name)
        return None


sys.meta_path.insert(0, DevExtrasAreNotInstalled)
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    base = tmp_path_factory.mktemp("wheel-test")
    wheel = _build_wheel(base)
    venv = base / "fresh-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site_packages = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    this_site = sysconfig.get_paths()["purelib"]
    (site_packages / "_no_dev_extras.py").write_text(
        BLOCKER.format(blocked=sorted(_dev_only_modules()))
    )
    (site_packages / "dependencies.pth").write_text(f"import _no_dev_extras\n{this_site}\n")
    decoy = site_packages / "plugins"
    decoy.mkdir()
    (decoy / "__init__.py").write_text("raise RuntimeError('the decoy plugins package')\n")
    (decoy / "decoy.py").write_text("raise RuntimeError('a decoy plugin file was loaded')\n")
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "--python", str(python), "install"),
            *("--no-deps", "--no-index", "-q", str(wheel)),
        ],
        check=True,
        timeout=LIMIT_S,
    )
    workdir = base / "somewhere-else"
    workdir.mkdir()
    assert not workdir.resolve().is_relative_to(ROOT) and not venv.is_relative_to(ROOT)
    yield Installed(wheel=wheel, venv=venv, site_packages=site_packages, workdir=workdir)


@pytest.fixture(scope="module")
def initialised(installed: Installed) -> subprocess.CompletedProcess[str]:
    """The README's `notifier init` in the empty work folder (the other commands run beside it)."""
    return installed.run(*README["init"][1])


def test_the_readme_installs_the_distribution_this_project_builds(installed: Installed) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert README["install"][1] == ["pip", "install", project["name"]]
    assert project["scripts"] == {"notifier": "notifier.cli.main:main"}
    assert installed.wheel.name.startswith(f"{project['name'].replace('-', '_')}-")


def test_the_wheel_holds_the_builtin_plugins_and_the_config_as_they_are(
    installed: Installed,
) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())
        packaged_config = wheel.read("notifier/cli/config.yaml")
    builtins = {p.name for p in (ROOT / "plugins").glob("*.py") if not p.name.startswith("_")}
    assert builtins >= {"email.py", "discord_webhook.py", "apprise.py", "dm.py"}
    assert {f"notifier/builtin_plugins/{name}" for name in builtins} <= names
    assert not [name for name in names if name.startswith("plugins/")]  # no top-level `plugins`
    assert packaged_config == (ROOT / "config.yaml").read_bytes()


def test_init_writes_the_projects_config_and_says_what_next(
    installed: Installed, initialised: subprocess.CompletedProcess[str]
) -> None:
    assert initialised.returncode == 0, initialised.stderr
    written = installed.workdir / "config.yaml"
    assert written.read_bytes() == (ROOT / "config.yaml").read_bytes()
    assert "DISCORD_TOKEN" in initialised.stdout
    assert f"notifier config check --config {written}" in initialised.stdout
    assert f"notifier run --config {written}" in initialised.stdout


def test_config_check_passes_on_the_written_config(
    installed: Installed, initialised: subprocess.CompletedProcess[str]
) -> None:
    done = installed.run(*README["config"][1])

    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("ok: "), done.stdout


def test_notifiers_list_shows_every_builtin_plugin(
    installed: Installed, initialised: subprocess.CompletedProcess[str]
) -> None:
    builtin_names = discover_plugins(entry_points=False).names  # from the tree's plugins/

    done = installed.run("notifier", "notifiers", "list")

    assert done.returncode == 0, done.stdout + done.stderr
    assert set(builtin_names) >= {"email", "discord_webhook", "apprise", "dm"}
    folder = installed.site_packages / "notifier" / "builtin_plugins"
    for name in builtin_names:  # each on a line of its own, from the installed package
        line = f"{name} .* {re.escape(str(folder / name))}\\.py$"
        assert re.search(line, done.stdout, re.M), (name, done.stdout)
    assert "decoy" not in done.stdout + done.stderr


def test_the_builtin_plugins_come_from_the_package_never_from_a_plugins_package(
    installed: Installed,
) -> None:
    probe = textwrap.dedent(
        """
        import json, sys
        import notifier
        from notifier.fanout.discovery import BUILTIN_PLUGIN_DIR, discover_plugins
        registry = discover_plugins()
        try:
            import pytest
            dev_extras = "importable"
        except ModuleNotFoundError:
            dev_extras = "blocked"
        print(json.dumps({
            "package": notifier.__file__,
            "builtin_dir": str(BUILTIN_PLUGIN_DIR),
            "sources": dict(registry.sources),
            "errors": [str(e) for e in registry.errors],
            "plugins_imported": "plugins" in sys.modules,
            "dev_extras": dev_extras,
        }))
        """
    )
    done = installed.run("python", "-c", probe)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)

    package = installed.site_packages / "notifier"
    assert seen["package"] == str(package / "__init__.py")  # the wheel's, not the tree's
    assert seen["builtin_dir"] == str(package / "builtin_plugins")
    assert seen["errors"] == []  # the decoy's file would be an error here
    assert not seen["plugins_imported"]
    for name in ("email", "discord_webhook", "apprise", "dm"):
        assert seen["sources"][name] == str(package / "builtin_plugins" / f"{name}.py")
    assert seen["dev_extras"] == "blocked"  # what the commands here ran without


def test_the_demo_runs_to_a_delivered_result(
    installed: Installed, initialised: subprocess.CompletedProcess[str]
) -> None:
    done = installed.run(*README["demo"][1], "--demo-ttl", "5")  # a short token: a short story

    assert done.returncode == 0, done.stdout + done.stderr
    assert "result delivered" in done.stdout, done.stdout
    assert "Traceback" not in done.stderr, done.stderr


async def test_run_connects_registers_the_commands_and_stops_on_sigterm(
    installed: Installed, initialised: subprocess.CompletedProcess[str], emulator: DiscordEmulator
) -> None:
    assignments, argv = README["run"]
    assert assignments == {"DISCORD_TOKEN": "..."}
    env = installed.env() | {
        "DISCORD_TOKEN": emulator.bot_token,
        "DISCORD_API_BASE": emulator.api_base,  # config.yaml's api_base reads it
    }
    program = str(installed.venv / "bin" / argv[0])
    async with CapturedProcess.running(program, *argv[1:], env=env, cwd=installed.workdir) as bot:
        await bot.wait_until(lambda: emulator.ready_count >= 1, what="the bot's READY")
        await emulator.wait_for_commands("autointel", "retrieve_results", timeout_s=30)
        bot.send(signal.SIGTERM)
        assert await bot.finish() == 0, bot.output()
    assert "Traceback" not in bot.output()
    assert (installed.workdir / "data").is_dir()  # storage.path ./data, beside config.yaml
