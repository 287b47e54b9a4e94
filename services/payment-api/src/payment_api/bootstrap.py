"""Composition root: build the engine, Redis, queue, relay and activator from settings.

Nothing here runs at import time; ``bootstrap()`` builds, ``Services.start()`` starts the
background loops and ``Services.close()`` stops them and releases connections.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Protocol

import structlog
from redis import Redis
from sqlalchemy import Engine, text
from ticketing_events.producer import EventProducer

from payment_api.adapters.database import create_db_engine
from payment_api.adapters.outbox import OutboxStore
from payment_api.adapters.redis_queue import RedisQueue
from payment_api.config import Settings
from payment_api.metrics import outbox_gauges
from payment_api.migrations import SchemaVersion
from payment_api.service_layer import housekeeping
from payment_api.service_layer.activator import QueueActivator
from payment_api.service_layer.background import BackgroundLoop
from payment_api.service_layer.relay import OutboxRelay, Publisher
from payment_api.service_layer.unit_of_work import UnitOfWork

if TYPE_CHECKING:
    from payment_api.adapters.inline_post_processing import InlinePostProcessing

log = structlog.get_logger(__name__)


def instrument_libraries() -> None:
    """OpenTelemetry for SQLAlchemy and Redis (process-wide; repeated calls are no-ops).

    Call before engines and clients are built: the SQLAlchemy one wraps ``create_engine``.
    """
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    # Its declared range stops below SQLAlchemy 2.1, which the workspace uses; the event
    # hooks it relies on are unchanged, so skip that check (tests assert the DB spans).
    SQLAlchemyInstrumentor().instrument(skip_dep_check=True)
    RedisInstrumentor().instrument()


def build_producer(settings: Settings, bootstrap_servers: str | None = None) -> EventProducer:
    """A producer whose messages are acked or failed by the time ``publish`` returns."""
    return EventProducer(
        bootstrap_servers or settings.kafka_bootstrap_servers,
        client_id=settings.service_name,
        **{"message.timeout.ms": int(settings.outbox_publish_timeout_s * 1000)},
    )


def build_relay(settings: Settings, engine: Engine, publisher: Publisher) -> OutboxRelay:
    return OutboxRelay(
        OutboxStore(engine),
        publisher,
        batch_size=settings.outbox_batch_size,
        sweep_interval_s=settings.outbox_sweep_interval_s,
        publish_timeout_s=settings.outbox_publish_timeout_s,
        coalesce_s=settings.outbox_coalesce_ms / 1000,
    )


class Component(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


@dataclass
class Services:
    settings: Settings
    engine: Engine
    redis: Redis
    queue: RedisQueue
    relay: OutboxRelay | None
    activator: QueueActivator | None
    # POST_PROCESSING=sync only: the post-payment steps the payment request runs itself.
    post_processing: InlinePostProcessing | None = None
    schema_version: SchemaVersion = field(init=False)
    components: list[Component] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.schema_version = SchemaVersion(self.settings)

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.engine, after_commit=self.relay.notify if self.relay else _nothing)

    def start(self) -> None:
        outbox_gauges.store = OutboxStore(self.engine)
        for component in self.components:
            component.start()

    def close(self) -> None:
        outbox_gauges.store = None
        for component in reversed(self.components):
            component.stop()
        if self.post_processing is not None:
            self.post_processing.close()
        self.redis.close()
        self.engine.dispose()

    def ready(self) -> dict[str, str | None]:
        """Per check, why it is not ready (None: ready): the database answers, its schema is
        at this code's migration head, Redis answers."""
        checks: dict[str, str | None] = {
            "database": "does not answer",
            "migrations": "not checked: the database does not answer",
            "redis": "does not answer",
        }
        try:
            with self.engine.connect() as conn:
                conn.execute(text("select 1"))
                checks["database"] = None
                behind = self.schema_version.behind(conn)
                checks["migrations"] = behind and f"{behind}: run `payment-api migrate`"
        except Exception as exc:
            log.warning("database not ready", error=str(exc)[:200])
        else:
            if behind:
                log.warning("database schema behind the code", reason=behind)
        try:
            if self.queue.ping():
                checks["redis"] = None
        except Exception as exc:
            log.warning("redis not ready", error=str(exc)[:200])
        return checks


def _nothing() -> None:
    return None


def bootstrap(
    settings: Settings, *, publisher: Publisher | None = None, instrument: bool = True
) -> Services:
    """Build the services; ``publisher`` replaces the Kafka producer (another broker, tests)."""
    if instrument:
        instrument_libraries()
    engine = create_db_engine(settings)
    client = Redis.from_url(settings.redis_url, socket_timeout=5, health_check_interval=30)
    queue = RedisQueue(
        client,
        prefix=settings.redis_key_prefix,
        waiting_ttl_s=settings.queue_waiting_ttl_s,
        active_ttl_s=settings.queue_active_ttl_s,
    )
    relay = None
    if settings.outbox_relay_enabled:
        relay = build_relay(settings, engine, publisher or build_producer(settings))
    activator = None
    if settings.queue_activator_enabled:
        activator = QueueActivator(
            queue,
            batch_size=settings.queue_activate_batch,
            interval_s=settings.queue_activate_interval_s,
            leader_ttl_s=settings.queue_leader_ttl_s,
        )
    services = Services(settings, engine, client, queue, relay, activator)
    if settings.post_processing == "sync":
        from payment_api.adapters.inline_post_processing import build_inline_post_processing

        services.post_processing = build_inline_post_processing(
            engine, client, settings.redis_key_prefix
        )
    housekeeper = BackgroundLoop(
        "housekeeping",
        partial(
            housekeeping.prune,
            OutboxStore(engine),
            services.uow,
            outbox_retention_s=settings.outbox_retention_s,
            idempotency_retention_s=settings.idempotency_retention_s,
            batch_size=settings.prune_batch_size,
        ),
        settings.outbox_prune_interval_s,
    )
    services.components = [c for c in (relay, activator, housekeeper) if c is not None]
    return services
