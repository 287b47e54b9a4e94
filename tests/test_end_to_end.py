"""The running system, end to end: one trace per payment in Jaeger, and every effect of a
batch of payments present exactly once after the consumers drain."""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis
from jaeger import Trace, fetch_trace
from payment_api.auth import dev_auth_env, mint_dev_token
from payment_api.domain.model import token_id
from payment_api.seed import add_schedule, add_users
from sqlalchemy import text
from ticketing_dev.stack import CONSUMERS, Stack
from ticketing_events.testing import committed_offsets, end_offsets
from ticketing_events.topics import CONSUMER_GROUPS, PAYMENT_SUCCESS, consumers_of

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.redis,
    pytest.mark.postgres,
    pytest.mark.jaeger,
    pytest.mark.timeout(300),
]

PRICE = 5000


class Fans:
    """Fans of a fresh schedule, with tokens activated through the real queue."""

    def __init__(self, stack: Stack, seats: int, points: list[int]) -> None:
        self.stack = stack
        self.http = httpx.Client(base_url=stack.api_url, timeout=30)
        engine = stack.engine()
        with engine.begin() as conn:
            _, self.schedule_id, self.seat_ids = add_schedule(
                conn,
                seats_count=seats,
                price=PRICE,
                concert_date=date(2026, 12, 24),
                sale_opened_at=datetime.now(UTC) - timedelta(minutes=1),
                title="End to end",
            )
            self.user_ids = [add_users(conn, 1, points=p, name="e2e")[0] for p in points]
        engine.dispose()
        # each fan signs in with a development JWT of the stack's key (ticketing_dev.stack)
        secret = dev_auth_env(stack.env)["AUTH_JWT_SECRET"]
        self.jwts = [
            {"Authorization": f"Bearer {mint_dev_token(u, secret=secret)}"} for u in self.user_ids
        ]
        self.tokens = [self._active_token(fan) for fan in range(len(self.user_ids))]

    def _active_token(self, fan: int) -> str:
        issued = self.http.post("/v1/queue/tokens", headers=self.jwts[fan]).json()
        state = f"/v1/queue/tokens/{issued['token_id']}"
        deadline = time.monotonic() + 30
        while self.http.get(state, headers=self.jwts[fan]).json()["status"] != "active":
            assert time.monotonic() < deadline, "token never became active"
            time.sleep(0.1)
        return str(issued["token"])

    def auth(self, fan: int) -> dict[str, str]:
        return {**self.jwts[fan], "X-Queue-Token": self.tokens[fan]}

    def reserve(self, fan: int, seat: int) -> httpx.Response:
        return self.http.post(
            "/v1/reservations", json={"seat_id": self.seat_ids[seat]}, headers=self.auth(fan)
        )

    def reserve_each(self) -> list[int]:
        """Fan ``i`` reserves seat ``i``; the reservation ids, in the fans' order."""
        reservations = []
        for fan in range(len(self.user_ids)):
            reserved = self.reserve(fan, fan)
            assert reserved.status_code == 201, reserved.text
            reservations.append(int(reserved.json()["reservation_id"]))
        return reservations

    def pay(self, fan: int, reservation_id: int) -> httpx.Response:
        return self.http.post(
            "/v1/payments", json={"reservation_id": reservation_id}, headers=self.auth(fan)
        )


def trace_id(response: httpx.Response) -> str:
    return response.headers["traceresponse"].split("-")[1]


def jaeger_url(stack: Stack) -> str:
    return stack.env["JAEGER_QUERY_URL"]


def consumer_span(t: Trace, service: str) -> Any:
    (span,) = [s for s in t.of(service, "consumer")]
    return span


def has_consumers(*services: str) -> Any:
    return lambda t: all(t.of(s, "consumer") for s in services)


def assert_logged(stack: Stack, services: tuple[str, ...], trace: str) -> None:
    """Every service wrote at least one JSON log line carrying the trace id."""
    for service in services:
        lines = stack.log_path(service).read_text().splitlines()
        carrying = [
            line
            for line in lines
            if line.startswith("{") and trace in line and json.loads(line).get("trace_id") == trace
        ]
        assert carrying, f"no log line of {service} carries trace {trace}"


def test_a_paid_seat_is_one_trace_from_the_request_to_every_consumer(stack: Stack) -> None:
    fans = Fans(stack, seats=1, points=[PRICE])
    reserved = fans.reserve(0, 0)
    assert reserved.status_code == 201, reserved.text
    paid = fans.pay(0, reserved.json()["reservation_id"])
    assert paid.status_code == 201, paid.text

    consumers = consumers_of(PAYMENT_SUCCESS)
    t = fetch_trace(jaeger_url(stack), trace_id(paid), has_consumers(*consumers), timeout=60)

    (server,) = [s for s in t.of("payment-api", "server") if s.name == "POST /v1/payments"]
    db = [s for s in t.of("payment-api", "client") if "db.system" in s.tags]
    assert db and all(t.descends_from(s, server) for s in db)
    (publish,) = [s for s in t.of("payment-api", "producer") if s.name == "payment.success publish"]
    assert t.descends_from(publish, server)
    for service in consumers:
        assert t.descends_from(consumer_span(t, service), publish), service
    (call,) = t.of("dataplatform-consumer", "client")
    assert t.descends_from(call, consumer_span(t, "dataplatform-consumer"))
    assert not t.of("compensator") and not t.of("seatlock-consumer")
    assert_logged(stack, ("payment-api", *consumers), t.trace_id)


