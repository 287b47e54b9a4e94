"""The FastAPI app factory."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from anyio import to_thread
from fastapi import FastAPI
from opentelemetry import trace
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from payment_api.api import problems
from payment_api.api.routes import catalogue, health, payments, points, queue, reservations
from payment_api.bootstrap import Services, bootstrap
from payment_api.config import Settings


def create_app(
    settings: Settings, *, services: Services | None = None, instrument: bool = True
) -> FastAPI:
    """The app; its services are built (unless given) and started when it starts serving."""
    instrument = instrument and not settings.otel_sdk_disabled

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        to_thread.current_default_thread_limiter().total_tokens = settings.api_threads
        svc = services
        if svc is None:
            svc = await run_in_threadpool(bootstrap, settings, instrument=instrument)
        app.state.services = svc
        svc.start()
        # What exists now lives as long as the process: keep it out of the collector's full
        # scans, which run under the GIL and hold up every request in flight.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await run_in_threadpool(svc.close)

    # FastAPI's own telemetry is off: opentelemetry-instrumentation-fastapi (below) makes the
    # server spans, and having both would trace every request twice.
    app = FastAPI(
        title="payment-api",
        version="0.1.0",
        lifespan=lifespan,
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.problem = problems.Problem(settings.problem_type_base)
    problems.install(app, app.state.problem)
    for module in (health, queue, catalogue, points, reservations, payments):
        app.include_router(module.router)
    if instrument:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        app.add_middleware(TraceResponse)
        # No spans for the ASGI receive/send messages: three spans a request become one.
        FastAPIInstrumentor.instrument_app(
            app, excluded_urls="healthz,readyz", exclude_spans=["receive", "send"]
        )
    return app


class TraceResponse:
    """Answers with the W3C ``traceresponse`` header (Trace Context Level 2): the trace id
    and server span of the request, so a client can look its trace up."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_trace(message: Message) -> None:
            if message["type"] == "http.response.start":
                span = trace.get_current_span().get_span_context()
                if span.is_valid:
                    value = f"00-{span.trace_id:032x}-{span.span_id:016x}-{span.trace_flags:02x}"
                    headers = [*message.get("headers", []), (b"traceresponse", value.encode())]
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_trace)
