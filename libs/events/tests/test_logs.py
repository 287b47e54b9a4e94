import json
import logging

import structlog
from opentelemetry import trace
from ticketing_events.logs import configure_logging


def test_logs_are_json_lines_carrying_the_current_trace(spans, capsys):
    configure_logging("test-service")
    try:
        with trace.get_tracer("test").start_as_current_span("work") as span:
            structlog.get_logger("app").info("payment handled", payment_id=7)
            logging.getLogger("stdlib").warning("from the standard library")
        ctx = span.get_span_context()
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    finally:
        logging.getLogger().handlers.clear()
        structlog.reset_defaults()
        structlog.contextvars.clear_contextvars()

    ours, stdlib = lines
    assert ours["message"] == "payment handled"
    assert ours["payment_id"] == 7
    assert ours["level"] == "info"
    assert ours["service"] == "test-service"
    assert ours["trace_id"] == format(ctx.trace_id, "032x")
    assert ours["span_id"] == format(ctx.span_id, "016x")
    assert stdlib["message"] == "from the standard library"
    assert stdlib["trace_id"] == ours["trace_id"]
