"""The exact account of bench/chaos.py: every effect of every event, from the database,
Redis, the stand-in's records and the topics."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import redis
from dataplatform_stub.control import StubControl
from sqlalchemy import Engine, text
from ticketing_events.testing import end_offsets, read_from
from ticketing_events.topics import TOPIC_EVENTS

Offsets = dict[tuple[str, int], int]


# -- the account -------------------------------------------------------------------------


@dataclass
class Account:
    """Per effect: how many were expected, lost and doubled; and the counts of the rest."""

    effects: dict[str, dict[str, int]] = field(default_factory=dict)
    events_in: dict[str, int] = field(default_factory=dict)
    on_topics: dict[str, int] = field(default_factory=dict)
    republished: int = 0  # events on a topic more than once (the relay is at least once)
    redelivered: int = 0  # requests the stand-in dropped by their Idempotency-Key
    outbox_unpublished: int = 0
    stale_holds: int = 0
    dlq: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return sum(e["lost"] for e in self.effects.values()) + self.outbox_unpublished

    @property
    def doubled(self) -> int:
        return sum(e["doubled"] for e in self.effects.values())

    def effect(self, name: str, expected: int = 0) -> dict[str, int]:
        entry = self.effects.setdefault(name, {"expected": 0, "lost": 0, "doubled": 0})
        entry["expected"] += expected
        return entry

    def lose(self, name: str, what: str, n: int = 1) -> None:
        self.effects[name]["lost"] += n
        if len(self.examples) < 20:
            self.examples.append(f"lost {name}: {what}")

    def double(self, name: str, what: str, n: int = 1) -> None:
        self.effects[name]["doubled"] += n
        if len(self.examples) < 20:
            self.examples.append(f"doubled {name}: {what}")


@dataclass
class Sources:
    """Where the account reads from: direct connections, never the proxies."""

    engine: Engine
    redis: redis.Redis
    prefix: str
    stub: StubControl
    bootstrap: str
    starts: Offsets  # the event topics' offsets before the run
    dlq_starts: Offsets  # the run's dead-letter topics' offsets before the run
    initial_points: dict[int, int]


def account(src: Sources) -> Account:
    acc = Account()
    with src.engine.connect() as conn:
        outbox = conn.execute(
            text("select event_id, event_type, payload, published_at from outbox")
        ).all()
        payments = conn.execute(
            text(
                "select p.id as payment_id, p.status, p.user_id, p.amount,"
                " r.id as reservation_id, r.seat_id, r.schedule_id,"
                " r.status as reservation_status, r.queue_token_id,"
                " s.status as seat_status, s.reservation_id as seat_holder"
                " from payments p join reservations r on r.id = p.reservation_id"
                " join seats s on s.id = r.seat_id"
            )
        ).all()
        sold = dict(conn.execute(text("select schedule_id, sold from schedule_sales")).all())
        points = dict(conn.execute(text("select id, points from users")).all())
        live = conn.execute(
            text(
                "select id, seat_id from reservations where status = 'held'"
                " and hold_expires_at > :soon"
            ),
            {"soon": datetime.now(UTC)},
        ).all()
        reservations = dict(
            conn.execute(
                text(
                    "select id, case when status = 'held' and hold_expires_at > :now"
                    " then 'live' else status end from reservations"
                ),
                {"now": datetime.now(UTC)},
            ).all()
        )
        db_stale = conn.execute(
            text(
                "select count(*) from seats s join reservations r on r.id = s.reservation_id"
                " where s.status = 'held' and r.status <> 'held'"
            )
        ).scalar_one()

    # The outbox: every row published, and found on its topic.
    event_of: dict[int, str] = {}  # payment id -> event id
    acc.events_in = dict(Counter(row.event_type for row in outbox))
    acc.outbox_unpublished = sum(row.published_at is None for row in outbox)
    for row in outbox:
        body = json.loads(row.payload)["payload"]
        if "payment_id" in body:
            event_of[body["payment_id"]] = row.event_id
    seen = topic_event_ids(src.bootstrap, src.starts)
    acc.on_topics = dict.fromkeys(TOPIC_EVENTS, 0)
    for (topic, _), n in seen.items():
        acc.on_topics[topic] = acc.on_topics.get(topic, 0) + n
    counts: Counter[str] = Counter()
    for (_, event_id), n in seen.items():
        counts[event_id] += n
    acc.republished = sum(1 for n in counts.values() if n > 1)
    acc.effect("published", len(outbox))
    for row in outbox:
        if counts[row.event_id] == 0:
            acc.lose("published", f"{row.event_type} {row.event_id} on no topic")

    stub_counts = src.stub.keys()
    keys = _RedisView(src.redis, src.prefix)
    successes = [p for p in payments if p.status == "succeeded"]
    failures = [p for p in payments if p.status == "failed"]

    # ranking-consumer: schedule_sales counts each success once.
    expected = Counter(p.schedule_id for p in successes)
    acc.effect("ranking", len(successes))
    for schedule, n in expected.items():
        got = sold.get(schedule, 0)
        if got < n:
            acc.lose("ranking", f"schedule {schedule} sold {got} of {n}", n - got)
        elif got > n:
            acc.double("ranking", f"schedule {schedule} sold {got} for {n}", got - n)
    for schedule in set(sold) - set(expected):
        acc.double("ranking", f"schedule {schedule} sold {sold[schedule]} for 0", sold[schedule])

    # dataplatform-consumer: the stand-in recorded each success once, under its event id.
    # A redelivery (a consumer killed between the POST and its commit) comes with the same
    # Idempotency-Key and the platform drops it: counted apart, it is no second effect.
    acc.effect("data platform", len(successes))
    success_ids = {event_of.get(p.payment_id, "") for p in successes}
    for p in successes:
        if stub_counts.get(event_of.get(p.payment_id, ""), 0) == 0:
            acc.lose("data platform", f"payment {p.payment_id} never received")
    for key in set(stub_counts) - success_ids:
        acc.double("data platform", f"recorded under {key}, no successful payment's event id")
    acc.redelivered = sum(n - 1 for key, n in stub_counts.items() if key in success_ids)

    # cleanup-consumer: hold released and tombstone written; a payer's token expired.
    holds = keys.get_all([keys.hold(p.seat_id) for p in payments])
    tombstones = keys.get_all([keys.released(p.reservation_id) for p in payments])
    tokens = keys.exists_all([keys.token(p.queue_token_id) for p in successes])
    acc.effect("cleanup", len(payments))
    for p, hold, tombstone in zip(payments, holds, tombstones, strict=True):
        problems = []
        if hold == str(p.reservation_id):
            problems.append("hold kept")
        if tombstone is None:
            problems.append("no tombstone")
        if problems:
            what = f"{p.status} reservation {p.reservation_id}: {', '.join(problems)}"
            acc.lose("cleanup", what)
    for p, active in zip(successes, tokens, strict=True):
        if active:
            acc.lose("cleanup", f"reservation {p.reservation_id} paid, its token still active")

    # compensator: each failed payment's reservation cancelled and its seat no longer its.
    acc.effect("compensation", len(failures))
    for p in failures:
        if p.reservation_status != "cancelled":
            acc.lose("compensation", f"reservation {p.reservation_id} {p.reservation_status}")
        elif p.seat_status == "held" and p.seat_holder == p.reservation_id:
            acc.lose("compensation", f"reservation {p.reservation_id} cancelled, seat held")

    # points: every user's balance is what they had less what they paid.
    paid = Counter[int]()
    for p in successes:
        paid[p.user_id] += p.amount
    acc.effect("points", len(src.initial_points))
    for user, initial in src.initial_points.items():
        balance = points[user]
        if balance < initial - paid[user]:
            acc.lose("points", f"user {user} has {balance}, expected {initial - paid[user]}")
        elif balance > initial - paid[user]:
            acc.double("points", f"user {user} has {balance}, expected {initial - paid[user]}")

    # seatlock-consumer: every live reservation holds its seat in Redis.
    acc.effect("seat hold", len(live))
    current = keys.get_all([keys.hold(seat) for _, seat in live])
    for (reservation, seat), holder in zip(live, current, strict=True):
        if holder != str(reservation):
            acc.lose("seat hold", f"live reservation {reservation}: seat {seat} held by {holder}")

    # No seat held by a lapsed, paid or cancelled reservation (Redis and the database).
    redis_stale = [
        (key, holder) for key, holder in keys.all_holds() if reservations.get(int(holder)) != "live"
    ]
    acc.stale_holds = len(redis_stale) + db_stale
    acc.examples += [f"stale hold {k} -> {reservations.get(int(h))}" for k, h in redis_stale[:5]]

    dlq_ends = end_offsets(src.bootstrap, sorted({t for t, _ in src.dlq_starts}))
    acc.dlq = sum(end - src.dlq_starts[tp] for tp, end in dlq_ends.items())
    return acc


def topic_event_ids(bootstrap: str, starts: Offsets) -> Counter[tuple[str, str]]:
    """(topic, event id) of every message after ``starts``, with how often it is there."""
    ends = end_offsets(bootstrap, sorted({t for t, _ in starts}))
    total = sum(ends[tp] - start for tp, start in starts.items())
    messages = read_from(bootstrap, starts, count=total, timeout=120)
    if len(messages) != total:
        raise RuntimeError(f"read {len(messages)} of {total} messages")
    found: Counter[tuple[str, str]] = Counter()
    for m in messages:
        headers = dict(m.headers() or ())
        found[(str(m.topic()), headers.get("event_id", b"").decode())] += 1
    return found


class _RedisView:
    """The run's keys (ticketing_dev.stack's prefix), read in pipelined round trips."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        from ticketing_events.redis_layout import RedisKeys

        self.client = client
        self.keys = RedisKeys(prefix)

    def hold(self, seat: int) -> str:
        return self.keys.seat_hold(seat)

    def released(self, reservation: int) -> str:
        return self.keys.seat_released(reservation)

    def token(self, token_id: str) -> str:
        return self.keys.queue_active(token_id)

    def get_all(self, keys: Sequence[str]) -> list[str | None]:
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.get(key)
        return [v.decode() if v is not None else None for v in pipe.execute()]

    def exists_all(self, keys: Sequence[str]) -> list[bool]:
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.exists(key)
        return [bool(v) for v in pipe.execute()]

    def all_holds(self) -> list[tuple[str, str]]:
        names = [k.decode() for k in self.client.scan_iter(match=self.hold(0)[:-1] + "*")]
        return [(k, v) for k, v in zip(names, self.get_all(names), strict=True) if v is not None]
