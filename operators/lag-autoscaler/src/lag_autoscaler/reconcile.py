"""One poll of one ``ConsumerLagAutoscaler``: read lag, decide, scale, describe the result.

Blocking (both adapters are); the kopf timer runs ``reconcile`` in a thread and applies the
returned status and events. Tests call it with a fake ``ScaleTarget`` and the real Kafka.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import ValidationError

from lag_autoscaler.decision import Decision, Limit, PartitionOffsets, Recommendation, decide
from lag_autoscaler.decision import lag_by_topic as sum_by_topic
from lag_autoscaler.kafka_lag import LagUnavailable
from lag_autoscaler.kube import TargetUnavailable
from lag_autoscaler.spec import AutoscalerSpec


class LagSource(Protocol):
    def read(self, group: str, topics: Sequence[str]) -> list[PartitionOffsets]:
        """Raises ``LagUnavailable``."""
        ...


class ScaleTarget(Protocol):
    def current_replicas(self, namespace: str, name: str) -> int:
        """Raises ``TargetUnavailable``."""
        ...

    def scale(self, namespace: str, name: str, replicas: int) -> None:
        """Raises ``TargetUnavailable``."""
        ...


@dataclass(frozen=True)
class Event:
    type: str  # Normal or Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Outcome:
    status: dict[str, Any]
    events: list[Event] = field(default_factory=list)


def timestamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def reconcile(
    raw_spec: Mapping[str, Any],
    status: Mapping[str, Any],
    namespace: str,
    *,
    lag_source: LagSource,
    target: ScaleTarget,
    now: datetime,
) -> Outcome:
    conditions = _Conditions(status.get("conditions") or [], now)
    try:
        spec = AutoscalerSpec.model_validate(dict(raw_spec))
    except ValidationError as exc:
        message = "; ".join(e["msg"] for e in exc.errors())
        conditions.set("Ready", False, "InvalidSpec", message)
        return Outcome({"conditions": conditions.items}, conditions.warnings)

    new_status: dict[str, Any] = {"lastPollTime": timestamp(now)}
    offsets: list[PartitionOffsets] | None = None
    try:
        read = lag_source.read(spec.consumer_group, spec.topics)
    except LagUnavailable as exc:
        conditions.set("KafkaReachable", False, "LagReadFailed", str(exc))
    else:
        offsets = read
        conditions.set("KafkaReachable", True, "LagRead", f"{len(read)} partitions read")
        by_topic = sum_by_topic(read, spec.offset_reset_policy)
        new_status["lag"] = [{"topic": t, "lag": lag} for t, lag in by_topic.items()]
        new_status["totalLag"] = sum(by_topic.values())
        new_status["partitions"] = len(read)

    try:
        current = target.current_replicas(namespace, spec.deployment)
    except TargetUnavailable as exc:
        conditions.set("Ready", False, "TargetUnavailable", str(exc))
        return Outcome({**new_status, "conditions": conditions.items}, conditions.warnings)

    history = [
        Recommendation(parse_time(r["time"]), int(r["replicas"]))
        for r in status.get("recommendations") or []
    ]
    decision = decide(spec, offsets, current, history, now)
    events = []
    if decision.replicas != current:
        try:
            target.scale(namespace, spec.deployment, decision.replicas)
        except TargetUnavailable as exc:
            conditions.set("Ready", False, "ScaleFailed", str(exc))
            new_status["currentReplicas"] = current
            return Outcome({**new_status, "conditions": conditions.items}, conditions.warnings)
        new_status["lastScaleTime"] = timestamp(now)
        events.append(Event("Normal", "Scaled", _scale_message(spec, decision, current)))

    _describe_decision(conditions, spec, decision)
    new_status |= {
        "currentReplicas": current,
        "desiredReplicas": decision.replicas,
        "recommendations": [
            {"time": timestamp(r.at), "replicas": r.replicas} for r in decision.history
        ],
        "conditions": conditions.items,
    }
    return Outcome(new_status, [*events, *conditions.warnings])


def _scale_message(spec: AutoscalerSpec, decision: Decision, current: int) -> str:
    held = f" ({decision.limit})" if decision.limit else ""
    return (
        f"deployment {spec.deployment}: {current} -> {decision.replicas} replicas{held}, "
        f"lag {decision.total_lag} (threshold {spec.lag_threshold})"
    )


def _describe_decision(conditions: _Conditions, spec: AutoscalerSpec, decision: Decision) -> None:
    if decision.limit is Limit.KAFKA_UNREACHABLE:
        conditions.set("Ready", False, "KafkaUnreachable", "replicas left as they are")
        return
    lag = f"lag {decision.total_lag}, activation threshold {spec.activation_lag_threshold}"
    if decision.active:
        conditions.set("Active", True, "LagAboveActivation", lag)
    else:
        conditions.set("Active", False, "LagAtOrBelowActivation", lag, warn=False)
    reason = decision.limit.value if decision.limit else "Reconciled"
    conditions.set("Ready", True, reason, f"{decision.replicas} replicas desired")


class _Conditions:
    """Status conditions; ``lastTransitionTime`` moves only when a status flips. A condition
    that turns False (or changes its reason while False) records a Warning event, unless it
    is one where False is normal (Active)."""

    def __init__(self, previous: Sequence[Mapping[str, Any]], now: datetime) -> None:
        self._previous = {c["type"]: c for c in previous}
        self._now = timestamp(now)
        self._current: dict[str, dict[str, Any]] = {t: dict(c) for t, c in self._previous.items()}
        self.warnings: list[Event] = []

    def set(self, type_: str, ok: bool, reason: str, message: str, *, warn: bool = True) -> None:
        status = "True" if ok else "False"
        before = self._previous.get(type_, {})
        flipped = before.get("status") != status
        self._current[type_] = {
            "type": type_,
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": self._now
            if flipped
            else before.get("lastTransitionTime", self._now),
        }
        if warn and not ok and (flipped or before.get("reason") != reason):
            self.warnings.append(Event("Warning", reason, message))

    @property
    def items(self) -> list[dict[str, Any]]:
        return [self._current[t] for t in sorted(self._current)]
