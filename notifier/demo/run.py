"""The demo: `bot.py` with no Discord token plays the whole resilience story on this machine.

Everything listens on 127.0.0.1 only:

- the embedded Discord emulator (REST + gateway) with a short interaction-token lifetime (20 s
  instead of Discord's 15 minutes; `bot.py --demo-ttl`), and the real bot connected to it;
- a small web site for `/autointel` that answers each page slowly, so a `depth:deep` analysis
  (15 pages) takes about one and a half token lifetimes;
- an SMTP sink for the `email` notifier and the emulator's own incoming webhook in `#ops` for the
  `discord_webhook` and `timeout_warning` notifiers, configured in memory;
- the bot's store in a new temporary folder (never the configured `storage.path`).

Then alice runs `/autointel url depth:deep` and `notifier.demo.story` prints the timeline of what
happens (deferred, warning, progress, hand-off, expiry, persisted, delivered, e-mail, webhook,
`/retrieve_results` by the owner and by someone else) and a summary. The demo uses config.yaml's
runner, progress, logging and fanout retry settings, and its `workflows:` section (but
`results_channel_id`); the Discord connection, storage, notifiers, autointel and warning settings
are its own. `--keep-running` leaves it all up until Ctrl-C.

`--workflow NAME --option k=v` plays one run of any discovered workflow instead (`choice` checks
the name and the options before anything starts; `play` tells the run). The bot is built as for
Discord (`running_bot`: NotifierBot with its discovered workflows and their commands), so a new
workflow can be tried without a token. The demo's temporary folder is removed however it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

import yaml

from ..config import AutointelSettings, Settings, WarningSettings, resolve_paths
from ..testing import DiscordEmulator, EmulatorConfig
from ..testing.nextcord_support import patch_route_base
from ..testing.project_bot import running_bot
from ..testing.site import DemoSite
from ..workflows.contract import InvalidWorkflowOptions
from .choice import EXIT_REQUEST, ChosenWorkflow, DemoRequestError, choose_workflow
from .plan import DEFAULT_TTL_S, SITE_PAGES, DemoPlan
from .play import PlayRefused, PlayStalled, WorkflowPlay, play_summary
from .smtp import SmtpSink
from .story import Story, StoryStalled, Timeline, summary_lines

if TYPE_CHECKING:
    from ..app import NotifierBot

__all__ = ["demo_settings", "run_demo"]

MAIL_FROM: Final = "notifier@example.com"
MAIL_TO: Final = "ops@example.com"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def demo_settings(
    base: Settings,
    *,
    emulator: DiscordEmulator,
    plan: DemoPlan,
    data_dir: Path,
    smtp: SmtpSink,
    webhook: tuple[int, str],
    metrics_port: int | None = None,
) -> Settings:
    """The bot's settings for the demo: `base`'s runner, progress, logging and fanout retries;
    everything the story depends on is the demo's own."""
    kept = base.model_dump(mode="json", include={"runner", "progress", "logging", "fanout"})
    kept["workflows"] = _kept_workflows(base)
    hook_url = f"discord://{webhook[0]}/{webhook[1]}"
    pages = dict(AutointelSettings().pages, deep=SITE_PAGES)
    raw: dict[str, Any] = {
        **kept,
        "discord": {
            "token": emulator.bot_token,
            "api_base": emulator.api_base,
            "interaction_ttl": plan.ttl_s,
            "handoff_before": plan.handoff_before_s,
            "safety_margin": plan.safety_margin_s,
        },
        "storage": {"path": str(data_dir)},
        "autointel": {"allow_private_networks": True, "pages": pages, "page_delay": 0},
        "warnings": WarningSettings().model_dump(mode="json"),
        "metrics": {"listen": f"127.0.0.1:{metrics_port}" if metrics_port else None},
        "notifiers": [
            {
                "name": "ops-email",
                "plugin": "email",
                "on": ["completed"],
                "options": {"urls": [smtp.mailto_url(sender=MAIL_FROM, to=MAIL_TO)]},
                "templates": {
                    "completed": {
                        "title": "{command} finished for {user} in {duration}",
                        "body": "{summary}\n\nWorkflow {workflow_id}: {retrieval_command}",
                    }
                },
            },
            {
                "name": "ops-webhook",
                "plugin": "discord_webhook",
                "on": ["handoff", "completed", "failed"],
                "options": {"url": hook_url},
            },
            {
                "name": "long-run-warning",
                "plugin": "timeout_warning",
                "on": ["started"],
                "options": {"threshold_s": 600, "urls": [hook_url]},
            },
        ],
    }
    raw["fanout"] = {**raw.get("fanout", {}), "outbox_path": None}
    # Absolute paths: the config file the demo writes sits in its own folder, and relative paths
    # in a config file are read relative to that folder.
    return resolve_paths(Settings.model_validate(raw), Path.cwd())


