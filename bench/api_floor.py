"""The floor of a payment: the statements payment-api runs for one, by a plain loop.

No web framework, no ORM, no models: one Redis GET for the queue token, then one psycopg
transaction with the statements of ``POST /v1/payments`` with an ``Idempotency-Key`` (claim
the key, lock the reservation and its seat, debit the points, sell the seat, confirm the
reservation, insert the payment and its outbox row, store the answer). Its CPU per payment,
next to the API's in the same run, says what the API's layers cost (bench/api_bench.py).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from datetime import UTC, datetime

import psycopg
import redis

_LOCK = """
select r.user_id, r.status, r.hold_expires_at, r.amount, s.id, s.status, s.reservation_id,
       sc.concert_id, sc.id, sc.concert_date, sc.sale_opened_at, sc.seat_count
from reservations r
join seats s on s.id = r.seat_id
join schedules sc on sc.id = r.schedule_id
where r.id = %s
for update of r, s
"""
_CLAIM = """
insert into idempotency_keys (user_id, key, fingerprint, created_at) values (%s, %s, %s, %s)
on conflict do nothing returning key
"""
_DEDUCT = "update users set points = points - %s where id = %s and points >= %s returning points"
_SELL = "update seats set status = 'sold', held_until = null where id = %s and reservation_id = %s"
_CONFIRM = "update reservations set status = 'confirmed', confirmed_at = %s where id = %s"
_PAYMENT = """
insert into payments (reservation_id, user_id, amount, status, failure_reason,
                      points_deducted, created_at)
values (%s, %s, %s, 'succeeded', null, %s, %s) returning id
"""
_OUTBOX = """
insert into outbox (event_id, topic, key, event_type, schema_version, payload, created_at)
values (%s, 'payment.success', %s, 'payment.success', '1.0', %s, %s)
"""
_REMEMBER = """
update idempotency_keys set status_code = 201, response_body = %s where user_id = %s and key = %s
"""


def pay_plainly(
    database_url: str,
    schema: str,
    redis_url: str,
    key_prefix: str,
    payments: list[tuple[str, int]],
) -> float:
    """Pay each (queue token, reservation id) in turn; this process's CPU ms per payment."""
    conninfo = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    store = redis.Redis.from_url(redis_url)
    with psycopg.connect(conninfo, options=f"-c search_path={schema}") as conn:
        started = time.process_time()
        for token, reservation_id in payments:
            _pay(conn, store, key_prefix, token, reservation_id)
        used = time.process_time() - started
    store.close()
    return used / len(payments) * 1000


def _pay(
    conn: psycopg.Connection,
    store: redis.Redis,
    key_prefix: str,
    token: str,
    reservation_id: int,
) -> None:
    token_id = hashlib.sha256(token.encode()).hexdigest()
    active_user = store.get(f"{key_prefix}queue:active:{token_id}")
    if active_user is None:
        raise RuntimeError("queue token not active")
    user_id = int(active_user)
    now = datetime.now(UTC)
    key = uuid.uuid4().hex
    with conn.transaction():
        fingerprint = hashlib.sha256(f"POST\n/v1/payments\n{reservation_id}".encode()).hexdigest()
        if conn.execute(_CLAIM, (user_id, key, fingerprint, now)).fetchone() is None:
            raise RuntimeError("idempotency key taken")
        row = conn.execute(_LOCK, (reservation_id,)).fetchone()
        if row is None:
            raise RuntimeError(f"no reservation {reservation_id}")
        owner, status, until, amount, seat_id, seat_status, holder, *schedule = row
        held = status == "held" and seat_status == "held" and holder == reservation_id
        if owner != user_id or not held or until <= now:
            raise RuntimeError(f"reservation {reservation_id} is not payable")
        balance = conn.execute(_DEDUCT, (amount, user_id, amount)).fetchone()
        if balance is None:
            raise RuntimeError(f"user {user_id} lacks the points")
        conn.execute(_SELL, (seat_id, reservation_id))
        conn.execute(_CONFIRM, (now, reservation_id))
        (payment_id,) = conn.execute(
            _PAYMENT, (reservation_id, user_id, amount, amount, now)
        ).fetchone()
        concert_id, schedule_id, concert_date, sale_opened_at, seat_count = schedule
        event_id = str(uuid.uuid4())
        payload = {
            "reservation_id": reservation_id,
            "user_id": user_id,
            "concert_id": concert_id,
            "schedule_id": schedule_id,
            "concert_date": concert_date.isoformat(),
            "seat_id": seat_id,
            "queue_token_id": token_id,
            "payment_id": payment_id,
            "amount": amount,
            "paid_at": now.isoformat(),
            "schedule_seat_count": seat_count,
            "sale_opened_at": sale_opened_at.isoformat(),
        }
        envelope = {
            "event_id": event_id,
            "event_type": "payment.success",
            "schema_version": "1.0",
            "occurred_at": now.isoformat(),
            "producer": "payment-api",
            "key": str(seat_id),
            "payload": payload,
        }
        conn.execute(_OUTBOX, (event_id, str(seat_id), json.dumps(envelope), now))
        answer = {
            "payment_id": payment_id,
            "reservation_id": reservation_id,
            "seat_id": seat_id,
            "amount": amount,
            "status": "succeeded",
            "balance": balance[0],
            "paid_at": now.isoformat(),
        }
        conn.execute(_REMEMBER, (json.dumps(answer), user_id, key))
