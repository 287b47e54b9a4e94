"""``seatlock-consumer run``: the composition root and the process entrypoint."""

from __future__ import annotations

from contextlib import ExitStack

from redis import Redis
from ticketing_events.consumer import ConsumerRuntime
from ticketing_events.redis_layout import REDIS_OUTAGE_ERRORS
from ticketing_events.schemas import ReservationCreated
from ticketing_events.service import run_consumer, service_cli
from ticketing_events.settings import ConsumerSettings, KafkaSettings

from seatlock_consumer.adapters import redis_client, seat_hold_effects
from seatlock_consumer.config import Settings
from seatlock_consumer.handlers import RedisKeys, hold_seats


def build_runtime(
    settings: Settings,
    client: Redis,
    *,
    kafka: KafkaSettings | None = None,
    consumer: ConsumerSettings | None = None,
) -> ConsumerRuntime:
    """The consumer of ``reservation.created`` with its Redis effect."""
    effects = seat_hold_effects(client, settings.consumer_group, settings.redis_key_prefix)
    return ConsumerRuntime(
        settings.consumer_group,
        {ReservationCreated: hold_seats(effects, RedisKeys(settings.redis_key_prefix))},
        kafka=kafka or KafkaSettings(),
        settings=consumer or ConsumerSettings(),
        outage_errors=REDIS_OUTAGE_ERRORS,
    )


def run() -> None:
    settings = Settings()

    def build(stack: ExitStack) -> ConsumerRuntime:
        client = stack.enter_context(redis_client(settings))
        return build_runtime(settings, client)

    run_consumer(settings, build)


main = service_cli(
    "seatlock-consumer",
    __doc__,
    {"run": ("consume reservation.created and hold seats in Redis", run)},
)

if __name__ == "__main__":
    main()
