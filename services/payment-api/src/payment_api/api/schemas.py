"""Request and response bodies. Requests are strict: unknown fields and non-integers fail."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from payment_api.domain.model import PaymentStatus, ReservationStatus, SeatStatus, TokenStatus

# Ids are bigints, but JSON numbers are exact only up to 2**53 - 1 (JavaScript, JSON Schema
# tools): ids above it are refused rather than silently rounded by a client.
MAX_ID = 2**53 - 1
MAX_CHARGE = 1_000_000_000


def _json_integer(value: object) -> object:
    """A JSON integer: a number without a fractional part (JSON Schema counts 7.0 as one),
    never a string or a boolean (the lax mode would take "7" and true)."""
    if isinstance(value, str | bool):
        raise ValueError("must be a JSON integer, not a string or boolean")
    return value


Id = Annotated[int, Field(ge=1, le=MAX_ID), BeforeValidator(_json_integer)]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TokenRequest(Request):
    """Optional: the token is always the authenticated user's; a ``user_id`` must be theirs."""

    user_id: Id


class ChargeRequest(Request):
    amount: Annotated[int, Field(gt=0, le=MAX_CHARGE), BeforeValidator(_json_integer)]


class ReservationRequest(Request):
    seat_id: Id


class PaymentRequest(Request):
    reservation_id: Id


class TokenIssued(BaseModel):
    token: str = Field(description="secret, bound to the user: send as X-Queue-Token")
    token_id: str = Field(description="sha256 hex digest of the token; events carry this")
    user_id: int
    status: TokenStatus
    position: int


class TokenState(BaseModel):
    token_id: str
    user_id: int
    status: TokenStatus
    position: int | None = Field(description="1-based place while waiting; null once active")


class Concert(BaseModel):
    id: int
    title: str


class Schedule(BaseModel):
    id: int
    concert_id: int
    concert_date: date
    sale_opened_at: datetime
    seat_count: int
    available_seats: int


class Seat(BaseModel):
    id: int
    seat_no: int
    price: int
    status: SeatStatus


class Points(BaseModel):
    user_id: int
    balance: int


class Reservation(BaseModel):
    reservation_id: int
    user_id: int
    seat_id: int
    schedule_id: int
    amount: int
    status: ReservationStatus
    reserved_at: datetime
    hold_expires_at: datetime


class Payment(BaseModel):
    payment_id: int
    reservation_id: int
    seat_id: int
    amount: int
    status: PaymentStatus
    balance: int
    paid_at: datetime


class SoldOutEntry(BaseModel):
    rank: int
    schedule_id: int
    concert_id: int
    title: str | None
    concert_date: date
    sale_opened_at: datetime | None
    sold_out_at: datetime
    seconds_to_sell_out: float


class Health(BaseModel):
    status: str
    checks: dict[str, bool] = Field(default_factory=dict)
