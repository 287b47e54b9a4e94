"""Traces at production rates, on the running system: parent-based sampling from the standard
``OTEL_TRACES_SAMPLER``/``OTEL_TRACES_SAMPLER_ARG`` variables, the consumers following
payment-api's decision, and a sampled payment drawn as a PNG waterfall (ticketing_dev.trace_png).

Every service runs ``parentbased_traceidratio`` at 1, except payment-api at 0: a request
without a ``traceparent`` is then not sampled, and one whose ``traceparent`` says sampled is
(parent-based), so one test can make either kind of payment."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from e2e_stack import running_stack
from jaeger import Span, Trace, fetch_trace, parse
from PIL import Image
from test_end_to_end import PRICE, Fans, trace_id, wait_drained
from ticketing_dev import trace_png
from ticketing_dev.stack import Stack
from ticketing_events.topics import PAYMENT_SUCCESS, consumers_of
from ticketing_events.tracing import MESSAGING_GROUP

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.redis,
    pytest.mark.postgres,
    pytest.mark.jaeger,
    pytest.mark.timeout(300),
]

SAMPLER = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1"}
CONSUMERS = consumers_of(PAYMENT_SUCCESS)


@pytest.fixture(scope="module")
def stack(
    kafka_bootstrap: str,
    redis_url: str,
    database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    with running_stack(kafka_bootstrap, tmp_path_factory.mktemp("sampled"), SAMPLER) as stack:
        (api,) = [p for p in stack.processes() if p.name == "payment-api"]
        stack.stop([api.name])
        stack.start([replace(api, env={**api.env, "OTEL_TRACES_SAMPLER_ARG": "0"})])
        yield stack


def sampled_parent() -> dict[str, str]:
    """A caller's ``traceparent`` with the sampled flag, in a trace of its own."""
    return {"traceparent": f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"}


def pay(fans: Fans, fan: int, headers: dict[str, str] | None = None) -> httpx.Response:
    reserved = fans.reserve(fan, fan)
    assert reserved.status_code == 201, reserved.text
    paid = fans.http.post(
        "/v1/payments",
        json={"reservation_id": reserved.json()["reservation_id"]},
        headers={**fans.auth(fan), **(headers or {})},
    )
    assert paid.status_code == 201, paid.text
    return paid


def jaeger_has(stack: Stack, trace: str) -> bool:
    response = httpx.get(f"{stack.env['JAEGER_QUERY_URL']}/api/traces/{trace}", timeout=10)
    return response.status_code == 200 and bool(response.json().get("data"))


def ours(stack: Stack, t: Trace, service: str) -> list[Span]:
    """``service``'s consumer spans of this module's stack: the session's stack of the other
    end-to-end tests, when it runs, consumes the same topics into the same Jaeger."""
    group = stack.group_of(service)
    return [s for s in t.of(service, "consumer") if s.tags.get(MESSAGING_GROUP) == group]


def all_ours(stack: Stack) -> Callable[[Trace], bool]:
    return lambda t: all(ours(stack, t, service) for service in CONSUMERS)


def handled_in(stack: Stack, service: str, trace: str) -> bool:
    """The service logged handling an event of this trace (its debug line carries the id)."""
    return any(
        '"event handled"' in line and trace in line
        for line in stack.log_path(service).read_text().splitlines()
    )


def test_consumers_trace_a_payment_only_when_payment_api_sampled_it(stack: Stack) -> None:
    fans = Fans(stack, seats=2, points=[PRICE, PRICE])
    unsampled = pay(fans, 0)
    sampled = pay(fans, 1, sampled_parent())
    # The sampled bit of the flags (the SDK may set the random-trace-id bit too).
    assert not int(unsampled.headers["traceresponse"].split("-")[3], 16) & 0x01
    assert int(sampled.headers["traceresponse"].split("-")[3], 16) & 0x01
    wait_drained(stack)

    jaeger = stack.env["JAEGER_QUERY_URL"]
    t = fetch_trace(jaeger, trace_id(sampled), all_ours(stack), timeout=60)
    (publish,) = [s for s in t.of("payment-api", "producer") if s.name == "payment.success publish"]
    for service in CONSUMERS:
        (span,) = ours(stack, t, service)
        assert t.descends_from(span, publish), service

    # Each consumer handled the unsampled payment (at ratio 1 of its own) and exported nothing
    # of it: its span ended before the drained commit; a second is five export intervals.
    time.sleep(1)
    for service in CONSUMERS:
        assert handled_in(stack, service, trace_id(unsampled)), service
    assert not jaeger_has(stack, trace_id(unsampled))


def test_a_sampled_payment_is_drawn_as_a_waterfall_naming_each_service(
    stack: Stack, tmp_path: Path
) -> None:
    fans = Fans(stack, seats=1, points=[PRICE])
    paid = pay(fans, 0, sampled_parent())
    jaeger = stack.env["JAEGER_QUERY_URL"]
    fetch_trace(jaeger, trace_id(paid), all_ours(stack), timeout=60)

    data = trace_png.fetch(jaeger, trace_id(paid))
    expected = parse(data)  # the very spans drawn
    png = trace_png.write(data, tmp_path / "trace.png")

    with Image.open(png) as image:
        assert image.format == "PNG"
        assert image.height > 200  # a row per span, not an empty canvas
    figure = trace_png.waterfall(data)
    (ax,) = figure.axes
    legend = {t.get_text() for t in ax.get_legend().get_texts()}
    assert legend == expected.services
    rows = [t.get_text() for t in ax.get_yticklabels()]
    assert len(rows) == len(data["spans"])
    assert {row.split(":")[0] for row in rows} == expected.services
    assert "payment-api: POST /v1/payments" in rows
