"""A real Prometheus scrapes the whole stack's ``/metrics`` through a rush of payments with
poison on a topic: the lag query drains to 0 for every group, the handled counts equal the
events published, the dead-letter counts equal the poison, and every query of the chart's
Grafana dashboard returns data."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer
from test_end_to_end import PRICE, Fans, assert_every_effect_once, wait_drained
from ticketing_dev.stack import CONSUMERS, Stack
from ticketing_events.testing import Harness, PrometheusServer, ScrapeTarget, end_offsets
from ticketing_events.topics import CONSUMER_GROUPS, PAYMENT_SUCCESS

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.redis,
    pytest.mark.postgres,
    pytest.mark.prometheus,
    pytest.mark.timeout(600),
]

DASHBOARD = Path(__file__).resolve().parent.parent / "charts/ticketing/dashboards/ticketing.json"
GROUP = "messaging_consumer_group_name"
TOPIC = "messaging_destination_name"
POISON = 3


@pytest.fixture(scope="module")
def prometheus(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> PrometheusServer:
    targets = [ScrapeTarget(f"127.0.0.1:{stack.api_port}", "payment-api")] + [
        ScrapeTarget(f"127.0.0.1:{stack.health_port + i}", "consumers", {"service": name})
        for i, name in enumerate(CONSUMERS)
    ]
    server = PrometheusServer(tmp_path_factory.mktemp("prometheus"), targets)
    server.start()
    try:
        server.wait_for_targets_up()
        yield server
    finally:
        server.stop()


def by_group_and_topic(prometheus: PrometheusServer, metric: str) -> dict[tuple[str, str], float]:
    query = f"sum by ({GROUP}, {TOPIC}) ({metric})"
    return {(m[GROUP], m[TOPIC]): v for m, v in prometheus.query(query)}


def stable_counts(
    prometheus: PrometheusServer, names: tuple[str, ...]
) -> dict[str, dict[tuple[str, str], float]]:
    """The counters once two readings a few scrapes apart agree (the last scrapes are in)."""
    last: dict[str, dict[tuple[str, str], float]] = {}

    def same() -> bool:
        nonlocal last
        now = {name: by_group_and_topic(prometheus, name) for name in names}
        agreed, last = now == last, now
        if not agreed:
            time.sleep(3 * prometheus.scrape_interval)
        return agreed

    Harness.wait_until(same, 60, "the counters to settle in Prometheus")
    return last


def test_prometheus_sees_the_rush_drain_and_the_poison_dead_lettered(
    stack: Stack, prometheus: PrometheusServer
) -> None:
    groups = {stack.group_of(g.service): g.topics for g in CONSUMER_GROUPS.values()}
    topics = sorted({t for ts in groups.values() for t in ts})
    bootstrap = stack.env["KAFKA_BOOTSTRAP_SERVERS"]
    wait_drained(stack)  # what earlier tests published is counted before the rush
    handled = "ticketing_consumer_handled_total"
    dead = "ticketing_consumer_dead_lettered_total"
    before = stable_counts(prometheus, (handled, dead))
    start = end_offsets(bootstrap, topics)

    paying, short = 20, 5
    fans = Fans(stack, seats=paying + short, points=[PRICE] * paying + [PRICE - 1] * short)
    reservations = fans.reserve_each()
    poison = Producer({"bootstrap.servers": bootstrap})
    for n in range(POISON):
        poison.produce(PAYMENT_SUCCESS, key=str(n).encode(), value=b"{not json")
    poison.flush(10)
    statuses = [fans.pay(fan, r).status_code for fan, r in enumerate(reservations)]
    assert statuses == [201] * paying + [402] * short
    assert_every_effect_once(stack, fans, reservations, paying)

    published = {
        t: sum(end - start[(topic, p)] for (topic, p), end in end_offsets(bootstrap, [t]).items())
        for t in topics
    }
    poisoned = {t: POISON if t == PAYMENT_SUCCESS else 0 for t in topics}
    want_handled = {(g, t): published[t] - poisoned[t] for g, ts in groups.items() for t in ts}
    want_dead = {(g, t): poisoned[t] for g, ts in groups.items() for t in ts if poisoned[t]}

    def grew(name: str) -> dict[tuple[str, str], float]:
        now = by_group_and_topic(prometheus, name)
        return {k: d for k in now if k[0] in groups if (d := now[k] - before[name].get(k, 0.0))}

    def settled() -> bool:
        lag = prometheus.query(f"sum by ({GROUP}) (ticketing_consumer_lag)")
        drained = {m[GROUP]: v for m, v in lag if m[GROUP] in groups} == dict.fromkeys(groups, 0)
        return drained and grew(handled) == want_handled and grew(dead) == want_dead

    Harness.wait_until(settled, 60, "Prometheus to see every group drained and counted")
    assert published[PAYMENT_SUCCESS] == paying + POISON


def test_every_dashboard_query_returns_data(stack: Stack, prometheus: PrometheusServer) -> None:
    """Run after the rush above: each panel's expression has at least one series."""
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p["targets"]]
    assert len(queries) >= 6
    results = {title: prometheus.query(expr) for title, expr in queries}
    for title, series in results.items():  # shown with -s: what each panel would draw now
        print(f"{title}: {[(sorted(labels.values()), round(v, 4)) for labels, v in series]}")
    empty = [title for title, series in results.items() if not series]
    assert not empty, f"panels with no data: {empty}"
    # The poison of the rush shows in the DLQ panel of each group of its topic.
    poisoned = {
        stack.group_of(g.service) for g in CONSUMER_GROUPS.values() if PAYMENT_SUCCESS in g.topics
    }
    dlq = results["Dead-lettered (last 15 min)"]
    assert {m[GROUP] for m, v in dlq if m["reason"] == "undecodable" and v > 0} == poisoned
