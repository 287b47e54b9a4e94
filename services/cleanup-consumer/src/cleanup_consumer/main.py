"""``cleanup-consumer run``: the composition root and the process entrypoint."""

from __future__ import annotations

import argparse

from redis import Redis
from ticketing_events.consumer import ConsumerRuntime
from ticketing_events.logs import configure_logging
from ticketing_events.redis_layout import REDIS_OUTAGE_ERRORS
from ticketing_events.schemas import PaymentFailed, PaymentSucceeded
from ticketing_events.settings import ConsumerSettings, KafkaSettings
from ticketing_events.tracing import configure_tracing

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
    effects = release_effects(client, settings.consumer_group)
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


def run(settings: Settings) -> None:
    """Consume until SIGTERM/SIGINT: finish the batch, commit, leave the group."""
    configure_logging(settings.service_name, settings.log_level)
    configure_tracing(settings.service_name)
    client = redis_client(settings)
    try:
        build_runtime(settings, client).run(install_signal_handlers=True)
    finally:
        client.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cleanup-consumer", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="consume payment results and clean up Redis")
    args = parser.parse_args(argv)
    if args.command == "run":
        run(Settings())


if __name__ == "__main__":
    main()
