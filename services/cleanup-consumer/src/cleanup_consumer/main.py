"""``cleanup-consumer run``: the composition root and the process entrypoint."""

from __future__ import annotations

from contextlib import ExitStack

from redis import Redis
from ticketing_events.consumer import ConsumerRuntime
from ticketing_events.redis_layout import REDIS_OUTAGE_ERRORS
from ticketing_events.schemas import PaymentFailed, PaymentSucceeded
from ticketing_events.service import run_consumer, service_cli
from ticketing_events.settings import ConsumerSettings, KafkaSettings

from cleanup_consumer.adapters import redis_client, release_effects
from cleanup_consumer.config import Settings
from cleanup_consumer.handlers import RedisKeys, release_after_failure, release_after_success


def build_runtime(
    settings: Settings,
    client: Redis,
    *,
    kafka: KafkaSettings | None = None,
    consumer: ConsumerSettings | None = None,
) -> ConsumerRuntime:
    """The consumer of ``payment.success`` and ``payment.failed`` with their Redis effects."""
    effects = release_effects(client, settings.consumer_group, settings.redis_key_prefix)
    keys = RedisKeys(settings.redis_key_prefix)
    ttl = settings.seat_released_ttl_s
    return ConsumerRuntime(
        settings.consumer_group,
        {
            PaymentSucceeded: release_after_success(effects, keys, ttl),
            PaymentFailed: release_after_failure(effects, keys, ttl),
        },
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
    "cleanup-consumer",
    __doc__,
    {"run": ("consume payment results and clean up Redis", run)},
)

if __name__ == "__main__":
    main()
