"""``compensator run``: the composition root and the process entrypoint."""

from __future__ import annotations

from contextlib import ExitStack

from sqlalchemy import Engine
from ticketing_events.consumer import ConsumerRuntime
from ticketing_events.db import DB_OUTAGE_ERRORS, engine_for
from ticketing_events.idempotency import ProcessedRetention
from ticketing_events.schemas import PaymentFailed
from ticketing_events.service import run_consumer, service_cli
from ticketing_events.settings import ConsumerSettings, KafkaSettings

from compensator.adapters import SqlCompensations, processed_events
from compensator.config import GROUP, Settings
from compensator.handlers import compensate


def build_runtime(
    settings: Settings,
    engine: Engine,
    *,
    kafka: KafkaSettings | None = None,
    consumer: ConsumerSettings | None = None,
) -> ConsumerRuntime:
    """The consumer of ``payment.failed`` with its database effects, pruning its old
    processed-event rows between batches."""
    store = SqlCompensations(engine, settings.consumer_group)
    groups = {GROUP, settings.consumer_group}
    retention = ProcessedRetention(engine, processed_events, groups, settings)
    return ConsumerRuntime(
        settings.consumer_group,
        {PaymentFailed: retention.after(compensate(store))},
        kafka=kafka or KafkaSettings(),
        settings=consumer or ConsumerSettings(),
        outage_errors=DB_OUTAGE_ERRORS,
    )


def run() -> None:
    settings = Settings()

    def build(stack: ExitStack) -> ConsumerRuntime:
        engine = engine_for(settings)
        stack.callback(engine.dispose)
        return build_runtime(settings, engine)

    run_consumer(settings, build)


main = service_cli(
    "compensator",
    __doc__,
    {"run": ("consume payment.failed and compensate in the database", run)},
)

if __name__ == "__main__":
    main()