def _kept_workflows(base: Settings) -> dict[str, Any]:
    """`base`'s `workflows:` section for the demo: where workflows are found and each one's
    settings, but no `results_channel_id` (a real Discord channel means nothing in the
    emulator: results go to the command's channel, #general)."""
    section = base.workflows
    kept: dict[str, Any] = {"dirs": [str(folder) for folder in section.dirs]}
    for name, settings in section.configured.items():
        kept[name] = settings.model_dump(mode="json", exclude={"results_channel_id"})
    return kept


def _write_config(settings: Settings, path: Path) -> None:
    """The demo's settings as a config file, for the CLI and `/notifier reload`."""
    data = settings.model_dump(mode="json")
    token = settings.discord.token
    data["discord"]["token"] = token.get_secret_value() if token is not None else None
    path.write_text(
        "# Written by the notifier demo; the emulator and sinks behind it are gone after it ends.\n"
        + yaml.safe_dump(data, sort_keys=False),
        encoding="utf-8",
    )
    path.chmod(0o600)


def _python() -> str:
    """How to run this interpreter from the project folder, for the printed commands."""
    executable = Path(sys.executable)
    try:
        return str(executable.relative_to(Path.cwd()))
    except ValueError:
        return str(executable)


async def run_demo(
    settings: Settings,
    config_path: Path | None,
    *,
    keep_running: bool,
    ttl_s: float = DEFAULT_TTL_S,
    out: TextIO | None = None,
    workflow: str | None = None,
    options: Mapping[str, str] | None = None,
) -> int:
    """Play the story, or with `workflow` one run of that workflow (`notifier demo --workflow
    NAME --option k=v`, `options` as text). Returns 0 when every step happened (for a workflow:
    its result was delivered), 1 when one did not (the timeline says which), 2 with one line on
    stderr for an unknown workflow or an option it refuses (before anything starts, or the
    bot's own refusal), 128 + the signal's number when SIGINT (Ctrl-C) or SIGTERM stopped it
    midway.

    `config_path` is the file `settings` came from (named in the header; its folder is where
    relative `workflows.dirs` are read, when `settings` were not loaded with their paths
    resolved).

    Everything the demo writes is under one new `notifier-demo-*` folder in the temporary
    directory, removed however the demo ends: done, failed, with `--keep-running` after Ctrl-C,
    or interrupted midway by SIGINT or SIGTERM (the bot, the emulator and the sinks are closed
    first, so nothing writes into the folder while it goes).
    """
    out = out or sys.stdout
    plan = DemoPlan(ttl_s)
    chosen: ChosenWorkflow | None = None
    if workflow is not None or options:
        try:
            chosen = await choose_workflow(settings, config_path, workflow, options or {})
        except DemoRequestError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_REQUEST
    timeline = Timeline(out)
    root = Path(tempfile.mkdtemp(prefix="notifier-demo-"))
    stops = _Stops(timeline)
    stops.install()
    try:
        async with _world(settings, config_path, root, plan, timeline, chosen) as world:
            try:
                if chosen is None:
                    return await _play_story(world, plan, timeline, stops, keep_running)
                return await _play_workflow(world, chosen, plan, timeline, stops, keep_running)
            finally:
                stops.closing = True  # the bot, the emulator and the sinks close undisturbed
    except asyncio.CancelledError:
        if stops.received is None:
            raise  # not ours: whoever cancelled the demo hears of it
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        return 128 + stops.received
    finally:
        stops.closing = True
        await _remove(root)
        stops.remove()
        timeline.line(f"the demo's temporary folder {root} is removed")


@dataclass(frozen=True, slots=True)
class _World:
    """Everything the demo started, with the bot connected to it."""

    emulator: DiscordEmulator
    site: DemoSite
    smtp: SmtpSink
    ops_channel_id: int
    ops_webhook_id: int
    metrics_port: int
    data_dir: Path
    config: Path
    bot: NotifierBot

    @property
    def cli(self) -> str:
        """The CLI against the demo's store, as a command to paste."""
        return f"{_python()} -m notifier --config {shlex.quote(str(self.config))}"


