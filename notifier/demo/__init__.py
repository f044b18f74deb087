"""The no-token demo: the bot, the embedded Discord emulator, a slow site and sinks on 127.0.0.1.

`bot.py` with no Discord token runs `run.run_demo`; `plan` holds its timings, `story` the scripted
user and the printed timeline, `smtp` the mail sink. This ``__init__`` re-exports nothing:
`bot.py` reads `plan`'s limits to parse its arguments before anything imports nextcord.
"""
