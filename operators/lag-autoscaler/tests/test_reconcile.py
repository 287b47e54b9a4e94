"""One poll end to end: the real broker, our fake of the scale adapter, no API server.

``test_on_cluster.py`` runs the whole operator against the real control plane.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from lag_autoscaler.kafka_lag import KafkaLagReader
from lag_autoscaler.reconcile import Outcome, reconcile
from ticketing_events.testing import start_group_at_end

from .conftest import FakeScaleTarget, Topics

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
NS = "ticketing"


def conditions(outcome: Outcome) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in outcome.status["conditions"]}


def spec(group: str, *topics: str, **fields: Any) -> dict[str, Any]:
    return {
        "deployment": "consumer",
        "consumerGroup": group,
        "topics": list(topics),
        "lagThreshold": 10,
        "maxReplicas": 10,
        **fields,
    }


@pytest.mark.kafka
def test_scales_up_on_backlog_and_down_after_the_window(kafka_topics: Topics) -> None:
    topic = kafka_topics.topic(4)
    group = kafka_topics.group()
    start_group_at_end(kafka_topics.bootstrap, group, [topic])
    kafka_topics.publish(topic, {0: 20, 1: 20, 2: 10})
    target = FakeScaleTarget({"consumer": 1})
    reader = KafkaLagReader(kafka_topics.bootstrap)
    the_spec = spec(group, topic)

    def poll(status: dict[str, Any], now: datetime) -> Outcome:
        return reconcile(the_spec, status, NS, lag_source=reader, target=target, now=now)

    # 50 messages / 10 = 5, capped at the 4 partitions.
    up = poll({}, NOW)
    assert target.calls == [("consumer", 4)]
    assert up.status["lag"] == [{"topic": topic, "lag": 50}]
    assert (up.status["totalLag"], up.status["partitions"]) == (50, 4)
    assert (up.status["currentReplicas"], up.status["desiredReplicas"]) == (1, 4)
    assert up.status["lastScaleTime"] == "2026-11-26T12:00:00Z"
    assert conditions(up) == {
        "Active": ("True", "LagAboveActivation"),
        "KafkaReachable": ("True", "LagRead"),
        "Ready": ("True", "PartitionCap"),
    }
    assert [(e.type, e.reason) for e in up.events] == [("Normal", "Scaled")]
    assert "1 -> 4 replicas" in up.events[0].message

    # The backlog consumed: the window holds the 4 for 300 s, then the target goes to 0.
    kafka_topics.commit(group, {(topic, 0): 20, (topic, 1): 20, (topic, 2): 10})
    held = poll(up.status, NOW + timedelta(seconds=60))
    assert target.calls == [("consumer", 4)]
    assert (held.status["totalLag"], held.status["desiredReplicas"]) == (0, 4)
    assert conditions(held)["Ready"] == ("True", "ScaleDownStabilization")
    assert conditions(held)["Active"] == ("False", "LagAtOrBelowActivation")
    assert "lastScaleTime" not in held.status  # the status patch keeps the stored one
    assert held.events == []

    down = poll(held.status, NOW + timedelta(seconds=301))
    assert target.calls == [("consumer", 4), ("consumer", 0)]
    assert down.status["desiredReplicas"] == 0
    assert [r["replicas"] for r in down.status["recommendations"]] == [0, 0]


@pytest.mark.kafka
def test_group_without_commits_latest_and_earliest(kafka_topics: Topics) -> None:
    topic = kafka_topics.topic(3)
    kafka_topics.publish(topic, {0: 30, 1: 30})
    group = kafka_topics.group()
    reader = KafkaLagReader(kafka_topics.bootstrap)

    target = FakeScaleTarget({"consumer": 0})
    latest = reconcile(
        spec(group, topic), {}, NS, lag_source=reader, target=target, now=NOW
    )  # 1 per partition: 3 / 10 -> 1 replica
    assert (latest.status["totalLag"], target.replicas["consumer"]) == (3, 1)

    target = FakeScaleTarget({"consumer": 0})
    earliest = reconcile(
        spec(group, topic, offsetResetPolicy="earliest"),
        {},
        NS,
        lag_source=reader,
        target=target,
        now=NOW,
    )
    assert (earliest.status["totalLag"], target.replicas["consumer"]) == (60, 3)


def test_kafka_outage_leaves_replicas_and_sets_conditions() -> None:
    reader = KafkaLagReader("127.0.0.1:1", timeout_s=1.0)
    target = FakeScaleTarget({"consumer": 3})
    previous = {"recommendations": [{"time": "2026-11-26T11:59:00Z", "replicas": 3}]}

    out = reconcile(spec("g", "t"), previous, NS, lag_source=reader, target=target, now=NOW)
    assert target.calls == []
    assert (out.status["currentReplicas"], out.status["desiredReplicas"]) == (3, 3)
    assert "totalLag" not in out.status
    assert out.status["recommendations"] == previous["recommendations"]
    assert conditions(out) == {
        "KafkaReachable": ("False", "LagReadFailed"),
        "Ready": ("False", "KafkaUnreachable"),
    }
    assert sorted(e.reason for e in out.events if e.type == "Warning") == [
        "KafkaUnreachable",
        "LagReadFailed",
    ]

    # Still down a poll later: same conditions, their transition time kept, no new events.
    again = reconcile(
        spec("g", "t"), out.status, NS, lag_source=reader, target=target, now=NOW + timedelta(1)
    )
    assert again.events == []
    assert again.status["conditions"] == out.status["conditions"]


class StaticLag:
    def __init__(self, lag: int) -> None:
        self.lag = lag

    def read(self, group: str, topics: Any) -> list[Any]:
        from lag_autoscaler.decision import PartitionOffsets

        return [PartitionOffsets(topics[0], 0, 0, self.lag, 0)]


def test_missing_deployment() -> None:
    out = reconcile(
        spec("g", "t"), {}, NS, lag_source=StaticLag(5), target=FakeScaleTarget(), now=NOW
    )
    assert conditions(out)["Ready"] == ("False", "TargetUnavailable")
    assert out.status["totalLag"] == 5
    assert [e.reason for e in out.events] == ["TargetUnavailable"]


def test_failed_scale_changes_nothing_else() -> None:
    target = FakeScaleTarget({"consumer": 0})
    target.fail_scale = lambda: True
    out = reconcile(spec("g", "t"), {}, NS, lag_source=StaticLag(5), target=target, now=NOW)
    assert conditions(out)["Ready"] == ("False", "ScaleFailed")
    assert "lastScaleTime" not in out.status
    assert "recommendations" not in out.status


def test_invalid_spec() -> None:
    bad = spec("g", "t", minReplicas=5, maxReplicas=2)
    out = reconcile(bad, {}, NS, lag_source=StaticLag(5), target=FakeScaleTarget(), now=NOW)
    assert conditions(out) == {"Ready": ("False", "InvalidSpec")}
    assert "minReplicas must not exceed maxReplicas" in out.status["conditions"][0]["message"]
