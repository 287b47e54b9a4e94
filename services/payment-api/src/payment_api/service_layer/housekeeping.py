"""Periodic pruning: published outbox rows and old idempotency keys.

Rows go in batches of ``batch_size``, one transaction each: a big backlog never makes one
statement that runs into the statement timeout or holds its locks for long."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import structlog
from opentelemetry.instrumentation.utils import suppress_instrumentation

from payment_api.adapters.outbox import OutboxStore
from payment_api.service_layer.unit_of_work import UnitOfWorkFactory

log = structlog.get_logger(__name__)


def prune(
    store: OutboxStore,
    uow: UnitOfWorkFactory,
    *,
    outbox_retention_s: int,
    idempotency_retention_s: int,
    batch_size: int,
) -> tuple[int, int]:
    """Delete outbox rows published longer ago than their retention, and expired keys."""
    now = datetime.now(UTC)
    events_before = now - timedelta(seconds=outbox_retention_s)
    keys_before = now - timedelta(seconds=idempotency_retention_s)

    def keys_batch() -> int:
        with uow() as tx:
            deleted = tx.idempotency.prune(keys_before, batch_size)
            tx.commit()
        return deleted

    with suppress_instrumentation():
        events = _in_batches(lambda: store.prune(events_before, batch_size), batch_size)
        keys = _in_batches(keys_batch, batch_size)
    if events or keys:
        log.info("pruned", outbox_rows=events, idempotency_keys=keys)
    return events, keys


def _in_batches(delete_batch: Callable[[], int], batch_size: int) -> int:
    """Run ``delete_batch`` until a batch comes back short; the rows deleted in all."""
    total = 0
    while True:
        deleted = delete_batch()
        total += deleted
        if deleted < batch_size:
            return total
