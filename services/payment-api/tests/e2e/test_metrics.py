"""payment-api's ``/metrics``: request durations by route and status, the relay's publishes and
the outbox backlog, as Prometheus reads them."""

from __future__ import annotations

import pytest
from ticketing_events.testing import Harness, metric_total, scrape_metrics

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.kafka,
    pytest.mark.usefixtures("meter_provider"),
]

DURATION = "http_server_request_duration_seconds_count"


def test_requests_publishes_and_the_backlog_are_measured(api, world):
    _, _, seat_ids = world.schedule(seats=2, price=5000)
    user_id = world.user(points=5000)
    token = api.active_token(user_id)
    before = scrape_metrics(f"{api.url}/metrics")

    reserved = api.reserve(token, seat_ids[0])
    assert reserved.status_code == 201, reserved.text
    paid = api.pay(token, reserved.json()["reservation_id"])
    assert paid.status_code == 201, paid.text
    assert api.pay(token, reserved.json()["reservation_id"]).status_code == 409
    assert api.http.get("/v1/no-such-route").status_code == 404
    world.wait_published(world.event_ids(reserved.json()["reservation_id"]))

    def grew(name: str, **labels: str) -> float:
        return metric_total(after, name, **labels) - metric_total(before, name, **labels)

    def backlog_empty() -> bool:
        return metric_total(scrape_metrics(f"{api.url}/metrics"), "ticketing_outbox_backlog") == 0

    Harness.wait_until(backlog_empty, 30, "the outbox backlog gauge at 0")
    after = scrape_metrics(f"{api.url}/metrics")
    post = {"http_request_method": "POST"}
    assert grew(DURATION, http_route="/v1/reservations", http_response_status_code="201", **post)
    assert grew(DURATION, http_route="/v1/payments", http_response_status_code="201", **post) == 1
    assert grew(DURATION, http_route="/v1/payments", http_response_status_code="409", **post) == 1
    assert grew(DURATION, http_route="unmatched", http_response_status_code="404") == 1
    assert grew("ticketing_outbox_published_total") >= 2  # reservation.created, payment.success
    assert grew("ticketing_outbox_publish_duration_seconds_count") >= 1
    assert metric_total(after, "ticketing_outbox_oldest_age_seconds") == 0
