"""The no-token demo: the bot, the embedded Discord emulator, a slow site and sinks on 127.0.0.1.

`notifier demo` (and `bot.py` with no Discord token) runs `run.run_demo`; `plan` holds its
timings, `story` the scripted users and the printed timeline, `choice` and `play` one run of any
discovered workflow (`--workflow NAME --option k=v`), `smtp` the mail sink. This ``__init__``
re-exports nothing: the command line reads `plan`'s limits to parse its arguments before
anything imports nextcord.
"""
