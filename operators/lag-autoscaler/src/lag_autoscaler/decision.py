"""The replica decision: pure functions of the offsets, the spec and the recommendation history.

Semantics follow KEDA's Kafka scaler plus the HPA that KEDA drives, in one step:

1. Lag per partition (``partition_lag``): high watermark minus the committed offset. A partition
   without a committed offset counts by ``offsetResetPolicy``: ``latest`` counts 1 (KEDA does so,
   so that a group that never committed still gets a consumer, which then commits), ``earliest``
   counts what a new consumer would read: high watermark minus the log start offset. (KEDA
   counts the high watermark itself; the two differ only once retention has deleted segments.)
2. Total lag: the sum over every partition of every topic in the spec (KEDA without ``topic``
   sums the same way over the group's topics).
3. Active when total lag > ``activationLagThreshold``. Inactive with ``minReplicas`` 0: the
   recommendation is 0 (a target at 0 stays there; a running one goes to 0, after stabilization).
4. Otherwise: ceil(total lag / ``lagThreshold``), then capped (unless ``allowIdleConsumers``)
   at the number of partitions, or of partitions with lag under ``limitToPartitionsWithLag``,
   since a consumer beyond that has nothing to read. (KEDA caps the lag metric, not the count:
   floor(lag / threshold) > partitions, so its HPA can land one replica above the cap.)
5. Clamped to [``minReplicas``, ``maxReplicas``].
6. Stabilization, as the HPA's default behaviour: a higher recommendation applies at once; a
   lower one applies only as the highest recommendation of the last
   ``scaleDownStabilizationSeconds`` (the history includes this one), never above the current.

Kafka unreachable (no offsets): the replicas stay as they are and the history is unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from lag_autoscaler.spec import AutoscalerSpec, OffsetResetPolicy


@dataclass(frozen=True)
class PartitionOffsets:
    """One partition as the admin API reports it; ``committed`` is None without a commit."""

    topic: str
    partition: int
    committed: int | None
    high_watermark: int
    log_start: int


@dataclass(frozen=True)
class Recommendation:
    at: datetime
    replicas: int


class Limit(StrEnum):
    """What held the replicas below (or above) the lag's own figure."""

    PARTITIONS = "PartitionCap"
    MIN = "MinReplicas"
    MAX = "MaxReplicas"
    STABILIZATION = "ScaleDownStabilization"
    KAFKA_UNREACHABLE = "KafkaUnreachable"


@dataclass(frozen=True)
class Decision:
    replicas: int
    recommendation: int
    active: bool
    total_lag: int | None
    history: tuple[Recommendation, ...]
    limit: Limit | None = None


def partition_lag(p: PartitionOffsets, policy: OffsetResetPolicy) -> int:
    if p.committed is None:
        if policy is OffsetResetPolicy.LATEST:
            return 1
        return max(p.high_watermark - p.log_start, 0)
    return max(p.high_watermark - p.committed, 0)


def lag_by_topic(offsets: Sequence[PartitionOffsets], policy: OffsetResetPolicy) -> dict[str, int]:
    totals: dict[str, int] = {}
    for p in offsets:
        totals[p.topic] = totals.get(p.topic, 0) + partition_lag(p, policy)
    return totals


def decide(
    spec: AutoscalerSpec,
    offsets: Sequence[PartitionOffsets] | None,
    current: int,
    history: Sequence[Recommendation],
    now: datetime,
) -> Decision:
    if offsets is None:
        return Decision(current, current, False, None, tuple(history), Limit.KAFKA_UNREACHABLE)

    lags = [partition_lag(p, spec.offset_reset_policy) for p in offsets]
    total = sum(lags)
    active = total > spec.activation_lag_threshold
    limit: Limit | None = None

    if not active and spec.min_replicas == 0:
        wanted = 0
    else:
        wanted = math.ceil(total / spec.lag_threshold)
        if not spec.allow_idle_consumers:
            if spec.limit_to_partitions_with_lag:
                cap = sum(1 for lag in lags if lag > 0)
            else:
                cap = len(lags)
            if wanted > cap:
                wanted, limit = cap, Limit.PARTITIONS
    if wanted < spec.min_replicas:
        wanted, limit = spec.min_replicas, Limit.MIN
    elif wanted > spec.max_replicas:
        wanted, limit = spec.max_replicas, Limit.MAX

    window = timedelta(seconds=spec.scale_down_stabilization_seconds)
    kept = tuple(r for r in history if r.at > now - window)
    history_now = (*kept, Recommendation(now, wanted))
    if wanted >= current:
        replicas = wanted
    else:
        replicas = min(current, max(r.replicas for r in history_now))
        if replicas > wanted:
            limit = Limit.STABILIZATION
    return Decision(replicas, wanted, active, total, history_now, limit)
