"""Payments that cannot succeed: recorded, announced as payment.failed, answered with a 4xx."""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.kafka]


def _failed_events(world, kafka, start, reservation_id):
    ids = world.event_ids(reservation_id)
    world.wait_published(ids)
    found = [json.loads(m.value()) for m in kafka.read(start, ids)]
    return [e for e in found if e["event_type"] == "payment.failed"]


def test_insufficient_points_is_402_and_ends_the_reservation(api, world, kafka):
    _, _, seat_ids = world.schedule(seats=1, price=500)
    user_id = world.user(points=499)
    token = api.active_token(user_id)
    reservation_id = api.reserve(token, seat_ids[0]).json()["reservation_id"]
    start = kafka.offsets()
    failed = api.pay(token, reservation_id)
    assert failed.status_code == 402
    assert failed.headers["content-type"] == "application/problem+json"
    body = failed.json()
    assert body["reason"] == "insufficient_points" and body["reservation_id"] == reservation_id
    assert api.balance(user_id) == 499
    assert world.scalar("select status from reservations where id = :r", r=reservation_id) == (
        "payment_failed"
    )
    payment = world.rows("select * from payments where reservation_id = :r", r=reservation_id)
    assert [(p.status, p.failure_reason, p.points_deducted) for p in payment] == [
        ("failed", "insufficient_points", 0)
    ]
    (event,) = _failed_events(world, kafka, start, reservation_id)
    assert event["payload"]["reason"] == "insufficient_points"
    assert event["payload"]["payment_id"] == body["payment_id"]
    assert event["payload"]["points_deducted"] == 0
    # The reservation is over: paying again, even with enough points, is a conflict.
    api.charge(user_id, 1)
    again = api.pay(token, reservation_id)
    assert again.status_code == 409 and again.json()["type"].endswith("reservation-not-held")
    assert api.balance(user_id) == 500


def test_expired_hold_is_410(api, world, kafka):
    _, _, seat_ids = world.schedule(seats=1, price=10)
    user_id = world.user(points=100)
    token = api.active_token(user_id)
    reservation_id = api.reserve(token, seat_ids[0]).json()["reservation_id"]
    world.execute(
        "update reservations set hold_expires_at = now() - interval '1 second' where id = :r",
        r=reservation_id,
    )
    start = kafka.offsets()
    expired = api.pay(token, reservation_id)
    assert expired.status_code == 410 and expired.json()["reason"] == "hold_expired"
    assert api.balance(user_id) == 100
    (event,) = _failed_events(world, kafka, start, reservation_id)
    assert event["payload"]["reason"] == "hold_expired"


def test_seat_taken_over_after_expiry_fails_the_old_reservation(api, world):
    _, _, seat_ids = world.schedule(seats=1, price=10)
    first_user, second_user = world.users(2, points=100)
    first, second = api.active_token(first_user), api.active_token(second_user)
    old = api.reserve(first, seat_ids[0]).json()["reservation_id"]
    world.execute(
        "update seats set held_until = now() - interval '1 second' where id = :s", s=seat_ids[0]
    )
    new = api.reserve(second, seat_ids[0])
    assert new.status_code == 201
    assert api.pay(first, old).status_code == 410
    assert api.pay(second, new.json()["reservation_id"]).status_code == 201
    assert api.balance(first_user) == 100 and api.balance(second_user) == 90


def test_paying_another_users_reservation_is_404_and_leaves_it_alone(api, world):
    """Another user's reservation is answered as unknown: no 403 that would reveal it
    exists, and nothing recorded (no failed payment, no event)."""
    _, _, seat_ids = world.schedule(seats=1, price=10)
    owner, intruder = world.users(2, points=100)
    owner_token, intruder_token = api.active_token(owner), api.active_token(intruder)
    reservation_id = api.reserve(owner_token, seat_ids[0]).json()["reservation_id"]
    before = world.counts()
    denied = api.pay(intruder_token, reservation_id)
    assert denied.status_code == 404, denied.text
    assert denied.json()["type"] == "urn:ticketing:problem:not-found"
    unknown = api.pay(intruder_token, 2**52)
    assert denied.json()["title"] == unknown.json()["title"]
    assert world.counts() == before
    assert world.scalar("select status from reservations where id = :r", r=reservation_id) == "held"
    assert api.pay(owner_token, reservation_id).status_code == 201
    assert api.balance(owner) == 90 and api.balance(intruder) == 100


def test_paying_twice_is_409_already_paid_and_charges_once(api, world):
    _, _, seat_ids = world.schedule(seats=1, price=10)
    user_id = world.user(points=100)
    token = api.active_token(user_id)
    reservation_id = api.reserve(token, seat_ids[0]).json()["reservation_id"]
    assert api.pay(token, reservation_id).status_code == 201
    before = world.counts()
    again = api.pay(token, reservation_id)
    assert again.status_code == 409 and again.json()["type"].endswith("already-paid")
    assert api.balance(user_id) == 90 and world.counts() == before
