"""README "Operating it": the systemd unit, as an operator would install it.

The unit is read out of README.md, checked for what running a bot as a service needs (the token in
an `EnvironmentFile=`, a user of its own, a state directory that `storage.path` points at, the
network before start, a sandbox, no restart loop on a config error), and handed to systemd's own
checker: `systemd-analyze verify` (every key known, every value parsed; with the `notifier`
program replaced by one that exists here) and `systemd-analyze security --offline=yes` (the
sandbox's exposure score).
"""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from docs.readme import ROOT, block, section

from notifier.config import Settings

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed on this machine"
)
# The sandbox's exposure as `systemd-analyze security` scores it (0 best, 10 worst); "OK" is < 2.
EXPOSURE_AT_MOST = 2.0


def unit_text() -> str:
    return block("ini", "[Unit]").text


def unit() -> configparser.ConfigParser:
    """The unit as sections of keys; a key given twice (SystemCallFilter) keeps its last value."""
    parsed = configparser.ConfigParser(interpolation=None, strict=False)
    parsed.optionxform = str  # type: ignore[assignment,method-assign]
    parsed.read_string(unit_text())
    return parsed


def prose() -> str:
    """The systemd bullet's text around the unit, on one line."""
    text = section("Operating it")
    return " ".join(text[text.index("- **systemd**") : text.index("```ini")].split())


def test_the_token_comes_from_an_environment_file_never_the_unit() -> None:
    service = unit()["Service"]
    assert "Environment" not in service
    assert "DISCORD_TOKEN" not in unit_text()
    env_file = service["EnvironmentFile"]
    assert env_file.startswith("/")  # not "-/...": a missing token file must stop the start
    assert f"`DISCORD_TOKEN=...` in `{env_file}` (owned by root, mode 600" in prose()


def test_it_runs_the_installed_notifier_command_as_its_own_user() -> None:
    service = unit()["Service"]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    program, *args = shlex.split(service["ExecStart"])
    assert Path(program).name in project["scripts"]  # the console script pip installs
    assert args[:1] == ["run"]
    config = args[args.index("--config") + 1]
    venv = Path(program).parent.parent
    assert f"`python3.12 -m venv {venv} && {venv}/bin/pip install {project['name']}`" in prose()
    assert f"the config in `{config}`" in prose()

    user = service["User"]
    assert user not in ("root", "0") and service["Group"] == user
    assert f"`useradd --system --home-dir /var/lib/{service['StateDirectory']}" in prose()


def test_storage_path_is_the_state_directory_and_the_only_writable_place() -> None:
    service = unit()["Service"]
    state = f"/var/lib/{service['StateDirectory']}"
    assert f"`storage.path: {state}`" in prose()
    assert service["ReadWritePaths"].split() == [state]
    assert service["WorkingDirectory"] == state
    assert service["ProtectSystem"] == "strict"
    assert service["StateDirectoryMode"] == "0700"  # results are the users' data
    assert Settings.model_validate({"storage": {"path": state}}).storage.path == Path(state)


def test_it_starts_after_the_network_and_stops_and_reloads_the_way_the_bot_expects() -> None:
    parsed = unit()
    assert parsed["Unit"]["Wants"] == "network-online.target"
    assert "network-online.target" in parsed["Unit"]["After"].split()
    service = parsed["Service"]
    assert shlex.split(service["ExecReload"]) == ["/bin/kill", "-HUP", "$MAINPID"]
    assert service["KillSignal"] == "SIGTERM"
    # systemd waits longer than the bot's own drain (workflows' grace, then the fanout's).
    grace = Settings().runner.shutdown_grace
    assert float(service["TimeoutStopSec"]) >= 2 * grace + 30
    assert parsed["Install"]["WantedBy"] == "multi-user.target"
    # The bot's start handles the two signals the unit sends (run: tests/docs/test_readme_bot.py).
    start = (ROOT / "notifier" / "cli" / "run.py").read_text(encoding="utf-8")
    assert "signal.SIGHUP" in start and "signal.SIGTERM" in start


def test_a_config_error_is_not_restarted_in_a_loop() -> None:
    """Exit 2 is every start-up failure (tests/config/test_startup_failures.py), 3 a nextcord
    outside the tested range (tests/architecture/test_nextcord_compat.py): restarting repeats
    them. A crash (any other status) is restarted; SIGTERM's clean exit 0 is not."""
    service = unit()["Service"]
    assert service["Restart"] == "on-failure"
    assert set(service["RestartPreventExitStatus"].split()) == {"2", "3"}


def test_the_sandbox_has_the_usual_hardening() -> None:
    service = unit()["Service"]
    expected = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectControlGroups": "yes",
        "RestrictSUIDSGID": "yes",
        "LockPersonality": "yes",
        "CapabilityBoundingSet": "",
        "UMask": "0077",
    }
    assert {key: service.get(key) for key in expected} == expected
    # Page workers are subprocesses on Unix sockets; the bot talks HTTP(S) and resolves names.
    assert set(service["RestrictAddressFamilies"].split()) >= {"AF_UNIX", "AF_INET", "AF_INET6"}
    assert "MemoryDenyWriteExecute" not in service


def installable_copy(tmp_path: Path) -> Path:
    """The README's unit as a file, its program replaced by one that exists on this machine
    (systemd-analyze refuses an ExecStart it cannot find; the installed path is checked above)."""
    program = shlex.split(unit()["Service"]["ExecStart"])[0]
    stand_in = shutil.which("true")
    assert stand_in is not None
    text = unit_text()
    assert text.count(f"ExecStart={program} ") == 1
    path = tmp_path / "notifier.service"
    path.write_text(text.replace(f"ExecStart={program} ", f"ExecStart={stand_in} "))
    return path


@needs_systemd_analyze
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    path = installable_copy(tmp_path)
    done = subprocess.run(
        [str(SYSTEMD_ANALYZE), "verify", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # verify exits 0 on unknown keys and unparsable values, warning on stderr: both must be empty.
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


@needs_systemd_analyze
def test_systemd_analyze_security_rates_the_sandbox_ok(tmp_path: Path) -> None:
    path = installable_copy(tmp_path)
    done = subprocess.run(
        [str(SYSTEMD_ANALYZE), "security", "--offline=yes", "--no-pager", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (score,) = re.findall(r"Overall exposure level for notifier\.service: ([\d.]+)", done.stdout)
    assert float(score) <= EXPOSURE_AT_MOST, done.stdout
