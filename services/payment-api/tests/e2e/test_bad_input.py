"""Every client mistake gets its documented 4xx as problem+json, and writes nothing."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.kafka]


@pytest.fixture
def nothing_written(world):
    before = world.counts()
    yield
    assert world.counts() == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "user_id"),
        ({"user_id": "7"}, "user_id"),
        ({"user_id": 0}, "user_id"),
        ({"user_id": 2**70}, "user_id"),
        ({"user_id": 1.5}, "user_id"),
        ({"user_id": 1, "extra": True}, "extra"),
        ([1], "body"),
    ],
)
def test_token_request_validation(api, nothing_written, body, field, assert_problem):
    response = api.http.post("/v1/queue/tokens", json=body, headers=api.user(1))
    problem = assert_problem(response, 422, "validation-error")
    assert field in [e["field"] for e in problem["errors"]]
    assert all(e["reason"] for e in problem["errors"])


def test_malformed_json_is_a_validation_error(api, world, assert_problem):
    token = api.active_token(world.user())
    before = world.counts()
    response = api.http.post(
        "/v1/payments",
        content=b'{"reservation_id": ',
        headers={"Content-Type": "application/json", **api.auth(token)},
    )
    problem = assert_problem(response, 422, "validation-error")
    assert problem["errors"][0]["in"] == "body"
    assert world.counts() == before


def test_unknown_ids_are_404(api, world, nothing_written, assert_problem):
    ghost = api.user(2**52)  # a valid JWT of a user who does not exist
    assert_problem(api.http.post("/v1/queue/tokens", headers=ghost), 404, "not-found")
    assert_problem(api.http.get(f"/v1/queue/tokens/{'0' * 64}", headers=ghost), 404, "not-found")
    assert_problem(api.http.get(f"/v1/users/{2**52}/points", headers=ghost), 404, "not-found")
    assert_problem(api.charge(2**52, 1), 404, "not-found")
    assert_problem(api.http.get(f"/v1/concerts/{2**52}/schedules"), 404, "not-found")
    assert_problem(api.http.get(f"/v1/schedules/{2**52}/seats"), 404, "not-found")
    token = api.active_token(world.user())
    assert_problem(api.reserve(token, 2**52), 404, "not-found")
    assert_problem(api.pay(token, 2**52), 404, "not-found")
    assert_problem(api.http.get("/v1/nowhere"), 404, "http-404")
    assert_problem(api.http.delete("/v1/payments"), 405, "http-405")


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/v1/users/abc/points", "user_id"),
        (f"/v1/users/{2**70}/points", "user_id"),
        ("/v1/users/0/points", "user_id"),
        ("/v1/concerts/-1/schedules", "concert_id"),
        ("/v1/concerts?limit=0", "limit"),
        ("/v1/rankings/sold-out", "date"),
        ("/v1/rankings/sold-out?date=2026-13-01", "date"),
        ("/v1/queue/tokens/not-a-token-id", "token_id"),
        (f"/v1/queue/tokens/{'x' * 600}", "token_id"),
    ],
)
def test_bad_paths_and_queries(api, nothing_written, path, field, assert_problem):
    problem = assert_problem(api.http.get(path, headers=api.user(1)), 422, "validation-error")
    assert field in [e["field"] for e in problem["errors"]]


@pytest.mark.parametrize("amount", [0, -5, 1.5, "10", None, 10**12])
def test_charge_validation(api, world, nothing_written, amount, assert_problem):
    user_id = world.user(points=3)
    response = api.charge(user_id, amount)
    problem = assert_problem(response, 422, "validation-error")
    assert problem["errors"][0]["field"] == "amount"
    assert api.balance(user_id) == 3


def test_missing_unknown_and_waiting_tokens(
    api, world, settings, serve, client_for, assert_problem
):
    _, _, seat_ids = world.schedule(seats=1)
    before = world.counts()
    me = world.user()
    no_token = api.http.post(
        "/v1/reservations", json={"seat_id": seat_ids[0]}, headers=api.user(me)
    )
    assert_problem(no_token, 403, "queue-token-missing")
    assert_problem(api.reserve("forged-token", seat_ids[0], as_user=me), 403, "queue-token-unknown")
    assert_problem(api.pay("forged", 1, as_user=me), 403, "queue-token-unknown")
    frozen = settings.model_copy(
        update={
            "queue_activator_enabled": False,
            "redis_key_prefix": f"{settings.redis_key_prefix}frozen:",
        }
    )
    with serve(frozen) as server:
        waiting_api = client_for(server.url)
        user_id = world.user()
        waiting = waiting_api.token(user_id)
        status = waiting_api.state(waiting).json()
        assert status["status"] == "waiting" and status["position"] >= 1
        problem = assert_problem(
            waiting_api.reserve(waiting, seat_ids[0]), 403, "queue-token-not-active"
        )
        assert problem["position"] == status["position"]
        assert_problem(waiting_api.pay(waiting, 1), 403, "queue-token-not-active")
        waiting_api.http.close()
    assert world.counts() == before


def test_sale_not_open_and_taken_seat_are_409(api, world, nothing_written, assert_problem):
    from datetime import UTC, datetime, timedelta

    _, _, later = world.schedule(seats=1, sale_opened_at=datetime.now(UTC) + timedelta(days=1))
    token = api.active_token(world.user())
    assert_problem(api.reserve(token, later[0]), 409, "sale-not-open")


def test_idempotency_key_reuse_and_format(api, world, assert_problem):
    user_id = world.user(points=0)
    first = api.charge(user_id, 5, Idempotency_Key="charge-1")
    again = api.charge(user_id, 5, Idempotency_Key="charge-1")
    assert first.status_code == again.status_code == 200 and first.json() == again.json()
    assert api.balance(user_id) == 5
    before = world.counts()
    other = api.charge(user_id, 6, Idempotency_Key="charge-1")
    assert_problem(other, 422, "idempotency-key-reused")
    bad = api.charge(user_id, 6, Idempotency_Key="has space")
    assert assert_problem(bad, 422, "validation-error")["errors"][0]["field"] == "Idempotency-Key"
    assert api.balance(user_id) == 5 and world.counts() == before
