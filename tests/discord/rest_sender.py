"""One process of the bot that only posts channel messages, as fast as nextcord lets it: what
tests/discord/test_rest_budget.py starts several of, against one emulator.

    python tests/discord/rest_sender.py API_BASE CHANNEL_ID COUNT PREFIX [DSN RATE_PER_S BURST]

The bot token comes from TEST_BOT_TOKEN. With a DSN, every bot-token request of the client (its
login included) waits for the shared budget first (`install_rest_budget`); without one, only
nextcord's own per-process limiter paces it. Messages are "PREFIX 0" .. "PREFIX COUNT-1", all
sent at once (asyncio.gather). The last line printed is JSON: {"sent": n, "failed": [reasons]}.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable

import nextcord

from notifier.discord.compat import set_api_base
from notifier.discord.rest_budget import RestBudget, RestBudgetSettings, install_rest_budget


async def main(argv: list[str]) -> None:
    api_base, channel_id, count, prefix = argv[0], int(argv[1]), int(argv[2]), argv[3]
    token = os.environ["TEST_BOT_TOKEN"]
    set_api_base(api_base)
    client = nextcord.Client()
    budget: RestBudget | None = None
    remove: Callable[[], None] | None = None
    if len(argv) > 4:
        settings = RestBudgetSettings(rate_per_s=float(argv[5]), burst=float(argv[6]))
        budget = await RestBudget.open(argv[4], token, settings)
        remove = install_rest_budget(client, budget)
    outcomes: list[object]
    try:
        await client.login(token)
    except nextcord.HTTPException as exc:  # a 429 nextcord gave up on, at the first request
        outcomes = [exc] * count
    else:
        outcomes = await asyncio.gather(
            *(client.http.send_message(channel_id, f"{prefix} {i}") for i in range(count)),
            return_exceptions=True,
        )
    finally:
        await client.close()
        if remove is not None:
            remove()
        if budget is not None:
            await budget.close()
    failed = [repr(o) for o in outcomes if isinstance(o, BaseException)]
    print(json.dumps({"sent": count - len(failed), "failed": failed}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
