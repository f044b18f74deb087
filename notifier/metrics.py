"""Every Prometheus metric of the project, in one place, so names and labels stay consistent, and
the HTTP listener on `metrics.listen` that serves them and the bot's health.

Every name starts with ``notifier_`` so that it cannot clash with another exporter's
(``workflows_running`` and ``outbox_pending`` are common words); counters are exposed with
Prometheus' ``_total`` suffix. Metrics live in the default registry.

`serve_metrics` starts the listener: ``/healthz`` answers the bot's health as JSON and every other
path the Prometheus exposition (``/metrics``, as prometheus-client's own server does). The kernel
cannot import the bot, so health comes from a provider the bot registers on the listener
(`MetricsServer.set_health_source`): a coroutine function returning `Health`, run on the bot's
event loop. The listener's threads never touch the bot's objects, and a loop that does not answer
within `HEALTH_TIMEOUT_S` is itself reported as unhealthy.
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
import threading
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from typing import Any, Final
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import Counter, Gauge, Histogram, make_wsgi_app

__all__ = [
    "DISCORD_SESSION_CLOSED",
    "GATEWAY_CONNECTED",
    "HEALTH_TIMEOUT_S",
    "NOTIFICATIONS_SENT",
    "NOTIFICATION_LATENCY",
    "ORPHANED_RESULTS_RETRIEVED",
    "OUTBOX_PENDING",
    "RESULTS_LOST",
    "RESULTS_QUARANTINED",
    "STORE_WRITE_FAILURES",
    "USER_NOTIFICATIONS",
    "WORKFLOWS_RUNNING",
    "WORKFLOW_DELIVERY",
    "WORKFLOW_DURATION",
    "WORKFLOW_RESULTS_PERSISTED",
    "WORKFLOW_RESUMES",
    "WORKFLOW_STEPS",
    "Health",
    "HealthSource",
    "MetricsServer",
    "serve_metrics",
]

WORKFLOW_RESULTS_PERSISTED = Counter(
    "notifier_workflow_results_persisted",
    "Workflow results written durably to the store, by why they were written.",
    ["reason"],
)
ORPHANED_RESULTS_RETRIEVED = Counter(
    "notifier_orphaned_results_retrieved",
    "Attempts to retrieve a stored result with /retrieve_results or the CLI.",
    ["success"],
)
RESULTS_LOST = Counter(
    "notifier_workflow_results_lost",
    "Index rows whose result file was missing at reconciliation.",
)
RESULTS_QUARANTINED = Counter(
    "notifier_workflow_results_quarantined",
    "Corrupt or partial result files moved to the quarantine folder.",
)
STORE_WRITE_FAILURES = Counter(
    "notifier_store_write_failures",
    "Result writes that failed and will be retried, by errno name.",
    ["error"],
)
DISCORD_SESSION_CLOSED = Counter(
    "notifier_discord_session_closed",
    "Discord calls that found the HTTP session closed, by workflow stage.",
    ["stage"],
)
WORKFLOW_DURATION = Histogram(
    "notifier_workflow_duration_seconds",
    "Wall time of workflows from start to result.",
    ["command"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600),
)
WORKFLOW_DELIVERY = Counter(
    "notifier_workflow_delivery",
    "Messages delivered to users, by the rung of the ladder that carried them.",
    ["rung"],
)
WORKFLOW_STEPS = Counter(
    "notifier_workflow_steps",
    "Workflow steps (ctx.step) by outcome: recorded (run and written durably), replayed (a "
    "resumed run got the recorded value back), failed (raised, or could not be recorded).",
    ["outcome"],
)
WORKFLOW_RESUMES = Counter(
    "notifier_workflow_resumes",
    "Workflows found running after a restart, by outcome: resumed from their recorded steps, or "
    "gave_up (resumed runner.max_resumes times already).",
    ["outcome"],
)
WORKFLOWS_RUNNING = Gauge("notifier_workflows_running", "Workflows currently running.")
NOTIFICATIONS_SENT = Counter(
    "notifier_notifications_sent",
    "Notices sent by notifier plugins, by outcome.",
    ["plugin", "outcome"],
)
NOTIFICATION_LATENCY = Histogram(
    "notifier_notification_latency_seconds",
    "Time from a notice being queued to its plugin reporting success.",
    ["plugin"],
)
USER_NOTIFICATIONS = Counter(
    "notifier_user_notifications",
    "Users' own notices (/notify), by channel (dm, email, webhook) and outcome: the fanout's "
    "per-attempt outcomes (sent, skipped, retried, timeout, failed), and limited (not routed: the "
    "user reached user_notifications.per_user_daily_limit).",
    ["via", "outcome"],
)
OUTBOX_PENDING = Gauge("notifier_outbox_pending", "Notices written to the outbox and not yet sent.")
GATEWAY_CONNECTED = Gauge(
    "notifier_gateway_connected",
    "1 while the bot's gateway connection to Discord is up (READY or RESUMED), 0 otherwise.",
)

# ---------------------------------------------------------------------------------------------
# Health

# How long /healthz waits for the bot's event loop to answer; past it the bot is unhealthy.
HEALTH_TIMEOUT_S: Final = 5.0
_NOT_STARTED: Final = "not open yet (the bot is starting)"


@dataclass(frozen=True, slots=True)
class Health:
    """What ``/healthz`` reports.

    Healthy (200) means both: the gateway is connected (the bot hears commands) and the store is
    usable (`store_error` is None: results can be written and read). Anything else answers 503.
    The outbox backlog and the heartbeat age are information, not part of the verdict: a backlog
    is retried on its own, and nextcord itself reconnects a gateway whose heartbeats go unanswered.
    """

    gateway_connected: bool
    store_error: str | None = None
    outbox_backlog: int = 0
    last_heartbeat_s: float | None = None  # since the last heartbeat ACK; None before the first

    @property
    def healthy(self) -> bool:
        return self.gateway_connected and self.store_error is None

    def to_json(self) -> dict[str, Any]:
        heartbeat = self.last_heartbeat_s
        return {
            "gateway": "connected" if self.gateway_connected else "disconnected",
            "store": "ok" if self.store_error is None else self.store_error,
            "outbox_backlog": self.outbox_backlog,
            "last_heartbeat_s": (
                round(heartbeat, 3) if heartbeat is not None and math.isfinite(heartbeat) else None
            ),
        }


# A coroutine function the bot registers; run on the bot's loop for each /healthz request.
type HealthSource = Callable[[], Awaitable[Health]]


def _gauge_value(gauge: Gauge) -> float:
    """A gauge's current value (thread-safe in prometheus-client), for when the loop is mute."""
    return next(iter(gauge.collect())).samples[0].value


