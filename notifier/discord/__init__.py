"""Talking to Discord: the delivery ladder, the interaction's life, REST calls, messages, embeds.

Theory of operation: `delivery` (the ladder) and `session` (an interaction token's life and what a
failed call means) explain themselves. `compat` holds every private nextcord name this project
touches and checks at import that the installed nextcord still has them.

Modules are imported by name (``from notifier.discord.embeds import render_result``); this
``__init__`` re-exports nothing, so that the CLI and the fanout, which need Discord's numbers
(`codes`) and the result renderer (`embeds`) but no Discord client, do not import nextcord.
"""
