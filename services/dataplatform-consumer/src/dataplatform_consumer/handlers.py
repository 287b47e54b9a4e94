"""The delivery rule, as plain code: what is sent for a payment, how an answer is judged, when
to stop calling the platform, and the batch handler that reports each event's outcome.

- Each ``payment.success`` event is POSTed once as JSON, with ``Idempotency-Key`` = event id,
  so the platform drops a redelivery.
- 2xx: done. 408, 429, 5xx, timeouts, connection errors and undecodable answers: retried with
  backoff, up to the attempt budget, then dead-lettered.
- A redirect, 401, 403, 404, 405, 407 or 410 says the deployment is wrong (the URL, the
  credentials), not the payment: reported as a deployment error, and the breaker opens at once.
- Any other answer (400, 409, 422...): the platform refuses this payment; dead-lettered at once.
- A circuit breaker stops calling a platform that keeps failing: the events are then reported
  as an outage, and the runtime pauses consumption instead of dead-lettering them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Protocol

from ticketing_events.consumer import BatchFailures, Delivery
from ticketing_events.schemas import PaymentSucceeded

IDEMPOTENCY_KEY = "Idempotency-Key"


class Verdict(Enum):
    DONE = "done"
    RETRY = "retry"
    REJECT = "reject"
    MISCONFIGURED = "misconfigured"


# Answers about the endpoint or our credentials, alike for every payment: a wrong
# DATAPLATFORM_URL (404, 405, 410, or a redirect, which the client never follows), missing or
# refused credentials (401, 403, 407 at a proxy).
_MISCONFIGURED = frozenset({401, 403, 404, 405, 407, 410})


def verdict_for(status: int) -> Verdict:
    """How an HTTP status of the platform settles a payment."""
    if 200 <= status < 300:
        return Verdict.DONE
    if status in (408, 429) or status >= 500:
        return Verdict.RETRY
    if 300 <= status < 400 or status in _MISCONFIGURED:
        return Verdict.MISCONFIGURED
    return Verdict.REJECT


def payment_request(event: PaymentSucceeded) -> tuple[dict[str, str], bytes]:
    """Headers and body of the POST that sends ``event`` to the platform."""
    headers = {IDEMPOTENCY_KEY: event.event_id, "Content-Type": "application/json"}
    return headers, event.model_dump_json().encode()


class CircuitBreaker:
    """Closed, requests go; ``threshold`` failures in a row open it. Open, requests are refused
    for ``reset_s``; then one probe may go (half-open): its success closes the breaker, its
    failure opens it again. ``trip`` opens it at once. Thread-safe."""

    def __init__(
        self, threshold: int, reset_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = threshold
        self.reset_s = reset_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def is_open(self) -> bool:
        return self._opened_at is not None

    def allow(self) -> bool:
        """Whether a request may go now (the half-open probe counts as one)."""
        with self._lock:
            if self._opened_at is None:
                return True
            if self._probing or self._clock() - self._opened_at < self.reset_s:
                return False
            self._probing = True
            return True

    def record(self, success: bool) -> None:
        with self._lock:
            if success:
                self._failures, self._opened_at, self._probing = 0, None, False
                return
            self._failures += 1
            if self._probing or self._failures >= self.threshold:
                self._opened_at, self._probing = self._clock(), False

    def trip(self) -> None:
        """Open now, whatever the count: for a failure that no retry will mend."""
        with self._lock:
            self._opened_at, self._probing = self._clock(), False


class Platform(Protocol):
    def send_all(
        self, batch: Sequence[Delivery[PaymentSucceeded]]
    ) -> Sequence[Exception | None]: ...


def send_payments(
    platform: Platform,
) -> Callable[[Sequence[Delivery[PaymentSucceeded]]], None]:
    """The ``payment.success`` batch handler: every event sent concurrently; the failed ones are
    reported by index, so the runtime retries or dead-letters only those."""

    def handle(batch: Sequence[Delivery[PaymentSucceeded]]) -> None:
        outcomes = platform.send_all(batch)
        failures = {i: error for i, error in enumerate(outcomes) if error is not None}
        if failures:
            raise BatchFailures(failures)

    return handle
