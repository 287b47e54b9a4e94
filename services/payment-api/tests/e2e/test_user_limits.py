"""Per-user limits: one queue token per user, a cap on live reservations, a write rate limit;
past a limit the answer is 429 problem+json with Retry-After."""

from __future__ import annotations

import uuid

import pytest
import redis

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.kafka]


def assert_429(response, slug: str, most_s: int) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == f"urn:ticketing:problem:{slug}"
    assert 1 <= int(response.headers["retry-after"]) <= most_s


def _own_prefix(settings, **update):
    prefix = f"{settings.redis_key_prefix}{uuid.uuid4().hex[:8]}:"
    return settings.model_copy(update={"redis_key_prefix": prefix, **update}), prefix


def test_one_waiting_token_per_user(settings, world, serve, client_for):
    """Asking again replaces the user's token: the queue never holds two of one user."""
    frozen, prefix = _own_prefix(settings, queue_activator_enabled=False)
    user_id, other = world.user(), world.user()
    with serve(frozen) as server:
        api = client_for(server.url)
        tokens = [api.token(user_id) for _ in range(5)]
        api.token(other)
        client = redis.Redis.from_url(settings.redis_url)
        assert client.zcard(f"{prefix}queue:waiting") == 2
        client.close()
        for old in tokens[:-1]:
            assert api.state(old).status_code == 404
        latest = api.state(tokens[-1]).json()
        assert latest["status"] == "waiting" and latest["position"] == 1
        api.http.close()


def test_a_new_token_ends_the_active_one(api, world):
    user_id = world.user()
    _, _, seats = world.schedule(seats=1)
    first = api.active_token(user_id)
    second = api.active_token(user_id)
    assert api.reserve(first, seats[0]).json()["type"].endswith("queue-token-unknown")
    assert api.reserve(second, seats[0]).status_code == 201


def test_live_reservations_are_capped(settings, world, serve, client_for):
    capped, _ = _own_prefix(settings, reservation_limit_per_user=2)
    user_id = world.user(points=10_000)
    _, _, seats = world.schedule(seats=4, price=10)
    with serve(capped) as server:
        api = client_for(server.url)
        token = api.active_token(user_id)
        held = [api.reserve(token, s) for s in seats[:2]]
        assert [r.status_code for r in held] == [201, 201]
        before = world.counts()
        assert_429(api.reserve(token, seats[2]), "too-many-reservations", settings.hold_seconds)
        assert world.counts() == before
        # a paid reservation no longer holds a seat: room for another
        assert api.pay(token, held[0].json()["reservation_id"]).status_code == 201
        assert api.reserve(token, seats[2]).status_code == 201
        api.http.close()


def test_writes_are_rate_limited_per_user(settings, world, serve, client_for):
    limited, _ = _own_prefix(settings, rate_limit_writes_per_user=3, rate_limit_window_s=60)
    user_id, other = world.user(), world.user()
    with serve(limited) as server:
        api = client_for(server.url)
        assert [api.charge(user_id, 1).status_code for _ in range(3)] == [200, 200, 200]
        before = world.counts()
        assert_429(api.charge(user_id, 1), "rate-limited", 60)
        assert_429(api.http.post("/v1/queue/tokens", headers=api.user(user_id)), "rate-limited", 60)
        assert world.counts() == before
        assert api.balance(user_id) == 3  # reads are not limited
        assert api.charge(other, 1).status_code == 200  # per user
        api.http.close()
