"""Run a use case once per Idempotency-Key: the key, the business change and the answer
commit together, and a retry (even a concurrent one) gets the first answer back."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from payment_api.domain.errors import IdempotencyKeyReused
from payment_api.service_layer.unit_of_work import UnitOfWork, UnitOfWorkFactory


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer as stored: status and JSON body text."""

    status_code: int
    body: str


@dataclass(frozen=True, slots=True)
class IdempotencyRequest:
    user_id: int
    key: str
    fingerprint: str


def fingerprint(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def execute(
    uow: UnitOfWorkFactory,
    work: Callable[[UnitOfWork], Answer],
    idempotency: IdempotencyRequest | None = None,
) -> Answer:
    """Run ``work`` in one transaction and commit; errors it raises roll everything back."""
    with uow() as tx:
        if idempotency is not None:
            first = _claim_or_replay(tx, idempotency)
            if first is not None:
                return first
        answer = work(tx)
        if idempotency is not None:
            tx.idempotency.remember(
                idempotency.user_id, idempotency.key, answer.status_code, answer.body
            )
        tx.commit()
        return answer


def _claim_or_replay(tx: UnitOfWork, request: IdempotencyRequest) -> Answer | None:
    if tx.idempotency.claim(request.user_id, request.key, request.fingerprint, datetime.now(UTC)):
        return None
    stored = tx.idempotency.answer(request.user_id, request.key)
    if stored is None or stored.fingerprint != request.fingerprint:
        raise IdempotencyKeyReused(request.key)
    return Answer(stored.status_code, stored.body)
