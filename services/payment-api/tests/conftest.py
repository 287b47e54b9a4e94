"""Fixtures of the payment-api suite: a private PostgreSQL schema migrated once per session,
a Redis key prefix per session, a live uvicorn server, and thin HTTP/Kafka helpers.

Data is created per test with fresh ids (seed helpers), so tests share one database.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis
import sqlalchemy
import uvicorn
from confluent_kafka import Consumer, Message, TopicPartition
from payment_api.adapters.database import create_db_engine
from payment_api.api.app import create_app
from payment_api.auth import mint_dev_token
from payment_api.config import Settings
from payment_api.migrations import upgrade
from payment_api.seed import add_schedule, add_users
from ticketing_events.producer import DeliveryError, OutgoingMessage
from ticketing_events.testing import end_offsets
from ticketing_events.topics import TOPIC_EVENTS

TOPICS = list(TOPIC_EVENTS)


@pytest.fixture(scope="session")
def pg_schema(database_url: str) -> Iterator[str]:
    name = f"payment_api_test_{uuid.uuid4().hex[:10]}"
    yield name
    engine = sqlalchemy.create_engine(database_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    engine.dispose()


@pytest.fixture(scope="session")
def settings(
    database_url: str, redis_url: str, kafka_bootstrap: str, pg_schema: str
) -> Iterator[Settings]:
    """Settings for this session's schema and key prefix, with the schema migrated."""
    settings = Settings(
        database_url=database_url,
        database_schema=pg_schema,
        database_pool_size=20,
        database_max_overflow=40,
        redis_url=redis_url,
        redis_key_prefix=f"{pg_schema}:",
        kafka_bootstrap_servers=kafka_bootstrap,
        queue_activate_interval_s=0.05,
        queue_activate_batch=1000,
        outbox_sweep_interval_s=0.5,
        outbox_publish_timeout_s=5,
        log_level="WARNING",
        # the per-user limits have tests of their own (test_user_limits.py); the races here
        # play one user many times over
        reservation_limit_per_user=0,
        rate_limit_writes_per_user=0,
    )
    upgrade(settings)
    yield settings
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(f"{settings.redis_key_prefix}*"):
        client.delete(key)
    client.close()


@pytest.fixture(scope="session")
def db(settings: Settings) -> Iterator[sqlalchemy.Engine]:
    engine = create_db_engine(settings)
    yield engine
    engine.dispose()


class LiveServer:
    """uvicorn serving ``app`` on a free port in a thread of the test process."""

    def __init__(self, app: Any) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def __enter__(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *_: object) -> None:
        self._server.should_exit = True
        self._thread.join(30)
        self._sock.close()


@pytest.fixture(scope="session")
def live(settings: Settings, _tracer_provider: None) -> Iterator[LiveServer]:
    with LiveServer(create_app(settings)) as server:
        yield server