def test_a_failed_payment_is_one_trace_through_compensation_and_cleanup(stack: Stack) -> None:
    fans = Fans(stack, seats=1, points=[PRICE - 1])
    reserved = fans.reserve(0, 0)
    failed = fans.pay(0, reserved.json()["reservation_id"])
    assert failed.status_code == 402, failed.text

    consumers = ("compensator", "cleanup-consumer")
    t = fetch_trace(jaeger_url(stack), trace_id(failed), has_consumers(*consumers), timeout=60)
    (publish,) = [s for s in t.of("payment-api", "producer") if s.name == "payment.failed publish"]
    for service in consumers:
        assert t.descends_from(consumer_span(t, service), publish), service
    assert not t.of("ranking-consumer") and not t.of("dataplatform-consumer")
    assert_logged(stack, ("payment-api", *consumers), t.trace_id)


def test_a_reservation_trace_reaches_the_seat_lock(stack: Stack) -> None:
    fans = Fans(stack, seats=1, points=[PRICE])
    reserved = fans.reserve(0, 0)
    assert reserved.status_code == 201, reserved.text
    t = fetch_trace(
        jaeger_url(stack), trace_id(reserved), has_consumers("seatlock-consumer"), timeout=60
    )
    (publish,) = t.of("payment-api", "producer")
    assert publish.name == "reservation.created publish"
    assert t.descends_from(consumer_span(t, "seatlock-consumer"), publish)
    assert_logged(stack, ("payment-api", "seatlock-consumer"), t.trace_id)


def wait_drained(stack: Stack, timeout: float = 120) -> None:
    bootstrap = stack.env["KAFKA_BOOTSTRAP_SERVERS"]
    deadline = time.monotonic() + timeout
    for service in CONSUMERS:
        (topics,) = [g.topics for g in CONSUMER_GROUPS.values() if g.service == service]
        ends = end_offsets(bootstrap, topics)
        while True:
            committed = committed_offsets(bootstrap, stack.group_of(service), topics)
            if all(committed[tp] >= end for tp, end in ends.items()):
                break
            lag = {tp: (committed[tp], end) for tp, end in ends.items() if committed[tp] < end}
            assert time.monotonic() < deadline, f"{service} did not drain: (committed, end) {lag}"
            time.sleep(0.2)


def test_every_effect_of_a_batch_of_payments_happens_exactly_once(stack: Stack) -> None:
    paying, short = 12, 6  # fans who can pay, fans one point short
    fans = Fans(stack, seats=paying + short, points=[PRICE] * paying + [PRICE - 1] * short)
    reservations = fans.reserve_each()
    statuses = [fans.pay(fan, r).status_code for fan, r in enumerate(reservations)]
    assert statuses == [201] * paying + [402] * short
    assert_every_effect_once(stack, fans, reservations, paying)


def assert_every_effect_once(
    stack: Stack,
    fans: Fans,
    reservations: list[int],
    paying: int,
    timeout: float = 120,
    redelivered: bool = False,
) -> None:
    """Once the outbox and every group drained, each effect of the payments is there once.
    Fan ``i`` reserved ``reservations[i]``; the first ``paying`` fans paid, the others were
    one point short. ``redelivered``: faults may have sent a payment to the data platform
    again (an event published twice), which its Idempotency-Key makes it drop."""
    short = len(reservations) - paying
    engine = stack.engine()
    with engine.connect() as conn:
        deadline = time.monotonic() + timeout
        while conn.execute(text("select count(*) from outbox where published_at is null")).scalar():
            assert time.monotonic() < deadline, "outbox not drained"
            time.sleep(0.2)
            conn.commit()
    wait_drained(stack, timeout)

    with engine.connect() as conn:
        # ranking: every sale counted once, and the schedule is not sold out (seats remain).
        sold = conn.execute(
            text("select sold from schedule_sales where schedule_id = :s"),
            {"s": fans.schedule_id},
        ).scalar()
        assert sold == paying
        # compensator: each failed reservation cancelled and its seat free again.
        rows = conn.execute(
            text(
                "select r.status, s.status from reservations r join seats s on s.id = r.seat_id"
                " where r.id = any(:ids) order by r.id"
            ),
            {"ids": reservations},
        ).all()
        assert rows == [("confirmed", "sold")] * paying + [("cancelled", "available")] * short
        success_ids = list(
            conn.execute(
                text(
                    "select event_id from outbox where event_type = 'payment.success'"
                    " and cast(payload as jsonb) -> 'payload' ->> 'schedule_id' = :s"
                ),
                {"s": str(fans.schedule_id)},
            ).scalars()
        )
    engine.dispose()

    # data platform: each payment received once (at least once when redelivered).
    assert len(success_ids) == paying
    stub = httpx.Client(base_url=stack.stub_url)
    received = [stub.get(f"/payments/{e}").json()["received"] for e in success_ids]
    assert all(n >= 1 for n in received) if redelivered else received == [1] * paying

    # cleanup: holds released; tokens of the payers expired, of the short fans kept.
    r = redis.Redis.from_url(stack.env["REDIS_URL"])
    p = stack.redis_prefix
    assert not any(r.exists(f"{p}seat:hold:{seat}") for seat in fans.seat_ids)
    active = [bool(r.exists(f"{p}queue:active:{token_id(t)}")) for t in fans.tokens]
    assert active == [False] * paying + [True] * short
    r.close()
