"""Token -> active -> reserve -> pay, and the events that reach Kafka."""

from __future__ import annotations

import json

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.kafka]


def test_token_reserve_pay_publishes_events(api, world, kafka, spans: InMemorySpanExporter):
    _, schedule_id, seat_ids = world.schedule(seats=3, price=5000)
    user_id = world.user(points=12_000)
    start = kafka.offsets()

    token = api.token(user_id)
    waiting = api.state(token).json()
    assert waiting["user_id"] == user_id and waiting["status"] in ("waiting", "active")
    token = api.active_token(user_id)

    reserved = api.reserve(token, seat_ids[0])
    assert reserved.status_code == 201, reserved.text
    reservation = reserved.json()
    assert reservation["status"] == "held" and reservation["amount"] == 5000

    paid = api.pay(token, reservation["reservation_id"])
    assert paid.status_code == 201, paid.text
    payment = paid.json()
    assert payment["status"] == "succeeded" and payment["balance"] == 7000
    assert api.balance(user_id) == 7000

    seats = api.http.get(f"/v1/schedules/{schedule_id}/seats").json()
    assert [s["status"] for s in seats] == ["sold", "available", "available"]
    assert (
        world.scalar(
            "select status from reservations where id = :id", id=reservation["reservation_id"]
        )
        == "confirmed"
    )

    event_ids = world.event_ids(reservation["reservation_id"])
    assert len(event_ids) == 2
    world.wait_published(event_ids)
    messages = sorted(kafka.read(start, event_ids), key=lambda m: m.timestamp()[1])
    assert [m.topic() for m in messages] == ["reservation.created", "payment.success"]

    token_id = api.state(token).json()["token_id"]
    for message in messages:
        envelope = json.loads(message.value())
        headers = dict(message.headers())
        assert message.key() == str(seat_ids[0]).encode()
        assert envelope["key"] == str(seat_ids[0])
        assert envelope["event_type"] == message.topic()
        assert envelope["producer"] == "payment-api"
        assert envelope["schema_version"] == "1.0"
        assert headers["event_id"].decode() == envelope["event_id"]
        assert headers["event_type"].decode() == message.topic()
        assert envelope["payload"]["queue_token_id"] == token_id != token
        assert b"traceparent" in [k.encode() for k in headers]
    success = json.loads(messages[1].value())["payload"]
    assert success["payment_id"] == payment["payment_id"]
    assert success["amount"] == 5000 and success["schedule_seat_count"] == 3
    assert success["schedule_id"] == schedule_id and success["user_id"] == user_id

    # The publish span continues the trace of the HTTP request that wrote the row.
    traceparent = dict(messages[1].headers())["traceparent"].decode()
    trace_id = traceparent.split("-")[1]
    finished = spans.get_finished_spans()
    server = [
        s
        for s in finished
        if s.kind is SpanKind.SERVER and s.attributes.get("http.route") == "/v1/payments"
    ]
    assert any(format(s.context.trace_id, "032x") == trace_id for s in server)
    # The response names the same trace (W3C traceresponse).
    assert paid.headers["traceresponse"].split("-")[1] == trace_id
    publish = [s for s in finished if s.name == "payment.success publish"]
    assert any(format(s.context.trace_id, "032x") == trace_id for s in publish)
    db_spans = [s for s in finished if format(s.context.trace_id, "032x") == trace_id]
    assert any(
        s.attributes.get("db.system") or s.attributes.get("db.system.name") for s in db_spans
    )


def test_health_and_readiness(api):
    assert api.http.get("/healthz").json()["status"] == "ok"
    ready = api.http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": True, "migrations": True, "redis": True}


def test_catalogue_lists_concerts_schedules_and_free_seats(api, world):
    concert_id, schedule_id, seat_ids = world.schedule(seats=4, price=700)
    listed = api.http.get("/v1/concerts", params={"limit": 500}).json()
    assert {"id": concert_id}.items() <= next(c for c in listed if c["id"] == concert_id).items()
    user_id = world.user()
    token = api.active_token(user_id)
    assert api.reserve(token, seat_ids[1]).status_code == 201
    schedules = api.http.get(f"/v1/concerts/{concert_id}/schedules").json()
    assert schedules == [
        {
            "id": schedule_id,
            "concert_id": concert_id,
            "concert_date": "2026-12-24",
            "sale_opened_at": schedules[0]["sale_opened_at"],
            "seat_count": 4,
            "available_seats": 3,
        }
    ]
    seats = api.http.get(f"/v1/schedules/{schedule_id}/seats").json()
    assert [(s["seat_no"], s["status"], s["price"]) for s in seats] == [
        (1, "available", 700),
        (2, "held", 700),
        (3, "available", 700),
        (4, "available", 700),
    ]
    # A lapsed hold shows (and counts) as available again.
    world.execute(
        "update seats set held_until = now() - interval '1 second' where id = :id", id=seat_ids[1]
    )
    seats = api.http.get(f"/v1/schedules/{schedule_id}/seats").json()
    assert seats[1]["status"] == "available"
    assert api.http.get(f"/v1/concerts/{concert_id}/schedules").json()[0]["available_seats"] == 4


def test_sold_out_ranking_reads_the_consumer_table(api, world):
    assert api.http.get("/v1/rankings/sold-out", params={"date": "2031-01-01"}).json() == []
    concert_id, schedule_a, _ = world.schedule(seats=1)
    _, schedule_b, _ = world.schedule(seats=1)
    for schedule_id, seconds in ((schedule_a, 90.5), (schedule_b, 12.0)):
        world.execute(
            "insert into sold_out_ranking (schedule_id, concert_id, concert_date, sale_opened_at,"
            " sold_out_at, seconds_to_sell_out) values (:s, :c, '2031-01-02', now(), now(), :sec)",
            s=schedule_id,
            c=concert_id,
            sec=seconds,
        )
    ranking = api.http.get("/v1/rankings/sold-out", params={"date": "2031-01-02"}).json()
    assert [(r["rank"], r["schedule_id"]) for r in ranking] == [(1, schedule_b), (2, schedule_a)]
    assert ranking[1]["title"].startswith("Concert")
