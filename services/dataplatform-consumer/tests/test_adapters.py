"""The HTTP client against real servers: which answers are the deployment's fault, and the
circuit breaker's recovery whatever the probe's answer."""

from __future__ import annotations

import time

import pytest
from dataplatform_consumer.adapters import DataPlatformClient, PlatformUnavailable
from dataplatform_consumer.config import Settings
from opentelemetry.context import Context
from ticketing_events.consumer import Delivery, DeploymentError, PermanentError
from ticketing_events.schemas import PaymentSucceeded
from ticketing_events.testing import payment_succeeded


def deliveries(n: int) -> list[Delivery[PaymentSucceeded]]:
    return [
        Delivery(payment_succeeded(i), "payment.success", 0, i, Context(), None) for i in range(n)
    ]  # type: ignore[arg-type]


def probe(client: DataPlatformClient, server, delivery: Delivery[PaymentSucceeded]):
    """Send ``delivery`` until a request reaches ``server`` (an open breaker refuses until its
    reset, then lets one probe through); the outcome of that send."""
    answered = len(server.answered)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        (outcome,) = client.send_all([delivery])
        if len(server.answered) > answered:
            return outcome
        time.sleep(0.02)
    raise AssertionError("no request reached the server")


def test_a_wrong_url_is_a_deployment_error_not_a_rejection(stub):
    settings = Settings(dataplatform_url=f"{stub.base_url}/no-such-path")
    with DataPlatformClient(settings) as client:
        outcomes = client.send_all(deliveries(3))
    for outcome in outcomes:
        assert isinstance(outcome, DeploymentError), outcome
        assert not isinstance(outcome, PermanentError), "never dead-lettered"
        assert "HTTP 404" in str(outcome)


@pytest.mark.parametrize("status", [301, 308, 401, 403, 404, 405, 407, 410])
def test_an_answer_meaning_the_deployment_is_wrong_opens_the_breaker_until_a_probe_succeeds(
    scripted, status
):
    settings = Settings(
        dataplatform_url=scripted.url, dataplatform_concurrency=1, dataplatform_breaker_reset_s=0.05
    )
    with DataPlatformClient(settings) as client:
        scripted.answer_status(status)
        outcomes = client.send_all(deliveries(3))
        assert all(isinstance(o, DeploymentError) for o in outcomes), outcomes
        assert client.breaker.is_open, "opened at once: retrying will not fix the deployment"
        scripted.answer_status(201)  # fixed on the platform's side
        assert probe(client, scripted, deliveries(1)[0]) is None
        assert client.send_all(deliveries(3)) == [None] * 3


def test_an_undecodable_answer_to_the_probe_does_not_leave_the_breaker_stuck_open(scripted):
    settings = Settings(
        dataplatform_url=scripted.url,
        dataplatform_breaker_threshold=1,
        dataplatform_breaker_reset_s=0.05,
        dataplatform_max_attempts=1,
    )
    (event,) = deliveries(1)
    with DataPlatformClient(settings) as client:
        scripted.answer_status(503)
        client.send_all([event])
        assert client.breaker.is_open
        scripted.answer_undecodable()
        # A failed request like any other: the breaker opens again, the event waits.
        assert isinstance(probe(client, scripted, event), PlatformUnavailable)
        scripted.answer_status(201)  # healthy again
        assert probe(client, scripted, event) is None
        assert not client.breaker.is_open
    assert scripted.answered == [503, 200, 201]


def test_once_the_breaker_opens_the_events_waiting_for_a_slot_do_not_call_the_platform(
    scripted,
):
    settings = Settings(
        dataplatform_url=scripted.url,
        dataplatform_concurrency=4,
        dataplatform_breaker_threshold=5,
        dataplatform_breaker_reset_s=60,
        dataplatform_backoff_initial_s=0.01,
    )
    scripted.answer_status(503)
    with DataPlatformClient(settings) as client:
        outcomes = client.send_all(deliveries(200))
    assert all(isinstance(o, PlatformUnavailable) for o in outcomes), outcomes
    # The failures that open it, and at most the requests in flight beside the last of them.
    assert 5 <= len(scripted.answered) <= 5 + 4 - 1, len(scripted.answered)
