"""``dataplatform-consumer run``: the service's resource and subscriber."""

from __future__ import annotations

from collections.abc import Iterator

from ticketing_events.app import ConsumerApp
from ticketing_events.consumer import BatchHandler
from ticketing_events.schemas import PaymentSucceeded

from dataplatform_consumer.adapters import DataPlatformClient, PlatformUnavailable
from dataplatform_consumer.config import Settings
from dataplatform_consumer.handlers import send_payments

app = ConsumerApp(
    "dataplatform-consumer",
    Settings,
    outage_errors=(PlatformUnavailable,),
    description=__doc__,
)


@app.resource
def platform(settings: Settings) -> Iterator[DataPlatformClient]:
    """The data platform's HTTP client (``DATAPLATFORM_*``)."""
    with DataPlatformClient(settings) as client:
        yield client


@app.subscriber(PaymentSucceeded)
def payments(platform: DataPlatformClient) -> BatchHandler:
    return send_payments(platform)


main = app.main
