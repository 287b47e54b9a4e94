"""Errors of the domain and use cases; the API maps each to one problem type and status."""

from __future__ import annotations

from ticketing_events import FailureReason


class DomainError(Exception):
    """Base of the errors a client can cause; never a bug."""


class NotFound(DomainError):
    def __init__(self, what: str, ident: object) -> None:
        self.what = what
        self.ident = ident
        super().__init__(f"{what} {ident} does not exist")


class SeatUnavailable(DomainError):
    def __init__(self, seat_id: int) -> None:
        self.seat_id = seat_id
        super().__init__(f"seat {seat_id} is held or sold")


class ReservationNotPayable(DomainError):
    def __init__(self, reservation_id: int, *, already_paid: bool) -> None:
        self.reservation_id = reservation_id
        self.already_paid = already_paid
        state = "already paid" if already_paid else "no longer held (cancelled or failed)"
        super().__init__(f"reservation {reservation_id} is {state}")


class PaymentRejected(DomainError):
    """A payment attempt that failed and was recorded (and announced as payment.failed)."""

    def __init__(self, reason: FailureReason, payment_id: int, reservation_id: int) -> None:
        self.reason = reason
        self.payment_id = payment_id
        self.reservation_id = reservation_id
        super().__init__(f"payment {payment_id} of reservation {reservation_id} failed: {reason}")


class IdempotencyKeyReused(DomainError):
    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"Idempotency-Key {key!r} was first used for a different request")


class Unauthenticated(DomainError):
    """No bearer JWT, or one that does not verify."""


class Forbidden(DomainError):
    """The authenticated user may not act on what the request names."""


class TooManyRequests(DomainError):
    """A per-user limit: answered 429 with ``Retry-After``."""

    def __init__(self, detail: str, *, retry_after_s: int, slug: str = "rate-limited") -> None:
        self.retry_after_s = max(1, retry_after_s)
        self.slug = slug
        super().__init__(detail)


class QueueTokenMissing(DomainError):
    def __init__(self) -> None:
        super().__init__("a queue token is required (X-Queue-Token)")


class QueueTokenNotYours(DomainError):
    def __init__(self) -> None:
        super().__init__("the queue token was issued to another user")


class QueueTokenUnknown(DomainError):
    def __init__(self) -> None:
        super().__init__("the queue token is unknown or expired")


class QueueTokenNotActive(DomainError):
    def __init__(self, position: int) -> None:
        self.position = position
        super().__init__(f"the queue token is still waiting (position {position})")


class SaleNotOpen(DomainError):
    def __init__(self, schedule_id: int) -> None:
        self.schedule_id = schedule_id
        super().__init__(f"sales of schedule {schedule_id} are not open yet")
