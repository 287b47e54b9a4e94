"""Reading the trace context of a message's headers: the hand-parsed ``traceparent`` gives
what the configured W3C propagators give, and anything unusual goes to them."""

from __future__ import annotations

import pytest
from opentelemetry import baggage, propagate, trace
from ticketing_events import tracing

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


def propagators(headers: dict[str, bytes]) -> object:
    """The context the global propagators read from the same headers."""
    return propagate.extract({k: v.decode() for k, v in headers.items()})


def remote(context: object) -> trace.SpanContext:
    return trace.get_current_span(context).get_span_context()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "headers",
    [
        {"traceparent": f"00-{TRACE}-{SPAN}-01".encode()},  # sampled
        {"traceparent": f"00-{TRACE}-{SPAN}-00".encode()},  # not sampled
        {"traceparent": f"00-{TRACE}-{SPAN}-03".encode(), "event_id": b"e"},  # random bit too
        {"traceparent": f"00-{TRACE}-{SPAN}-01".encode(), "tracestate": b"vendor=x"},
        {"traceparent": f"00-{TRACE}-{SPAN}-01".encode(), "baggage": b"user=7"},
        {"traceparent": f" 00-{TRACE}-{SPAN}-01".encode()},  # whitespace the W3C one allows
        {"traceparent": f"01-{TRACE}-{SPAN}-01-later".encode()},  # a later version
        {"traceparent": f"00-{TRACE.upper()}-{SPAN}-01".encode()},  # not lower case hex
        {"traceparent": f"00-{'0' * 32}-{SPAN}-01".encode()},  # invalid trace id
        {"traceparent": f"00-{TRACE}-{'0' * 16}-01".encode()},  # invalid span id
        {"traceparent": f"00-{TRACE}-{SPAN}-01-extra".encode()},  # version 00 with more
        {"traceparent": b"garbage"},
        {},
    ],
)
def test_extract_reads_what_the_w3c_propagators_read(headers: dict[str, bytes]) -> None:
    ours, theirs = tracing.extract(headers), propagators(headers)
    assert remote(ours) == remote(theirs)
    assert remote(ours).is_remote == remote(theirs).is_remote
    assert remote(ours).trace_state == remote(theirs).trace_state
    assert baggage.get_all(ours) == baggage.get_all(theirs)  # type: ignore[arg-type]


def test_a_sampled_traceparent_reads_as_a_valid_sampled_remote_parent() -> None:
    parent = remote(tracing.extract({"traceparent": f"00-{TRACE}-{SPAN}-01".encode()}))
    assert parent.is_valid and parent.is_remote and parent.trace_flags.sampled
    assert (parent.trace_id, parent.span_id) == (int(TRACE, 16), int(SPAN, 16))
