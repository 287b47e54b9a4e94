"""How many replicas ensure_topics gives new topics, and how many must be in sync for a write."""

from __future__ import annotations

import pytest
from ticketing_events.topics import durability


@pytest.fixture(autouse=True)
def _no_topic_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOPIC_REPLICATION_FACTOR", raising=False)
    monkeypatch.delenv("TOPIC_MIN_INSYNC_REPLICAS", raising=False)


@pytest.mark.parametrize(
    ("brokers", "expected"), [(1, (1, 1)), (2, (2, 1)), (3, (3, 2)), (5, (3, 2))]
)
def test_the_cluster_size_decides_up_to_three_replicas(
    brokers: int, expected: tuple[int, int]
) -> None:
    assert durability(brokers) == expected


def test_the_environment_overrides_the_cluster_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOPIC_REPLICATION_FACTOR", "3")
    assert durability(1) == (3, 2)
    monkeypatch.setenv("TOPIC_MIN_INSYNC_REPLICAS", "3")
    assert durability(5) == (3, 3)


def test_arguments_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOPIC_REPLICATION_FACTOR", "3")
    monkeypatch.setenv("TOPIC_MIN_INSYNC_REPLICAS", "2")
    assert durability(3, replication_factor=1, min_insync_replicas=1) == (1, 1)
    assert durability(3, replication_factor=5) == (5, 2)
