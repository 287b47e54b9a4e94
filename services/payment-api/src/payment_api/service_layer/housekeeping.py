"""Periodic pruning: published outbox rows and old idempotency keys."""

from __future__ import annotations

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
) -> tuple[int, int]:
    """Delete outbox rows published longer ago than their retention, and expired keys."""
    now = datetime.now(UTC)
    with suppress_instrumentation():
        events = store.prune(now - timedelta(seconds=outbox_retention_s))
        with uow() as tx:
            keys = tx.idempotency.prune(now - timedelta(seconds=idempotency_retention_s))
            tx.commit()
    if events or keys:
        log.info("pruned", outbox_rows=events, idempotency_keys=keys)
    return events, keys
