"""The same statements on SQLite, the embedded local default."""

from __future__ import annotations

import sqlalchemy
from compensator.adapters import SqlCompensations
from compensator.handlers import compensation
from ticketing_events.schemas import FailureReason, PaymentFailed
from ticketing_events.testing import payment_failed


def test_a_batch_compensates_once_on_sqlite(sqlite_engine, world):
    own, victim, intruder = world(3, points=10, status="held", on=sqlite_engine)

    def failed(held, reason, **ids):
        payload = payment_failed(1, reason).payload.model_copy(
            update={**held.ids, "points_deducted": 5, **ids}
        )
        return compensation(PaymentFailed.new(payload, producer="tests"))

    items = [
        failed(own, FailureReason.HOLD_EXPIRED),
        failed(victim, FailureReason.NOT_OWNER, user_id=intruder.user_id),
    ]
    store = SqlCompensations(sqlite_engine, "g")
    assert store.apply([*items, items[0]]) == 2, "an event twice in a batch applies once"
    assert store.apply(items) == 0
    with sqlite_engine.connect() as conn:
        rows = conn.execute(
            sqlalchemy.text(
                "select r.id, r.status, s.status, u.points from reservations r"
                " join seats s on s.id = r.seat_id join users u on u.id = r.user_id order by r.id"
            )
        ).all()
    assert [tuple(r)[1:] for r in rows] == [
        ("cancelled", "available", 15),
        ("held", "held", 10),
        ("held", "held", 15),
    ], "the intruder (last) gets its points back; the owner's reservation is left alone"
