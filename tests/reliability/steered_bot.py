"""The bot as a real process for the `kill -9` cells, with /autointel's body steered through files.

    python tests/reliability/steered_bot.py --config FILE --control DIR

Start-up is production's (config file, logging set-up, `NotifierBot.open`, `bot.start(token)`); only
the workflow body is replaced. The body touches `DIR/started` when it runs, reports progress
("crunching") once `DIR/report` exists, fails once `DIR/fail` exists and returns its result once
`DIR/release` exists. The test kills this process with SIGKILL: nothing here cleans up.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from notifier.app import NotifierBot
from notifier.config import load_config
from notifier.logs import setup_logging
from notifier.workflows import ReportProgress, WorkflowFailed, WorkflowSpec

RESULT = {
    "url": "http://127.0.0.1/",
    "title": "Steered result",
    "summary": "A result the fault matrix controlled.",
    "pages_analysed": 3,
}
ERROR_TEXT = "the analysed site went away mid-run"


class FileSteered:
    def __init__(self, control: Path) -> None:
        self.control = control

    async def validate(self, options: Mapping[str, str]) -> dict[str, str]:
        return {"url": options.get("url", ""), "depth": options.get("depth", "quick")}

    async def run(self, options: Mapping[str, str], report: ReportProgress) -> dict[str, Any]:
        report(stage="working", progress=0.1)
        (self.control / "started").touch()
        reported = False
        while True:
            if not reported and (self.control / "report").exists():
                report(stage="crunching", progress=0.5, detail="halfway before the kill")
                reported = True
            if (self.control / "fail").exists():
                raise WorkflowFailed(ERROR_TEXT)
            if (self.control / "release").exists():
                return dict(RESULT)
            await asyncio.sleep(0.02)


async def run(config: Path, control: Path) -> None:
    settings = load_config(config)
    bot = NotifierBot(settings, config_path=config, guild_ready_timeout_s=0.05)
    await bot.open()
    steered = FileSteered(control)
    bot.workflows["autointel"] = WorkflowSpec(
        name="autointel",
        description="steered by the fault matrix",
        validate=steered.validate,
        run=steered.run,
    )
    assert settings.discord.token is not None
    await bot.start(settings.discord.token.get_secret_value())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--control", type=Path, required=True)
    args = parser.parse_args(argv)
    settings = load_config(args.config)
    setup_logging(settings.logging.level)
    asyncio.run(run(args.config, args.control))
    return 0


if __name__ == "__main__":
    sys.exit(main())
