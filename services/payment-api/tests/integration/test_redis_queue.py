"""The waiting queue and its activator against the real Redis."""

from __future__ import annotations

import uuid

import pytest
from payment_api.adapters.redis_queue import RedisQueue
from payment_api.domain.model import TokenStatus
from payment_api.service_layer.activator import QueueActivator
from redis import Redis
from ticketing_events.testing import redis_clock_ms

pytestmark = [pytest.mark.redis]


@pytest.fixture
def queue(redis_url):
    client = Redis.from_url(redis_url)
    prefix = f"test-queue-{uuid.uuid4().hex[:8]}:"
    yield RedisQueue(client, prefix=prefix, waiting_ttl_s=60, active_ttl_s=30)
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)
    client.close()


def activator(queue: RedisQueue, batch: int) -> QueueActivator:
    # Leadership lasts longer than any test: it changes hands only when a leader resigns.
    return QueueActivator(queue, batch_size=batch, interval_s=1, leader_ttl_s=600)


def test_tokens_wait_in_arrival_order_and_activate_from_the_head(queue):
    ids = [uuid.uuid4().hex for _ in range(5)]
    assert [queue.enqueue(token_id, user_id=n) for n, token_id in enumerate(ids)] == [1, 2, 3, 4, 5]
    assert activator(queue, batch=2).tick() == 2
    assert queue.active_user(ids[0]) == 0 and queue.active_user(ids[1]) == 1
    waiting = queue.state(ids[2])
    assert waiting is not None and waiting.status is TokenStatus.WAITING and waiting.position == 1
    assert queue.active_user(ids[2]) is None
    assert queue.state(uuid.uuid4().hex) is None


def test_only_the_leader_activates_and_a_resigned_leader_hands_over(queue):
    ids = [uuid.uuid4().hex for _ in range(4)]
    for n, token_id in enumerate(ids):
        queue.enqueue(token_id, user_id=n)
    first, second = activator(queue, batch=1), activator(queue, batch=1)
    assert first.tick() == 1
    assert second.tick() == 0  # first holds the leadership
    assert first.tick() == 1
    first.stop()  # resigns
    assert second.tick() == 1


def test_the_active_key_expires_with_its_ttl(queue):
    token_id = uuid.uuid4().hex
    queue.enqueue(token_id, user_id=7)
    before = redis_clock_ms(queue._redis)
    activator(queue, batch=10).tick()
    after = redis_clock_ms(queue._redis)
    expires = queue._redis.pexpiretime(queue.key(f"queue:active:{token_id}"))
    assert before + 30_000 <= expires <= after + 30_000
    assert queue._redis.exists(queue.key(f"queue:token:{token_id}")) == 0
