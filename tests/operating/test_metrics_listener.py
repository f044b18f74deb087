"""The listener on `metrics.listen`: `/metrics` is the Prometheus exposition with every name under
`notifier_`, and `/healthz` answers the bot's health as JSON, 200 or 503, from the provider the bot
registers (here: providers the test controls; the real bot's: tests/operating/test_health_bot.py).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from prometheus_client.metrics import MetricWrapperBase

from notifier import metrics
from notifier.metrics import Health, MetricsServer, serve_metrics
from notifier.testing import free_port


@pytest.fixture(scope="module")
def listener() -> Iterator[MetricsServer]:
    running = serve_metrics(f"127.0.0.1:{free_port()}")
    try:
        yield running
    finally:
        running.close()


@pytest.fixture
def server(listener: MetricsServer) -> Iterator[MetricsServer]:
    """The module's listener with no health source: each test registers its own."""
    listener.clear_health_source()
    yield listener
    listener.clear_health_source()


async def get(server: MetricsServer, path: str) -> tuple[int, str, Any]:
    url = f"http://127.0.0.1:{server.port}{path}"
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        text = await response.text()
        body = await response.json() if response.content_type == "application/json" else None
        return response.status, text, body


async def test_every_metric_is_named_under_notifier_and_served_on_metrics(
    server: MetricsServer,
) -> None:
    status, exposition, _ = await get(server, "/metrics")
    assert status == 200
    families = set(re.findall(r"^# TYPE (\S+) ", exposition, re.M))
    ours = {  # counters are exposed with Prometheus' _total suffix
        value._name + ("_total" if value._type == "counter" else "")  # type: ignore[attr-defined]
        for value in vars(metrics).values()
        if isinstance(value, MetricWrapperBase)
    }
    assert ours and all(name.startswith("notifier_") for name in ours)
    assert ours <= families
    # The seed's counter names live on as the suffix.
    assert "notifier_workflow_results_persisted_total" in families
    assert "# TYPE notifier_gateway_connected gauge" in exposition
    assert not re.search(r"^(workflows_running|outbox_pending|workflow_\w+) ", exposition, re.M)


async def test_healthz_is_json_503_until_the_bot_registers_its_health(
    server: MetricsServer,
) -> None:
    status, text, body = await get(server, "/healthz")
    assert status == 503
    assert "# TYPE" not in text  # not the metrics page
    assert body["store"] == "not open yet (the bot is starting)"
    assert set(body) == {"gateway", "store", "outbox_backlog", "last_heartbeat_s"}


@pytest.mark.parametrize(
    ("health", "status", "expected"),
    [
        pytest.param(
            Health(gateway_connected=True, outbox_backlog=3, last_heartbeat_s=1.23456),
            200,
            {"gateway": "connected", "store": "ok", "outbox_backlog": 3, "last_heartbeat_s": 1.235},
            id="healthy",
        ),
        pytest.param(
            Health(gateway_connected=False, last_heartbeat_s=None),
            503,
            {
                "gateway": "disconnected",
                "store": "ok",
                "outbox_backlog": 0,
                "last_heartbeat_s": None,
            },
            id="gateway-down",
        ),
        pytest.param(
            Health(gateway_connected=True, store_error="1 result write failing", outbox_backlog=7),
            503,
            {
                "gateway": "connected",
                "store": "1 result write failing",
                "outbox_backlog": 7,
                "last_heartbeat_s": None,
            },
            id="store-failing",
        ),
        pytest.param(
            Health(gateway_connected=True, last_heartbeat_s=float("inf")),
            200,
            {"gateway": "connected", "store": "ok", "outbox_backlog": 0, "last_heartbeat_s": None},
            id="no-heartbeat-yet",
        ),
    ],
)
async def test_healthz_answers_the_registered_health(
    server: MetricsServer, health: Health, status: int, expected: dict[str, Any]
) -> None:
    seen_on: list[asyncio.AbstractEventLoop] = []

    async def source() -> Health:
        seen_on.append(asyncio.get_running_loop())
        return health

    server.set_health_source(source, asyncio.get_running_loop())
    got_status, _, body = await get(server, "/healthz")
    assert (got_status, body) == (status, expected)
    assert seen_on == [asyncio.get_running_loop()]  # run on the bot's loop, not the listener's


async def test_a_failing_or_mute_health_source_is_a_503_not_a_crash(
    server: MetricsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken() -> Health:
        raise OSError(5, "Input/output error")

    server.set_health_source(broken, asyncio.get_running_loop())
    status, _, body = await get(server, "/healthz")
    assert status == 503
    assert body["store"] == "health check failed: OSError: [Errno 5] Input/output error"

    release = asyncio.Event()

    async def mute() -> Health:
        await release.wait()
        return Health(gateway_connected=True)

    monkeypatch.setattr(metrics, "HEALTH_TIMEOUT_S", 0.2)
    server.set_health_source(mute, asyncio.get_running_loop())
    status, _, body = await get(server, "/healthz")
    release.set()
    assert status == 503
    assert body["store"] == "the bot's event loop did not answer within 0.2 s"

    server.clear_health_source()  # the bot is closing
    status, _, body = await get(server, "/healthz")
    assert status == 503
