"""Shared event contract and Kafka runtime of the ticketing services."""

from ticketing_events.schemas import (
    Envelope,
    FailureReason,
    PaymentFailed,
    PaymentFailedPayload,
    PaymentSucceeded,
    PaymentSucceededPayload,
    ReservationCreated,
    ReservationCreatedPayload,
)

__all__ = [
    "Envelope",
    "FailureReason",
    "PaymentFailed",
    "PaymentFailedPayload",
    "PaymentSucceeded",
    "PaymentSucceededPayload",
    "ReservationCreated",
    "ReservationCreatedPayload",
]
