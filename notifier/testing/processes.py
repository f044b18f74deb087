"""A child process (bot.py, the CLI, a script) whose output a test reads as it comes.

Tests start the real `bot.py` and kill it at chosen moments; they need its output both while it
runs (to wait for a log line) and after (to show it when an assertion fails), and a process a
failing test leaves behind must be killed, not inherited by the next test.

`bot_process(config_path, emulator)` is the one way a test starts the project's bot as a process:
the same argv and environment everywhere, ready (READY sent, commands registered) on entry,
killed on exit; `write_bot_config` writes the config file it reads. `run_cli(config_path, ...)` is
the one way a test runs the operator's CLI (`python -m notifier`) as an operator does.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Self

import yaml

from .polling import Predicate, wait_until
from .project_bot import PROJECT_ROOT

if TYPE_CHECKING:
    from .emulator import DiscordEmulator

__all__ = [
    "BotProcess",
    "CapturedProcess",
    "CliResult",
    "bot_process",
    "child_env",
    "run_cli",
    "write_bot_config",
]

# Limits that only stop a broken run from hanging the suite; nothing here measures speed.
PROCESS_LIMIT_S = 60.0
# How much of the output a failure message shows (the end: where it went wrong).
_SHOWN_CHARS = 6000


def child_env(**extra: str) -> dict[str, str]:
    """This process's environment for a child, plus `extra`: without `DISCORD_TOKEN` and
    `DISCORD_API_BASE` (a test names the Discord it means, in the config file or in `extra`),
    with unbuffered output (its lines arrive as they are written)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISCORD_TOKEN", "DISCORD_API_BASE")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


async def _pump(stream: asyncio.StreamReader | None, into: list[str]) -> None:
    if stream is None:
        return
    while line := await stream.readline():
        into.append(line.decode("utf-8", "replace"))