@contextlib.asynccontextmanager
async def _world(
    settings: Settings,
    config_path: Path | None,
    root: Path,
    plan: DemoPlan,
    timeline: Timeline,
    chosen: ChosenWorkflow | None,
) -> AsyncIterator[_World]:
    """Start the emulator, the slow site and the SMTP sink, then the bot, wired as the real bot
    is (`running_bot`: NotifierBot, its workflows and commands), with the demo's settings; print
    the header; close it all in reverse order on the way out."""
    data_dir = root / "data"
    demo_config = root / "config.yaml"
    if chosen is not None:
        why = f"--workflow {chosen.name}"
    elif settings.discord.token is None:
        why = "no Discord token configured"
    else:
        why = "--demo"
    emulator_config = EmulatorConfig(interaction_ttl_s=plan.ttl_s)
    async with (
        DiscordEmulator(emulator_config) as emulator,
        DemoSite(pages=SITE_PAGES, delay_s=plan.site_delay_s) as site,
        SmtpSink() as smtp,
    ):
        with patch_route_base(emulator):
            ops = emulator.add_channel("ops", topic="where operators hear about workflows")
            webhook = emulator.create_incoming_webhook(ops.id, name="notifier")
            metrics_port = _free_port()
            bot_settings = demo_settings(
                settings,
                emulator=emulator,
                plan=plan,
                data_dir=data_dir,
                smtp=smtp,
                webhook=webhook,
                metrics_port=metrics_port,
            )
            _write_config(bot_settings, demo_config)
            _header(timeline, why, config_path, emulator, plan, site, smtp, bot_settings)
            if chosen is not None:
                timeline.line(f"  workflow          /{chosen.name} from {chosen.source}")
            async with running_bot(emulator, bot_settings, config_path=demo_config) as bot:
                names = ", ".join(f"/{c.name}" for c in sorted(emulator.commands, key=_name))
                timeline.line(f"bot ready as {bot.user}; slash commands {names}")
                timeline.line()
                yield _World(
                    emulator=emulator,
                    site=site,
                    smtp=smtp,
                    ops_channel_id=ops.id,
                    ops_webhook_id=webhook[0],
                    metrics_port=metrics_port,
                    data_dir=data_dir,
                    config=demo_config,
                    bot=bot,
                )


async def _play_story(
    world: _World, plan: DemoPlan, timeline: Timeline, stops: _Stops, keep_running: bool
) -> int:
    story = Story(
        emulator=world.emulator,
        bot=world.bot,
        site_url=world.site.url,
        smtp=world.smtp,
        ops_channel_id=world.ops_channel_id,
        ops_webhook_id=world.ops_webhook_id,
        store_path=world.data_dir,
        timeline=timeline,
        step_limit_s=plan.step_limit_s,
    )
    try:
        facts = await story.play(url_label=world.site.url)
    except StoryStalled as exc:
        timeline.say(f"STOPPED: {exc}")
        timeline.line("(the bot's log: run again with --verbose)")
        return 1
    timeline.line()
    for line in summary_lines(facts, ttl_s=plan.ttl_s, requests=world.emulator.requests):
        timeline.line(line)
    ok = facts.owner_served and facts.others_refused and facts.calls_after_expiry == 0
    await _after(world, timeline, stops, keep_running)
    return 0 if ok else 1


async def _play_workflow(
    world: _World,
    chosen: ChosenWorkflow,
    plan: DemoPlan,
    timeline: Timeline,
    stops: _Stops,
    keep_running: bool,
) -> int:
    emulator = world.emulator
    if emulator.command_named(chosen.name) is None:
        offered = ", ".join(sorted(f"/{c.name}" for c in emulator.commands))
        timeline.line(f"STOPPED: the bot registered no /{chosen.name} command (it has {offered})")
        return 1
    try:
        typed = chosen.command_options(site_url=world.site.url)
    except InvalidWorkflowOptions as exc:  # checked before the start; kept for certainty
        print(f"error: /{chosen.name}: {exc}", file=sys.stderr)
        return EXIT_REQUEST
    play = WorkflowPlay(
        emulator=emulator,
        bot=world.bot,
        command=chosen.name,
        options=typed,
        smtp=world.smtp,
        ops_webhook_id=world.ops_webhook_id,
        store_path=world.data_dir,
        timeline=timeline,
        step_limit_s=plan.step_limit_s,
    )
    try:
        facts = await play.play()
    except PlayStalled as exc:
        timeline.say(f"STOPPED: {exc}")
        timeline.line("(the bot's log: run again with --verbose)")
        return 1
    except PlayRefused as exc:
        print(f"error: /{chosen.name} was not started: {exc}", file=sys.stderr)
        return EXIT_REQUEST
    timeline.line()
    summary = play_summary(facts, command=chosen.name, ttl_s=plan.ttl_s, requests=emulator.requests)
    for line in summary:
        timeline.line(line)
    await _after(world, timeline, stops, keep_running)
    return 0 if facts.delivered else 1


