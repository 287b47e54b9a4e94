"""Moves the head of the waiting queue to active; one leader at a time among replicas."""

from __future__ import annotations

import uuid

import structlog
from opentelemetry.instrumentation.utils import suppress_instrumentation
from redis import RedisError

from payment_api.adapters.redis_queue import RedisQueue
from payment_api.service_layer.background import BackgroundLoop

log = structlog.get_logger(__name__)


class QueueActivator:
    def __init__(
        self, queue: RedisQueue, *, batch_size: int, interval_s: float, leader_ttl_s: float
    ) -> None:
        self._queue = queue
        self._batch = batch_size
        self._leader_ttl_ms = int(leader_ttl_s * 1000)
        self.instance_id = uuid.uuid4().hex
        self.loop = BackgroundLoop("queue-activator", self.tick, interval_s)

    def tick(self) -> int:
        """Activate one batch if this instance leads; how many tokens became active."""
        with suppress_instrumentation():
            if not self._queue.lead(self.instance_id, self._leader_ttl_ms):
                return 0
            activated = self._queue.activate(self._batch)
        if activated:
            log.info("queue tokens activated", count=activated)
        return activated

    def start(self) -> None:
        self.loop.start()

    def stop(self) -> None:
        self.loop.stop()
        try:
            with suppress_instrumentation():
                self._queue.resign(self.instance_id)
        except RedisError:
            log.warning("could not resign the activator leadership; it lapses with its TTL")