@dataclass
class CapturedProcess:
    """The process and the lines it wrote so far (stdout only if captured).

    ``async with CapturedProcess.running(*argv, env=..., cwd=...) as child:`` kills it on the way
    out; `start` alone leaves that to the caller.
    """

    process: asyncio.subprocess.Process
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    readers: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    async def start(
        cls,
        *argv: str,
        env: dict[str, str],
        cwd: Path,
        capture_stdout: bool = True,
        **fields: Any,
    ) -> Self:
        """Start `argv` with its output read into `stdout`/`stderr` by background tasks;
        `fields` go to a subclass's own fields."""
        process = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE if capture_stdout else asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        running = cls(process, **fields)
        running.readers = [
            asyncio.create_task(_pump(process.stdout, running.stdout)),
            asyncio.create_task(_pump(process.stderr, running.stderr)),
        ]
        return running

    @classmethod
    @contextlib.asynccontextmanager
    async def running(
        cls,
        *argv: str,
        env: dict[str, str],
        cwd: Path,
        capture_stdout: bool = True,
        **fields: Any,
    ) -> AsyncIterator[Self]:
        """`start`, and `kill` on the way out (whatever the test did to it meanwhile)."""
        child = await cls.start(*argv, env=env, cwd=cwd, capture_stdout=capture_stdout, **fields)
        try:
            yield child
        finally:
            await child.kill()

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return "".join(self.stdout) + "\n--- stderr ---\n" + "".join(self.stderr)

    def stderr_text(self) -> str:
        return "".join(self.stderr)

    def stderr_has(self, text: str) -> bool:
        return any(text in line for line in self.stderr)

    def send(self, signum: int) -> None:
        self.process.send_signal(signum)

    async def wait_until(
        self, predicate: Predicate, *, what: str, timeout_s: float = PROCESS_LIMIT_S
    ) -> None:
        """`polling.wait_until` that also fails (AssertionError) as soon as the process exits
        with `predicate` still false; either failure shows the end of the output."""

        async def holds() -> bool:
            value = predicate()
            if inspect.isawaitable(value):
                value = await value
            if not value and self.process.returncode is not None:
                raise AssertionError(
                    f"the process exited ({self.process.returncode}) while waiting for {what}:\n"
                    + self.output()[-_SHOWN_CHARS:]
                )
            return bool(value)

        try:
            await wait_until(holds, timeout_s=timeout_s, what=what)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{self.output()[-_SHOWN_CHARS:]}") from None

    async def finish(self, limit_s: float = PROCESS_LIMIT_S) -> int:
        """Wait for the exit and for both pipes to be read to the end (TimeoutError after
        `limit_s`: a hung child fails the test instead of hanging it)."""
        code = await asyncio.wait_for(self.process.wait(), limit_s)
        await asyncio.gather(*self.readers)
        return code

    async def kill(self) -> None:
        """SIGKILL (by its own pid) if it still runs, then reap it: the cleanup after a test."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        await self.process.wait()
        await asyncio.gather(*self.readers, return_exceptions=True)


@dataclass(kw_only=True)
class BotProcess(CapturedProcess):
    """bot.py (or a script started like it), knowing the bot token it must never print."""

    token: str

    async def kill_9(self) -> None:
        """SIGKILL: no handler runs, no buffer is flushed, nothing is closed."""
        self.send(signal.SIGKILL)
        assert await self.finish() == -signal.SIGKILL

    async def stop(self) -> None:
        """SIGTERM, a clean exit (0), and nothing alarming in what it wrote."""
        self.send(signal.SIGTERM)
        code = await self.finish()
        assert code == 0, self.output()[-_SHOWN_CHARS:]
        self.assert_clean()

    def assert_clean(self) -> None:
        """No traceback in its output, and the bot token nowhere in it."""
        output = self.output()
        assert "Traceback" not in output, output[-_SHOWN_CHARS:]
        assert self.token not in output, "the bot token reached the output"


@contextlib.asynccontextmanager
async def bot_process(
    config_path: Path,
    emulator: DiscordEmulator,
    *,
    script: Path = PROJECT_ROOT / "bot.py",
    args: Sequence[str] = (),
    commands: Sequence[str] = ("autointel", "retrieve_results"),
    capture_stdout: bool = False,
) -> AsyncIterator[BotProcess]:
    """`python SCRIPT --config CONFIG_PATH ARGS...` from the project root, talking to `emulator`.

    The bot token is in the environment as `TEST_BOT_TOKEN` (a config file says
    `token: ${TEST_BOT_TOKEN}`); nothing else about Discord is (see `child_env`). On entry the
    process is ready: the emulator sent it a new READY and has its `commands`. On exit it is killed
    (by its own pid) if it still runs.
    """
    ready_before = emulator.ready_count
    async with BotProcess.running(
        sys.executable,
        str(script),
        "--config",
        str(config_path),
        *args,
        cwd=PROJECT_ROOT,
        env=child_env(TEST_BOT_TOKEN=emulator.bot_token),
        capture_stdout=capture_stdout,
        token=emulator.bot_token,
    ) as bot:
        await bot.wait_until(lambda: emulator.ready_count > ready_before, what="READY")
        await emulator.wait_for_commands(*commands, timeout_s=PROCESS_LIMIT_S)
        yield bot


def write_bot_config(
    tmp_path: Path, emulator: DiscordEmulator, extra: Mapping[str, Any] | None = None
) -> Path:
    """tmp_path/config.yaml for `bot_process`: the token from the environment
    (`${TEST_BOT_TOKEN}`), the data folder in tmp_path, the project's plugins, DEBUG logging to
    stderr. Each section of `extra` is merged into the section of that name (its keys win);
    any other value replaces it."""
    config: dict[str, Any] = {
        "discord": {"token": "${TEST_BOT_TOKEN}", "api_base": emulator.api_base},
        "storage": {"path": str(tmp_path / "data")},
        "autointel": {"allow_private_networks": True},
        "progress": {"min_interval": 0.2},
        "fanout": {"plugin_dirs": [str(PROJECT_ROOT / "plugins")], "backoff_initial": 0.2},
        "runner": {"shutdown_grace": 5.0},
        "logging": {"level": "DEBUG"},
    }
    for section, values in (extra or {}).items():
        if isinstance(values, Mapping) and isinstance(config.get(section), dict):
            config[section] = {**config[section], **values}
        else:
            config[section] = values
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


class CliResult(NamedTuple):
    """How a CLI run ended: its exit code and everything it wrote."""

    returncode: int
    stdout: str
    stderr: str


async def run_cli(config_path: Path, *args: str, limit_s: float = PROCESS_LIMIT_S) -> CliResult:
    """`python -m notifier --config CONFIG_PATH ARGS...` from the project root, as an operator
    runs it: a process of its own, reading the store from disk beside a bot that may be running
    on this very event loop (so it is awaited, never waited for). TimeoutError after `limit_s`."""
    async with CapturedProcess.running(
        sys.executable,
        "-m",
        "notifier",
        "--config",
        str(config_path),
        *args,
        env=child_env(),
        cwd=PROJECT_ROOT,
    ) as child:
        code = await child.finish(limit_s)
    return CliResult(code, "".join(child.stdout), child.stderr_text())
