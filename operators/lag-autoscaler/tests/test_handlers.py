"""The kopf timer, called directly: it polls each object once per pollingIntervalSeconds."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf
from lag_autoscaler.decision import PartitionOffsets
from lag_autoscaler.handlers import Adapters, Health, autoscale, operator_memo, polls
from prometheus_client import start_http_server
from ticketing_events.metrics import REGISTRY
from ticketing_events.testing import metric_total, scrape_metrics

from .conftest import FakeScaleTarget


class CountingLag:
    def __init__(self, behind: tuple[int, ...] = (0,)) -> None:
        self.reads = 0
        self.behind = behind

    def read(self, group: str, topics: Any) -> list[PartitionOffsets]:
        self.reads += 1
        return [PartitionOffsets(topics[0], p, 5, 5 + n, 0) for p, n in enumerate(self.behind)]


def test_timer_polls_once_per_interval_and_patches_status() -> None:
    lag = CountingLag()
    adapters = Adapters(lag, FakeScaleTarget({"consumer": 0}), Health())
    memo = operator_memo(adapters)
    spec = {"deployment": "consumer", "consumerGroup": "g", "topics": ["t"]}
    spec["pollingIntervalSeconds"] = 3600

    patches = []
    for _ in range(3):
        patch = kopf.Patch()
        asyncio.run(
            autoscale(
                spec=spec,
                status={},
                namespace="ns",
                body={"metadata": {"name": "consumer"}},
                patch=patch,
                memo=memo,
                logger=None,
            )
        )
        patches.append(dict(patch.get("status", {})))

    assert lag.reads == 1
    assert patches[0]["desiredReplicas"] == 0 and patches[0]["totalLag"] == 0
    assert patches[1:] == [{}, {}]
    assert polls(memo=memo)["count"] == 1


def test_metrics_report_each_autoscalers_lag_and_replicas(meter_provider: None) -> None:
    """After a poll, ``/metrics`` has the lag the autoscaler read and the replicas it found
    and decided on, labelled with the autoscaler."""
    lag = CountingLag(behind=(100, 100, 50))  # three partitions with lag: up to 3 replicas
    # Already at 3 (a scale would post a kopf event, which needs a running operator).
    memo = operator_memo(Adapters(lag, FakeScaleTarget({"orders": 3}), Health()))
    spec = {"deployment": "orders", "consumerGroup": "g", "topics": ["t"], "lagThreshold": 100}
    patch = kopf.Patch()
    body = {"metadata": {"name": "orders-lag"}}
    asyncio.run(
        autoscale(
            spec=spec, status={}, namespace="ns", body=body, patch=patch, memo=memo, logger=_Log()
        )
    )
    status = patch["status"]
    assert (status["totalLag"], status["currentReplicas"], status["desiredReplicas"]) == (250, 3, 3)

    server, thread = start_http_server(0, addr="127.0.0.1", registry=REGISTRY)
    try:
        samples = scrape_metrics(f"http://127.0.0.1:{server.server_port}/metrics")
    finally:
        server.shutdown()
        thread.join()
    labels = {"namespace": "ns", "autoscaler": "orders-lag"}
    assert metric_total(samples, "ticketing_autoscaler_lag", **labels) == 250
    assert metric_total(samples, "ticketing_autoscaler_replicas_current", **labels) == 3
    assert metric_total(samples, "ticketing_autoscaler_replicas_desired", **labels) == 3


class _Log:
    def info(self, message: str) -> None:
        pass

    warning = info
