"""Point balances: charge and read. Deductions happen inside payments."""

from __future__ import annotations

from payment_api.domain.errors import NotFound
from payment_api.service_layer.unit_of_work import UnitOfWork


def charge(tx: UnitOfWork, user_id: int, amount: int) -> int:
    """Add ``amount`` in one UPDATE (no read-then-write); the new balance."""
    balance = tx.users.charge(user_id, amount)
    if balance is None:
        raise NotFound("user", user_id)
    return balance


def balance(tx: UnitOfWork, user_id: int) -> int:
    points = tx.users.balance(user_id)
    if points is None:
        raise NotFound("user", user_id)
    return points