class _Server(ThreadingMixIn, WSGIServer):
    """One thread per request, never joined (prometheus-client's own server does the same)."""

    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr: scrapes every few seconds would drown the bot's own log."""

    def log_message(self, format: str, *args: Any) -> None:
        return


class MetricsServer:
    """The listener on ``metrics.listen``, in daemon threads of its own.

    ``/healthz``: the `Health` of the registered source as JSON, 200 when healthy, 503 otherwise
    (no source yet: 503, the store "not open yet"). Any other path: the Prometheus exposition.
    """

    def __init__(self, host: str, port: int) -> None:
        family, address = _best_family(host, port)
        server_class: type[_Server] = type("_FamilyServer", (_Server,), {"address_family": family})
        self._metrics_app = make_wsgi_app()
        self._source: tuple[HealthSource, asyncio.AbstractEventLoop] | None = None
        self._httpd: _Server = make_server(
            address, port, self._app, server_class=server_class, handler_class=_QuietHandler
        )
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="notifier-metrics", daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def set_health_source(self, source: HealthSource, loop: asyncio.AbstractEventLoop) -> None:
        """Answer /healthz from `source`, run on `loop` (the bot's) for each request."""
        self._source = (source, loop)

    def clear_health_source(self) -> None:
        """The bot is closing: /healthz answers 503 from now on."""
        self._source = None

    def close(self) -> None:
        """Stop listening. Blocks up to half a second (the serve loop's poll): call it from a
        thread, not from the event loop."""
        self._source = None
        self._httpd.shutdown()
        self._httpd.server_close()

    # -- the listener's threads ----------------------------------------------------------------

    def health(self) -> Health:
        """The registered source's answer, or why there is none (loop gone, mute, or failing)."""
        registered = self._source
        if registered is None:
            return self._fallback(_NOT_STARTED)
        source, loop = registered
        try:
            future = asyncio.run_coroutine_threadsafe(_call(source), loop)
        except RuntimeError:  # the loop is closed
            return self._fallback("the bot is not running")
        try:
            return future.result(timeout=HEALTH_TIMEOUT_S)
        except FutureTimeout:
            future.cancel()
            return self._fallback(
                f"the bot's event loop did not answer within {HEALTH_TIMEOUT_S:g} s"
            )
        except Exception as exc:  # noqa: BLE001 - a failing probe is an unhealthy bot, not a 500
            return self._fallback(f"health check failed: {type(exc).__name__}: {exc}")

    @staticmethod
    def _fallback(store_error: str) -> Health:
        """Health from what this thread may read on its own: the gauges."""
        return Health(
            gateway_connected=_gauge_value(GATEWAY_CONNECTED) >= 1,
            store_error=store_error,
            outbox_backlog=int(_gauge_value(OUTBOX_PENDING)),
        )

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/healthz":
            return self._metrics_app(environ, start_response)  # type: ignore[no-any-return]
        health = self.health()
        body = json.dumps(health.to_json()).encode()
        status = "200 OK" if health.healthy else "503 Service Unavailable"
        start_response(
            status,
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"),
            ],
        )
        return [body] if environ.get("REQUEST_METHOD") != "HEAD" else []


async def _call(source: HealthSource) -> Health:
    return await source()


def _best_family(host: str, port: int) -> tuple[socket.AddressFamily, str]:
    """The address family of `host` (IPv6 literals and names too); blocking name lookup, done
    once at start."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, sockaddr = infos[0]
    return family, str(sockaddr[0])


def serve_metrics(listen: str) -> MetricsServer:
    """Serve /metrics and /healthz on HOST:PORT (``[::1]:9108`` for IPv6) in daemon threads.

    Raises OSError when the address cannot be bound (the port taken, say).
    """
    host, _, port = listen.rpartition(":")
    return MetricsServer(host.strip("[]"), int(port))
