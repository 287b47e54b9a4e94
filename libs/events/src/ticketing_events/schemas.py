"""Event schemas: one envelope, three payloads.

Versioning rule: ``schema_version`` is ``"MAJOR.MINOR"``. Within a major version changes are
additive only (new optional fields); consumers ignore fields they do not know. A consumer
rejects an unknown major version to its dead-letter topic (see ``SUPPORTED_MAJOR``).

Partition key rule: every event is keyed by its **seat id**. The seat is the contended
resource, so all events of one seat stay ordered within a topic (hold -> pay/fail -> hold by
the next fan), while the seats of one popular concert hash over every partition, so a rush on
one schedule still uses them all. The reservation id would keep that order only per
reservation, and a seat sees several reservations over its life.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum
from typing import ClassVar, Literal, Self

import uuid_utils
from pydantic import BaseModel, ConfigDict, Field

SUPPORTED_MAJOR = 1
CURRENT_VERSION = "1.0"
SUPPORTED_PREFIX = f"{SUPPORTED_MAJOR}."  # a version this code reads starts with it


class Payload(BaseModel):
    """The facts consumers need: ids and values, never whole entities."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    reservation_id: int
    user_id: int
    concert_id: int
    schedule_id: int
    concert_date: date
    seat_id: int
    queue_token_id: str = Field(description="digest of the queue token, never the bearer secret")

    @property
    def partition_key(self) -> str:
        return str(self.seat_id)


class PaymentSucceededPayload(Payload):
    payment_id: int
    amount: int = Field(ge=0)
    paid_at: datetime
    schedule_seat_count: int = Field(gt=0, description="seats on sale for the schedule")
    sale_opened_at: datetime


class FailureReason(StrEnum):
    INSUFFICIENT_POINTS = "insufficient_points"
    HOLD_EXPIRED = "hold_expired"
    NOT_OWNER = "not_owner"
    RESERVATION_NOT_HELD = "reservation_not_held"


class PaymentFailedPayload(Payload):
    payment_id: int
    amount: int = Field(ge=0)
    points_deducted: int = Field(ge=0, description="points taken before the failure; refunded")
    reason: FailureReason
    failed_at: datetime


class ReservationCreatedPayload(Payload):
    price: int = Field(ge=0)
    reserved_at: datetime
    hold_expires_at: datetime


class Envelope(BaseModel):
    """Fields every event carries; subclasses fix ``event_type`` and the payload type."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    TYPE: ClassVar[str]

    event_id: str
    event_type: str
    schema_version: str = CURRENT_VERSION
    occurred_at: datetime
    producer: str
    key: str
    payload: Payload

    @classmethod
    def new(cls, payload: Payload, *, producer: str) -> Self:
        """A fresh event with a time-ordered id (UUIDv7) and the payload's partition key."""
        return cls(
            event_id=str(uuid_utils.uuid7()),
            event_type=cls.TYPE,
            occurred_at=datetime.now(UTC),
            producer=producer,
            key=payload.partition_key,
            payload=payload,
        )


class PaymentSucceeded(Envelope):
    TYPE: ClassVar[str] = "payment.success"
    event_type: Literal["payment.success"] = "payment.success"
    payload: PaymentSucceededPayload


class PaymentFailed(Envelope):
    TYPE: ClassVar[str] = "payment.failed"
    event_type: Literal["payment.failed"] = "payment.failed"
    payload: PaymentFailedPayload


class ReservationCreated(Envelope):
    TYPE: ClassVar[str] = "reservation.created"
    event_type: Literal["reservation.created"] = "reservation.created"
    payload: ReservationCreatedPayload


EVENT_TYPES: dict[str, type[Envelope]] = {
    cls.TYPE: cls for cls in (PaymentSucceeded, PaymentFailed, ReservationCreated)
}