async def _after(world: _World, timeline: Timeline, stops: _Stops, keep_running: bool) -> None:
    """The end of a play: with --keep-running, the hints to look around and the wait for
    Ctrl-C; otherwise a word on where the store went."""
    if keep_running:
        _explore(timeline, world.emulator, world.site, world.metrics_port, world.cli)
        await stops.wait()
        timeline.line("stopping: the bot closes, then the emulator and the sinks")
    else:
        timeline.line(
            "  The store was in a temporary folder, removed at exit; "
            "--keep-running keeps it (and everything else) up to look around."
        )


class _Stops:
    """SIGINT (Ctrl-C) and SIGTERM while the demo runs.

    Before `--keep-running`'s wait, a signal cancels the demo's task: the bot, the emulator and
    the sinks close as their blocks unwind, then the temporary folder is removed (`run_demo`).
    During the wait, it ends the wait. Once the demo is closing, another one is ignored, so a
    second Ctrl-C cannot leave the folder behind half removed.
    """

    def __init__(self, timeline: Timeline) -> None:
        self._timeline = timeline
        self._task = asyncio.current_task()
        self._waiting: asyncio.Event | None = None
        self._installed: list[signal.Signals] = []
        self.received: int | None = None
        self.closing = False

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, self._on_signal, signum)
            except (RuntimeError, ValueError):  # not the main thread: the caller handles signals
                continue
            self._installed.append(signum)

    def remove(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in self._installed:
            loop.remove_signal_handler(signum)
        self._installed.clear()

    async def wait(self) -> None:
        """Until SIGINT or SIGTERM (`--keep-running`)."""
        self._waiting = asyncio.Event()
        await self._waiting.wait()
        self.closing = True

    def _on_signal(self, signum: signal.Signals) -> None:
        if self.closing:
            return
        if self._waiting is not None:
            self._waiting.set()
            return
        self.closing = True
        self.received = int(signum)
        self._timeline.line()
        self._timeline.line(
            f"{signum.name} received: stopping; the bot closes, then the emulator and the sinks"
        )
        if self._task is not None:
            self._task.cancel()


async def _remove(root: Path) -> None:
    """Remove the demo's folder, on a thread (it holds the store: files and SQLite databases);
    should this await be cancelled too, the removal finishes here before the cancellation goes on."""
    try:
        await asyncio.to_thread(shutil.rmtree, root, True)
    except asyncio.CancelledError:
        shutil.rmtree(root, ignore_errors=True)
        raise


def _name(command: Any) -> str:
    return str(command.name)


def _header(
    timeline: Timeline,
    why: str,
    config_path: Path | None,
    emulator: DiscordEmulator,
    plan: DemoPlan,
    site: DemoSite,
    smtp: SmtpSink,
    settings: Settings,
) -> None:
    notifiers = "; ".join(
        f"{n.name} ({n.plugin} on {', '.join(e.value for e in n.on)})" for n in settings.notifiers
    )
    config = f" (settings from {config_path})" if config_path is not None else ""
    timeline.line(f"notifier demo{config}: {why}, so everything runs here, on 127.0.0.1.")
    timeline.line(
        f"  Discord emulator  {emulator.api_base}  "
        f"interaction tokens live {plan.ttl_s:g} s here (15 min on Discord)"
    )
    timeline.line(
        f"  web site          {site.url}  {SITE_PAGES} pages, each answered after "
        f"{plan.site_delay_s:g} s"
    )
    timeline.line(f"  SMTP sink         127.0.0.1:{smtp.port}  webhook sink: #ops")
    timeline.line(f"  notifiers         {notifiers}")
    timeline.line(f"  result store      {settings.storage.path}")


def _explore(
    timeline: Timeline, emulator: DiscordEmulator, site: DemoSite, metrics_port: int, cli: str
) -> None:
    general = emulator.channel_id
    lines = [
        "",
        "--keep-running: everything stays up until Ctrl-C. To look around:",
        f"  the bot's metrics        curl -s http://127.0.0.1:{metrics_port}/metrics",
        f"  the stored results       {cli} results list",
        f"  the notifier outbox      {cli} outbox list",
        f"  messages in #general     curl -s -H 'Authorization: Bot {emulator.bot_token}' "
        f"{emulator.api_base}/channels/{general}/messages",
        f"  the slow web site        {site.url}",
        f"  the bot's process        kill -TERM {os.getpid()}  (or Ctrl-C)",
    ]
    for line in lines:
        timeline.line(line)
