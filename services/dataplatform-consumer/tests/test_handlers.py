"""The delivery rule as plain code: the request, the verdicts, the breaker, the batch handler."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from dataplatform_consumer.handlers import (
    CircuitBreaker,
    Verdict,
    payment_request,
    send_payments,
    verdict_for,
)
from opentelemetry.context import Context
from ticketing_events.consumer import BatchFailures, Delivery, PermanentError
from ticketing_events.schemas import PaymentSucceeded
from ticketing_events.testing import payment_succeeded


def test_the_request_carries_the_event_id_as_idempotency_key_and_the_event_as_json():
    event = payment_succeeded(1)
    headers, body = payment_request(event)
    assert headers["Idempotency-Key"] == event.event_id
    assert headers["Content-Type"] == "application/json"
    assert PaymentSucceeded.model_validate_json(body) == event


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, Verdict.DONE),
        (201, Verdict.DONE),
        (204, Verdict.DONE),
        (408, Verdict.RETRY),
        (429, Verdict.RETRY),
        (500, Verdict.RETRY),
        (503, Verdict.RETRY),
        (400, Verdict.REJECT),
        (409, Verdict.REJECT),
        (413, Verdict.REJECT),
        (422, Verdict.REJECT),
        (301, Verdict.MISCONFIGURED),
        (308, Verdict.MISCONFIGURED),
        (401, Verdict.MISCONFIGURED),
        (403, Verdict.MISCONFIGURED),
        (404, Verdict.MISCONFIGURED),
        (405, Verdict.MISCONFIGURED),
        (407, Verdict.MISCONFIGURED),
        (410, Verdict.MISCONFIGURED),
    ],
)
def test_verdicts(status, verdict):
    assert verdict_for(status) is verdict


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_breaker_opens_after_consecutive_failures_and_one_probe_closes_it():
    clock = Clock()
    breaker = CircuitBreaker(threshold=3, reset_s=10, clock=clock)
    for _ in range(2):
        breaker.record(False)
    breaker.record(True)  # a success in between resets the count
    for _ in range(2):
        breaker.record(False)
    assert breaker.allow() and not breaker.is_open
    breaker.record(False)
    assert breaker.is_open and not breaker.allow()
    clock.now = 10
    assert breaker.allow(), "the probe"
    assert not breaker.allow(), "only one probe at a time"
    breaker.record(True)
    assert not breaker.is_open and breaker.allow()


def test_a_failed_probe_opens_the_breaker_again():
    clock = Clock()
    breaker = CircuitBreaker(threshold=1, reset_s=10, clock=clock)
    breaker.record(False)
    clock.now = 10
    assert breaker.allow()
    breaker.record(False)
    clock.now = 19
    assert breaker.is_open and not breaker.allow()
    clock.now = 20
    assert breaker.allow()


class ScriptedPlatform:
    """Answers each event with the outcome scripted for its index."""

    def __init__(self, outcomes: dict[int, Exception]) -> None:
        self.outcomes = outcomes

    def send_all(self, batch: Sequence[Delivery[PaymentSucceeded]]) -> list[Exception | None]:
        return [self.outcomes.get(i) for i in range(len(batch))]


def deliveries(n: int) -> list[Delivery[PaymentSucceeded]]:
    return [
        Delivery(payment_succeeded(i), "payment.success", 0, i, Context(), None) for i in range(n)
    ]  # type: ignore[arg-type]


def test_the_batch_handler_reports_only_the_failed_events():
    rejected = PermanentError("400")
    handle = send_payments(ScriptedPlatform({2: rejected}))
    with pytest.raises(BatchFailures) as raised:
        handle(deliveries(5))
    assert raised.value.failures == {2: rejected}
    send_payments(ScriptedPlatform({}))(deliveries(5))  # all sent: returns
