"""The replica decision, case by case (KEDA's Kafka scaler plus the HPA's stabilization)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from lag_autoscaler.decision import Limit, PartitionOffsets, Recommendation, decide
from lag_autoscaler.spec import AutoscalerSpec

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def spec(**fields: Any) -> AutoscalerSpec:
    base = {"deployment": "d", "consumerGroup": "g", "topics": ["t"], "lagThreshold": 10}
    return AutoscalerSpec.model_validate({**base, **fields})


def lags(
    *per_partition: int | None, high: int = 1000, log_start: int = 0
) -> list[PartitionOffsets]:
    """Partitions with the given lag each; None is a partition the group never committed."""
    return [
        PartitionOffsets("t", i, None if lag is None else high - lag, high, log_start)
        for i, lag in enumerate(per_partition)
    ]


def ago(seconds: int, replicas: int) -> Recommendation:
    return Recommendation(NOW - timedelta(seconds=seconds), replicas)


CASES = [
    # id, spec fields, offsets, current, history, expected replicas, expected limit
    ("lag/threshold rounded up", {}, lags(5, 6, 0, 0), 1, [], 2, None),
    ("no lag, min 0: to zero", {}, lags(0, 0), 2, [], 0, None),
    ("no commit, latest: 1 per partition", {}, lags(None, None, None), 0, [], 1, None),
    (
        "no commit, latest, below activation: stays 0",
        {"activationLagThreshold": 3},
        lags(None, None, None),
        0,
        [],
        0,
        None,
    ),
    (
        "no commit, earliest: the whole log",
        {"offsetResetPolicy": "earliest"},
        lags(None, None, None, high=20, log_start=10),
        0,
        [],
        3,
        None,
    ),
    ("activation: at threshold stays 0", {"activationLagThreshold": 5}, lags(5), 0, [], 0, None),
    ("activation: above it leaves 0", {"activationLagThreshold": 5}, lags(6), 0, [], 1, None),
    (
        "activation: below it with replicas, min 0 -> 0",
        {"activationLagThreshold": 50, "scaleDownStabilizationSeconds": 0},
        lags(30),
        3,
        [],
        0,
        None,
    ),
    (
        "activation: below it with min 2 -> the lag's own count",
        {"activationLagThreshold": 50, "minReplicas": 2, "scaleDownStabilizationSeconds": 0},
        lags(15, 15, 0, 0),
        5,
        [],
        3,
        None,
    ),
    ("partition cap", {}, lags(100, 100, 0), 1, [], 3, Limit.PARTITIONS),
    (
        "cap at partitions with lag",
        {"limitToPartitionsWithLag": True},
        lags(100, 100, 0),
        1,
        [],
        2,
        Limit.PARTITIONS,
    ),
    ("idle consumers allowed", {"allowIdleConsumers": True}, lags(100, 100, 0), 1, [], 20, None),
    (
        "max replicas",
        {"allowIdleConsumers": True, "maxReplicas": 4},
        lags(100),
        1,
        [],
        4,
        Limit.MAX,
    ),
    ("min replicas", {"minReplicas": 2}, lags(1), 2, [], 2, Limit.MIN),
    ("min replicas from zero", {"minReplicas": 1}, lags(0), 0, [], 1, Limit.MIN),
    ("scale-up is immediate", {}, lags(10, 10, 10, 10), 1, [ago(10, 1)], 4, None),
    ("scale-down waits", {}, lags(5), 4, [ago(200, 4)], 4, Limit.STABILIZATION),
    ("scale-down to the window's highest", {}, lags(5), 4, [ago(200, 2)], 2, Limit.STABILIZATION),
    ("scale-down once the window passed", {}, lags(5), 4, [ago(301, 4)], 1, None),
    ("window 0: immediate", {"scaleDownStabilizationSeconds": 0}, lags(5), 4, [], 1, None),
    ("Kafka outage: unchanged", {}, None, 3, [ago(10, 6)], 3, Limit.KAFKA_UNREACHABLE),
]


@pytest.mark.parametrize(
    ("fields", "offsets", "current", "history", "replicas", "limit"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_decide(
    fields: dict[str, Any],
    offsets: list[PartitionOffsets] | None,
    current: int,
    history: list[Recommendation],
    replicas: int,
    limit: Limit | None,
) -> None:
    decision = decide(spec(**fields), offsets, current, history, NOW)
    assert (decision.replicas, decision.limit) == (replicas, limit)


def test_history_keeps_the_window_and_this_recommendation() -> None:
    history = [ago(400, 9), ago(100, 4)]
    decision = decide(spec(), lags(15, 0), 4, history, NOW)
    assert decision.history == (ago(100, 4), Recommendation(NOW, 2))


def test_outage_keeps_the_history() -> None:
    history = (ago(100, 4),)
    assert decide(spec(), None, 4, history, NOW).history == history


def test_active_and_total() -> None:
    decision = decide(spec(activationLagThreshold=10), lags(4, 7), 0, [], NOW)
    assert (decision.active, decision.total_lag, decision.recommendation) == (True, 11, 2)


def keda_replicas(
    per_partition: list[int], threshold: int, activation: int, low: int, high: int, idle: bool
) -> int:
    """KEDA's Kafka scaler and the HPA it drives, from their documented behaviour.

    The scaler reports the total lag, capped at partitions x threshold when floor(lag /
    threshold) exceeds the partitions (unless allowIdleConsumers); the HPA's AverageValue
    target gives ceil(metric / threshold), within [max(min, 1), max]; an inactive scaler with
    minReplicaCount 0 gives 0.
    """
    total = sum(per_partition)
    if total <= activation and low == 0:
        return 0
    metric = total
    if not idle and total // threshold > len(per_partition):
        metric = len(per_partition) * threshold
    return min(max(math.ceil(metric / threshold), low, 1), high)


KEDA_TABLE = [
    # per-partition lag, lagThreshold, activation, min, max, allowIdleConsumers
    ([0, 0, 0, 0], 10, 0, 0, 10, False),
    ([1, 0, 0, 0], 10, 0, 0, 10, False),
    ([5, 6, 0, 0], 10, 0, 0, 10, False),
    ([100, 0, 0, 0], 10, 0, 0, 10, False),
    ([100, 0, 0, 0], 10, 0, 0, 10, True),
    ([30, 30, 30, 30], 10, 0, 1, 6, True),
    ([3, 0], 10, 5, 0, 10, False),
    ([6, 0], 10, 5, 0, 10, False),
    ([0, 0], 10, 5, 2, 10, False),
    ([250, 250, 250, 250, 250, 250], 100, 0, 1, 6, False),
    ([1000] * 6, 100, 0, 1, 4, False),
]


@pytest.mark.parametrize(
    ("per_partition", "threshold", "activation", "low", "high", "idle"), KEDA_TABLE
)
def test_desired_replicas_match_kedas_formula(
    per_partition: list[int], threshold: int, activation: int, low: int, high: int, idle: bool
) -> None:
    the_spec = spec(
        lagThreshold=threshold,
        activationLagThreshold=activation,
        minReplicas=low,
        maxReplicas=high,
        allowIdleConsumers=idle,
    )
    ours = decide(the_spec, lags(*per_partition), 0, [], NOW).replicas
    assert ours == keda_replicas(per_partition, threshold, activation, low, high, idle)


def test_the_partition_cap_differs_from_keda_by_design() -> None:
    """KEDA caps the metric only when floor(lag / threshold) > partitions: 45 over 4 partitions
    at 10 gives KEDA 5 replicas, one with nothing to read; the operator caps the count at 4."""
    assert keda_replicas([45, 0, 0, 0], 10, 0, 0, 10, False) == 5
    assert decide(spec(), lags(45, 0, 0, 0), 0, [], NOW).replicas == 4
