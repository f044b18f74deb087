"""How a notice leaves the process: native HTTP and Discord sends, and Apprise for the long tail.

Why two paths: every Apprise plugin's `send()` is blocking, and `async_notify` runs them in one
shared thread pool (6 workers here), so 200 notices to 5 JSON sinks answering in 50 ms took 10.4 s
through Apprise against 0.67 s as concurrent aiohttp posts. So `json://`, `jsons://` and
`discord://` targets are posted natively with aiohttp (same body as Apprise's NotifyJSON, same URL
syntax, parsed by Apprise's own parsers), DMs go through the bot, and every other Apprise URL runs in
`PluginContext.executor` with a fresh Apprise object per send (no 5.5 s e-mail throttle) and
`service_timeout=0`, which keeps the call inline in our worker thread instead of Apprise's shared pool.

One module per transport: `json_http` (`json://`, `jsons://`), `discord_webhook` (`discord://`),
`dm` (a Discord DM through the bot) and `apprise` (every other Apprise URL, in the executor);
`common` holds what they share (the `Target` protocol, per-target results, `send_all`,
`outcome_from_results`) and `urls` turns a configured URL into the target that sends it. Plugin
authors import these names from `notifier.plugins`.

Modules are imported by name; this ``__init__`` re-exports nothing.
"""

__all__: list[str] = []
