"""Every Prometheus metric of the project, in one place, so names and labels stay consistent.

Metrics live in the default registry; `serve_metrics` exposes them on `metrics.listen`.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

__all__ = [
    "DISCORD_SESSION_CLOSED",
    "NOTIFICATIONS_SENT",
    "NOTIFICATION_LATENCY",
    "ORPHANED_RESULTS_RETRIEVED",
    "OUTBOX_PENDING",
    "RESULTS_LOST",
    "RESULTS_QUARANTINED",
    "STORE_WRITE_FAILURES",
    "WORKFLOWS_RUNNING",
    "WORKFLOW_DELIVERY",
    "WORKFLOW_DURATION",
    "WORKFLOW_RESULTS_PERSISTED",
    "serve_metrics",
]

WORKFLOW_RESULTS_PERSISTED = Counter(
    "workflow_results_persisted",
    "Workflow results written durably to the store, by why they were written.",
    ["reason"],
)
ORPHANED_RESULTS_RETRIEVED = Counter(
    "orphaned_results_retrieved",
    "Attempts to retrieve a stored result with /retrieve_results or the CLI.",
    ["success"],
)
RESULTS_LOST = Counter(
    "workflow_results_lost",
    "Index rows whose result file was missing at reconciliation.",
)
RESULTS_QUARANTINED = Counter(
    "workflow_results_quarantined",
    "Corrupt or partial result files moved to the quarantine folder.",
)
STORE_WRITE_FAILURES = Counter(
    "store_write_failures",
    "Result writes that failed and will be retried, by errno name.",
    ["error"],
)
DISCORD_SESSION_CLOSED = Counter(
    "discord_session_closed",
    "Discord calls that found the HTTP session closed, by workflow stage.",
    ["stage"],
)
WORKFLOW_DURATION = Histogram(
    "workflow_duration_seconds",
    "Wall time of workflows from start to result.",
    ["command"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600),
)
WORKFLOW_DELIVERY = Counter(
    "workflow_delivery",
    "Messages delivered to users, by the rung of the ladder that carried them.",
    ["rung"],
)
WORKFLOWS_RUNNING = Gauge("workflows_running", "Workflows currently running.")
NOTIFICATIONS_SENT = Counter(
    "notifications_sent",
    "Notices sent by notifier plugins, by outcome.",
    ["plugin", "outcome"],
)
NOTIFICATION_LATENCY = Histogram(
    "notification_latency_seconds",
    "Time from a notice being queued to its plugin reporting success.",
    ["plugin"],
)
OUTBOX_PENDING = Gauge("outbox_pending", "Notices written to the outbox and not yet sent.")


def serve_metrics(listen: str) -> None:
    """Serve /metrics on HOST:PORT in prometheus-client's own daemon thread."""
    host, _, port = listen.rpartition(":")
    start_http_server(int(port), addr=host.strip("[]"))
