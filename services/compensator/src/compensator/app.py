"""``compensator run``: the service's settings, resources and subscriber."""

from __future__ import annotations

from sqlalchemy import Engine
from ticketing_events.app import ConsumerApp, engine
from ticketing_events.consumer import BatchHandler
from ticketing_events.db import DB_OUTAGE_ERRORS, DatabaseServiceSettings
from ticketing_events.idempotency import ProcessedRetention, ProcessedRetentionSettings
from ticketing_events.schemas import PaymentFailed

from compensator.adapters import GROUP, SqlCompensations, processed_events
from compensator.handlers import compensate


class Settings(DatabaseServiceSettings, ProcessedRetentionSettings):
    """Every field is documented in README."""


app = ConsumerApp(
    "compensator",
    Settings,
    resources=[engine],
    outage_errors=DB_OUTAGE_ERRORS,
    description=__doc__,
)


@app.subscriber(PaymentFailed)
def compensations(settings: Settings, engine: Engine) -> BatchHandler:
    """The compensations, pruning old processed-event rows between batches."""
    store = SqlCompensations(engine, settings.consumer_group)
    retention = ProcessedRetention(
        engine, processed_events, {GROUP, settings.consumer_group}, settings
    )
    return retention.after(compensate(store))


main = app.main
