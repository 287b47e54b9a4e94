"""One database transaction with the repositories bound to it."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Self

from sqlalchemy import Connection, Engine, RootTransaction

from payment_api.adapters.outbox import OutboxWriter
from payment_api.adapters.repositories import (
    CatalogueQueries,
    IdempotencyRepository,
    PaymentRepository,
    ReservationRepository,
    SeatRepository,
    UserRepository,
)


class UnitOfWork:
    """``with uow: ...; uow.commit()``; anything not committed is rolled back on exit.

    ``after_commit`` runs when a commit wrote outbox rows (it wakes the relay).
    """

    def __init__(self, engine: Engine, after_commit: Callable[[], None] = lambda: None) -> None:
        self._engine = engine
        self._after_commit = after_commit

    def __enter__(self) -> Self:
        self._conn: Connection = self._engine.connect()
        self._tx: RootTransaction = self._conn.begin()
        self.users = UserRepository(self._conn)
        self.seats = SeatRepository(self._conn)
        self.reservations = ReservationRepository(self._conn)
        self.payments = PaymentRepository(self._conn)
        self.idempotency = IdempotencyRepository(self._conn)
        self.catalogue = CatalogueQueries(self._conn)
        self.outbox = OutboxWriter(self._conn)
        return self

    def commit(self) -> None:
        self._tx.commit()
        if self.outbox.written:
            self._after_commit()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._tx.is_active:
                self._tx.rollback()
        finally:
            self._conn.close()


UnitOfWorkFactory = Callable[[], UnitOfWork]
