"""The short chaos run of bench/chaos.py (``make chaos`` is the long one): about a minute of
rush on a broker of its own while consumers are SIGKILLed and scaled, the broker restarts,
Redis and PostgreSQL drop away, the stand-in fails and hangs and payment-api dies once; then
every effect of every event is there exactly once, and nothing was dead-lettered."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from ticketing_dev.stack import infra_env
from ticketing_events.testing import KafkaServer

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))  # bench/ is no package
import chaos  # noqa: E402
from chaos_faults import Plan, PrivateBroker  # noqa: E402

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.postgres, pytest.mark.timeout(1500)]

FAULT_KINDS = {"kill", "instance", "broker", "unreachable", "stand-in"}


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[KafkaServer]:
    """A broker of this test alone, so that its restart costs no other test anything."""
    server = KafkaServer(tmp_path / "kafka")
    server.start()
    yield server
    server.stop()


def test_every_effect_happens_exactly_once_through_many_faults(
    broker: KafkaServer, redis_url: str, database_url: str, tmp_path: Path
) -> None:
    plan = Plan(
        payments=450,
        rate=8.0,
        round_fans=450,
        kill_every=(3.0, 6.0),
        instance_every=(4.0, 8.0),
        outage_s=10.0,
        stub_fault_s=20.0,
        drain_timeout_s=600.0,
    )
    env = {**infra_env(ROOT), "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap}
    result = chaos.run(plan, PrivateBroker(broker), env, tmp_path / "stack")
    chaos.write(result, tmp_path / "chaos.json", tmp_path / "chaos.png")

    injected = {f["kind"] for f in result.faults}
    assert injected >= FAULT_KINDS, f"faults injected: {result.faults_injected}"
    assert {f["target"] for f in result.faults if f["kind"] == "unreachable"} == {
        "redis",
        "postgres",
    }
    assert any(f["target"] == "payment-api" for f in result.faults)
    assert result.events_in.get("payment.success", 0) > 0, result.fans
    assert result.events_in.get("payment.failed", 0) > 0, result.fans
    assert result.lag_zero_at_s is not None, "the lag never reached 0"
    assert result.outbox_unpublished == 0
    assert (result.lost, result.doubled, result.dlq, result.stale_holds) == (0, 0, 0, 0), (
        result.effects,
        result.examples,
    )
    checked = ("published", "ranking", "data platform", "cleanup", "compensation", "points")
    assert all(result.effects[e]["expected"] > 0 for e in checked), result.effects
    assert (tmp_path / "chaos.png").stat().st_size > 0
