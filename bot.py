"""Run the notifier bot.

    python bot.py [--config config.yaml] [--demo] [--keep-running] [--verbose] [--demo-ttl S]
                  [--workflow NAME] [--option KEY=VALUE ...]

With a Discord token configured (`discord.token`, usually `${DISCORD_TOKEN}`) it connects to Discord.
Without one and without --config (or with --demo, --workflow or --option) it runs the demo: the
embedded Discord emulator, a slow local web site, an SMTP sink and a webhook sink on 127.0.0.1,
and a user whose `/autointel` outlives its interaction token; the timeline goes to stdout (see
notifier/demo/run.py). A bad config file, or a start-up failure (no token with --config, the
metrics port taken, the storage path unusable or held by another bot, a broken plugin under
fanout.strict, a refused token), prints one line per cause and exits with status 2, leaving
nothing running; a nextcord release without the private names the bot relies on
(notifier/discord/compat.py) prints one line and exits with status 3. SIGTERM/SIGINT stop it
gracefully, SIGHUP re-reads the config file.

This is the source checkout's one-file entry (`scripts/run-bot` runs it); an installed copy has
the same start as `notifier run` and `notifier demo`. Both are `notifier.cli.run`.
"""

from __future__ import annotations

import sys

from notifier.cli.run import bot_py_main

if __name__ == "__main__":
    sys.exit(bot_py_main(description=__doc__.split("\n\n")[0]))
