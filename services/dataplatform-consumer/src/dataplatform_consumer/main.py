"""``dataplatform-consumer run``: the composition root and the process entrypoint."""

from __future__ import annotations

from contextlib import ExitStack

from ticketing_events.consumer import ConsumerRuntime
from ticketing_events.schemas import PaymentSucceeded
from ticketing_events.service import run_consumer, service_cli
from ticketing_events.settings import ConsumerSettings, KafkaSettings

from dataplatform_consumer.adapters import DataPlatformClient, PlatformUnavailable
from dataplatform_consumer.config import Settings
from dataplatform_consumer.handlers import Platform, send_payments


def build_runtime(
    settings: Settings,
    platform: Platform,
    *,
    kafka: KafkaSettings | None = None,
    consumer: ConsumerSettings | None = None,
) -> ConsumerRuntime:
    """The consumer of ``payment.success`` that sends each payment to the data platform."""
    return ConsumerRuntime(
        settings.consumer_group,
        {PaymentSucceeded: send_payments(platform)},
        kafka=kafka or KafkaSettings(),
        settings=consumer or ConsumerSettings(),
        outage_errors=(PlatformUnavailable,),
    )


def run() -> None:
    settings = Settings()

    def build(stack: ExitStack) -> ConsumerRuntime:
        platform = stack.enter_context(DataPlatformClient(settings))
        return build_runtime(settings, platform)

    run_consumer(settings, build)


main = service_cli(
    "dataplatform-consumer",
    __doc__,
    {"run": ("consume payment.success and send each payment to the data platform", run)},
)

if __name__ == "__main__":
    main()
