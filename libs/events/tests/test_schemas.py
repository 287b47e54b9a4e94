import json

import pytest
from pydantic import ValidationError
from ticketing_events.consumer import backoff_delay
from ticketing_events.schemas import EVENT_TYPES, PaymentSucceeded
from ticketing_events.testing import payment_failed, payment_succeeded, reservation_created
from ticketing_events.topics import (
    CONSUMER_GROUPS,
    TOPIC_EVENTS,
    all_topics,
    dlq_topic,
    redrive_topic,
)


@pytest.mark.parametrize("make", [payment_succeeded, payment_failed, reservation_created])
def test_event_round_trips_through_json(make):
    event = make(3)
    decoded = type(event).model_validate_json(event.model_dump_json())
    assert decoded == event
    assert decoded.event_type == type(event).TYPE
    assert decoded.key == str(event.payload.seat_id)


def test_event_ids_are_unique_and_time_ordered():
    ids = [payment_succeeded(1).event_id for _ in range(200)]
    assert len(set(ids)) == 200
    assert ids == sorted(ids)  # UUIDv7: lexical order is creation order


def test_newer_minor_version_with_extra_fields_still_decodes():
    doc = json.loads(payment_succeeded().model_dump_json())
    doc["schema_version"] = "1.7"
    doc["payload"]["loyalty_tier"] = "gold"
    event = PaymentSucceeded.model_validate(doc)
    assert event.schema_version == "1.7"


def test_missing_or_wrong_fields_are_rejected():
    doc = json.loads(payment_succeeded().model_dump_json())
    del doc["payload"]["seat_id"]
    with pytest.raises(ValidationError, match="seat_id"):
        PaymentSucceeded.model_validate(doc)
    doc = json.loads(payment_succeeded().model_dump_json())
    doc["event_type"] = "payment.failed"
    with pytest.raises(ValidationError, match="event_type"):
        PaymentSucceeded.model_validate(doc)


def test_registry_matches_the_design():
    assert (
        set(TOPIC_EVENTS)
        == set(EVENT_TYPES)
        == {
            "payment.success",
            "payment.failed",
            "reservation.created",
        }
    )
    assert {g: c.topics for g, c in CONSUMER_GROUPS.items()} == {
        "ranking-update-group": ("payment.success",),
        "data-platform-group": ("payment.success",),
        "post-payment-cleanup-group": ("payment.success", "payment.failed"),
        "payment-compensator-group": ("payment.failed",),
        "reservation-created-group": ("reservation.created",),
    }
    assert dlq_topic("payment.failed", "payment-compensator-group") in all_topics()
    assert redrive_topic("payment.failed", "payment-compensator-group") in all_topics()
    assert len(all_topics()) == 3 + 6 + 6


def test_backoff_grows_exponentially_with_jitter_and_is_capped():
    for attempt, cap in [(1, 0.1), (2, 0.2), (3, 0.4), (10, 5.0)]:
        delays = [backoff_delay(attempt, 0.1, 5.0) for _ in range(200)]
        assert all(cap / 2 <= d <= cap for d in delays)
        assert len(set(delays)) > 1