@dataclass
class World:
    """Creates catalogue and users with fresh ids, and reads back state for assertions."""

    db: sqlalchemy.Engine

    def schedule(
        self, seats: int = 5, price: int = 1000, sale_opened_at: datetime | None = None
    ) -> tuple[int, int, list[int]]:
        with self.db.begin() as conn:
            return add_schedule(
                conn,
                seats_count=seats,
                price=price,
                concert_date=date(2026, 12, 24),
                sale_opened_at=sale_opened_at or datetime.now(UTC) - timedelta(minutes=1),
                title=f"Concert {uuid.uuid4().hex[:6]}",
            )

    def users(self, count: int = 1, points: int = 0) -> list[int]:
        with self.db.begin() as conn:
            return add_users(conn, count, points)

    def user(self, points: int = 0) -> int:
        return self.users(1, points)[0]

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.db.connect() as conn:
            return conn.execute(sqlalchemy.text(sql), params).scalar()

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.db.connect() as conn:
            return list(conn.execute(sqlalchemy.text(sql), params))

    def execute(self, sql: str, **params: Any) -> None:
        with self.db.begin() as conn:
            conn.execute(sqlalchemy.text(sql), params)

    def counts(self) -> dict[str, int]:
        """Row counts of every table a request may write."""
        tables = ("reservations", "payments", "outbox", "idempotency_keys")
        return {t: self.scalar(f"select count(*) from {t}") for t in tables}

    def wait_published(self, event_ids: list[str], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            left = self.scalar(
                "select count(*) from outbox where event_id = any(:ids) and published_at is null",
                ids=event_ids,
            )
            if left == 0:
                return
            time.sleep(0.05)
        raise AssertionError(f"outbox rows not published within {timeout}s")

    def event_ids(self, reservation_id: int) -> list[str]:
        """Ids of the events about one reservation, oldest first."""
        rows = self.rows(
            "select event_id from outbox where payload::jsonb -> 'payload' ->> 'reservation_id'"
            " = :rid order by id",
            rid=str(reservation_id),
        )
        return [r.event_id for r in rows]


@pytest.fixture
def world(db: sqlalchemy.Engine) -> World:
    return World(db)


class Api:
    """Thin client helpers over the live server, authenticated with development JWTs."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=30)
        self.owners: dict[str, int] = {}  # queue token -> the user it was issued to
        self.token_ids: dict[str, str] = {}

    @staticmethod
    def user(user_id: int) -> dict[str, str]:
        """The ``Authorization`` header of ``user_id`` (a development JWT)."""
        return {"Authorization": f"Bearer {mint_dev_token(user_id)}"}

    def auth(self, token: str, user_id: int | None = None) -> dict[str, str]:
        """Headers acting as ``user_id`` (default: the token's user) with the queue token."""
        who = self.owners.get(token, 1) if user_id is None else user_id
        return {**self.user(who), "X-Queue-Token": token}

    def token(self, user_id: int) -> str:
        response = self.http.post("/v1/queue/tokens", headers=self.user(user_id))
        assert response.status_code == 201, response.text
        token = str(response.json()["token"])
        self.owners[token] = user_id
        self.token_ids[token] = str(response.json()["token_id"])
        return token

    def state(self, token: str) -> httpx.Response:
        return self.http.get(
            f"/v1/queue/tokens/{self.token_ids[token]}", headers=self.user(self.owners[token])
        )

    def active_token(self, user_id: int, timeout: float = 30) -> str:
        token = self.token(user_id)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.state(token).json()["status"] == "active":
                return token
            time.sleep(0.02)
        raise AssertionError("token never became active")

    def reserve(
        self, token: str, seat_id: int, as_user: int | None = None, **headers: str
    ) -> httpx.Response:
        return self.http.post(
            "/v1/reservations",
            json={"seat_id": seat_id},
            headers=self._with(token, as_user, headers),
        )

    def pay(
        self, token: str, reservation_id: int, as_user: int | None = None, **headers: str
    ) -> httpx.Response:
        return self.http.post(
            "/v1/payments",
            json={"reservation_id": reservation_id},
            headers=self._with(token, as_user, headers),
        )

    def charge(self, user_id: int, amount: Any, as_user: int | None = None, **headers: str):
        extra = {k.replace("_", "-"): v for k, v in headers.items()}
        return self.http.post(
            f"/v1/users/{user_id}/points/charge",
            json={"amount": amount},
            headers={**self.user(user_id if as_user is None else as_user), **extra},
        )

    def balance(self, user_id: int) -> int:
        response = self.http.get(f"/v1/users/{user_id}/points", headers=self.user(user_id))
        return int(response.json()["balance"])

    def _with(self, token: str, as_user: int | None, headers: dict[str, str]) -> dict[str, str]:
        extra = {k.replace("_", "-"): v for k, v in headers.items()}
        return {**self.auth(token, as_user), **extra}


@pytest.fixture
def api(live: LiveServer) -> Iterator[Api]:
    client = Api(live.url)
    yield client
    client.http.close()


class Kafka:
    """Reads what our relay published, between two offset snapshots (no consumer group)."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap

    def offsets(self) -> dict[tuple[str, int], int]:
        return end_offsets(self.bootstrap, TOPICS)

    def read(self, start: dict[tuple[str, int], int], event_ids: list[str]) -> list[Message]:
        """Every message carrying one of ``event_ids`` written after ``start``, in log order
        per partition. Call once the outbox rows are marked published (so they are acked)."""
        end = self.offsets()
        wanted = set(event_ids)
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"payment-api-tests-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
            }
        )
        todo = {tp: off for tp, off in end.items() if off > start.get(tp, 0)}
        consumer.assign([TopicPartition(t, p, start.get((t, p), 0)) for (t, p) in todo])
        found: list[Message] = []
        deadline = time.monotonic() + 30
        try:
            while todo and time.monotonic() < deadline:
                for m in consumer.consume(1000, 0.5):
                    if m.error() is not None:
                        continue
                    tp = (m.topic(), m.partition())
                    if dict(m.headers() or []).get("event_id", b"").decode() in wanted:
                        found.append(m)
                    if tp in todo and m.offset() + 1 >= todo[tp]:
                        del todo[tp]
        finally:
            consumer.close()
        return found


@pytest.fixture(scope="session")
def kafka(kafka_bootstrap: str) -> Kafka:
    return Kafka(kafka_bootstrap)


@pytest.fixture
def serve(_tracer_provider: None) -> Any:
    """Start another live server for given settings: ``with serve(settings) as server``."""

    def start(settings: Settings, services: Any = None, instrument: bool = True) -> LiveServer:
        return LiveServer(create_app(settings, services=services, instrument=instrument))

    return start


@pytest.fixture
def client_for() -> Any:
    return Api


@pytest.fixture
def world_on() -> Any:
    return World


@pytest.fixture
def private_settings(settings: Settings, request: pytest.FixtureRequest) -> Iterator[Settings]:
    """Settings on a schema (and key prefix) of this test alone, migrated, dropped after:
    for tests that must not share rows with the session's live server and its relay."""
    schema = f"{settings.database_schema}_{request.node.name[:20].lower()}"
    schema = "".join(c if c.isalnum() else "_" for c in schema)
    own = settings.model_copy(update={"database_schema": schema, "redis_key_prefix": f"{schema}:"})
    upgrade(own)
    yield own
    engine = create_db_engine(settings)
    with engine.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    engine.dispose()


class RecordingPublisher:
    """Acknowledges everything except the event ids it is told to fail (or all when down)."""

    def __init__(self) -> None:
        self.batches: list[list[OutgoingMessage]] = []
        self.failing: set[str] = set()
        self.down = False

    def publish(self, messages: Sequence[OutgoingMessage], timeout: float = 30.0) -> None:
        if self.down:
            raise DeliveryError([("*", "broker down")])
        self.batches.append([m for m in messages if m.event_id not in self.failing])
        failures = [(m.event_id, "rejected") for m in messages if m.event_id in self.failing]
        if failures:
            raise DeliveryError(failures)

    @property
    def sent(self) -> list[str]:
        return [m.event_id for batch in self.batches for m in batch]


@pytest.fixture
def publisher() -> RecordingPublisher:
    """A fake of the producer port (``publish`` returning once all are acknowledged)."""
    return RecordingPublisher()


PROBLEM = "application/problem+json"


@pytest.fixture
def assert_problem() -> Callable[[Any, int, str], dict[str, Any]]:
    """Check an answer is the problem+json of ``status`` and ``slug``; returns its body."""

    def check(response: Any, status: int, slug: str) -> dict[str, Any]:
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == PROBLEM
        body: dict[str, Any] = response.json()
        assert body["type"] == f"urn:ticketing:problem:{slug}"
        assert body["status"] == status and body["title"] and body["detail"]
        return body

    return check
