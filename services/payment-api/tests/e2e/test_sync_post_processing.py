"""POST_PROCESSING=sync: by the time the payment answers, the consumers' handlers have done
their work in the request (ranking, data platform, cleanup; compensator and cleanup on a
failure), against the real PostgreSQL, Redis and the stand-in data platform."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from dataplatform_stub.control import StubControl, running_stub
from payment_api.adapters.database import create_db_engine
from ticketing_events.redis_layout import RedisKeys

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.kafka]


@pytest.fixture
def stub() -> Iterator[StubControl]:
    with running_stub() as control:
        yield control


@pytest.fixture
def sync_settings(private_settings, stub, monkeypatch):
    # The data platform client reads the dataplatform-consumer's own variables.
    monkeypatch.setenv("DATAPLATFORM_URL", stub.payments_url)
    return private_settings.model_copy(update={"post_processing": "sync"})


@pytest.fixture
def sync_world(sync_settings, world_on):
    engine = create_db_engine(sync_settings)
    yield world_on(engine)
    engine.dispose()


@pytest.fixture
def sync_api(sync_settings, serve, client_for):
    with serve(sync_settings) as server:
        api = client_for(server.url)
        yield api
        api.http.close()


@pytest.fixture
def held(sync_settings, sync_world, sync_api):
    """Reserve with a fresh user; the seat hold set as the seatlock consumer would.
    Returns (user, token, token_id, seat_id, reservation_id, schedule_id, keys, redis)."""

    def reserve(points: int):
        _, schedule_id, (seat_id,) = sync_world.schedule(seats=1, price=1000)
        user_id = sync_world.user(points=points)
        token = sync_api.active_token(user_id)
        token_id = sync_api.state(token).json()["token_id"]
        reservation_id = sync_api.reserve(token, seat_id).json()["reservation_id"]
        keys = RedisKeys(sync_settings.redis_key_prefix)
        client.set(keys.seat_hold(seat_id), reservation_id)
        return user_id, token, token_id, seat_id, reservation_id, schedule_id, keys

    client = redis.Redis.from_url(sync_settings.redis_url, decode_responses=True)
    yield reserve, client
    client.close()


def test_success_effects_are_done_when_the_payment_answers(sync_api, sync_world, held, stub):
    reserve, client = held
    _, token, token_id, seat_id, reservation_id, schedule_id, keys = reserve(points=5000)

    paid = sync_api.pay(token, reservation_id)

    assert paid.status_code == 201, paid.text
    # ranking: counted, and the one-seat schedule is sold out
    assert (
        sync_world.scalar("select sold from schedule_sales where schedule_id = :s", s=schedule_id)
        == 1
    )
    assert (
        sync_world.scalar(
            "select count(*) from sold_out_ranking where schedule_id = :s", s=schedule_id
        )
        == 1
    )
    # data platform: received under the event id, which the outbox row also carries
    (event_id,) = sync_world.rows(
        "select event_id from outbox where topic = 'payment.success'"
        " and payload::jsonb -> 'payload' ->> 'reservation_id' = :r",
        r=str(reservation_id),
    )[0]
    receipt = stub.payment(event_id)
    assert receipt is not None and receipt["received"] == 1, receipt
    # cleanup: hold released, token expired, tombstone written
    assert client.get(keys.seat_hold(seat_id)) is None
    assert client.exists(keys.queue_active(token_id)) == 0
    assert sync_api.state(token).status_code == 404
    assert client.get(keys.seat_released(reservation_id)) == "paid"


def test_failure_is_compensated_when_the_payment_answers(sync_api, sync_world, held):
    reserve, client = held
    _, token, token_id, seat_id, reservation_id, _, keys = reserve(points=10)

    paid = sync_api.pay(token, reservation_id)

    assert paid.status_code == 402, paid.text
    # compensator: the reservation cancelled, the seat free again
    assert (
        sync_world.scalar("select status from reservations where id = :r", r=reservation_id)
        == "cancelled"
    )
    assert sync_world.scalar("select status from seats where id = :s", s=seat_id) == "available"
    # cleanup: hold released, the token still active for a retry
    assert client.get(keys.seat_hold(seat_id)) is None
    assert client.get(keys.seat_released(reservation_id)) == "failed"
    assert client.exists(keys.queue_active(token_id)) == 1
