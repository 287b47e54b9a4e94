"""The kopf timer, called directly: it polls each object once per pollingIntervalSeconds."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf
from lag_autoscaler.decision import PartitionOffsets
from lag_autoscaler.handlers import Adapters, Health, autoscale, operator_memo, polls

from .conftest import FakeScaleTarget


class CountingLag:
    def __init__(self) -> None:
        self.reads = 0

    def read(self, group: str, topics: Any) -> list[PartitionOffsets]:
        self.reads += 1
        return [PartitionOffsets(topics[0], 0, 5, 5, 0)]


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
                body={},
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
