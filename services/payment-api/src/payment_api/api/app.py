"""The FastAPI app factory."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from anyio import to_thread
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.metrics import NoOpMeterProvider
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from payment_api import redaction
from payment_api.api import openapi, problems
from payment_api.api.routes import catalogue, health, payments, points, queue, reservations
from payment_api.auth import verifier_from
from payment_api.bootstrap import Services, bootstrap
from payment_api.config import Settings
from payment_api.metrics import HttpMetrics


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
    app.state.verifier = verifier_from(settings)
    problems.install(app, app.state.problem)
    for module in (health, queue, catalogue, points, reservations, payments):
        app.include_router(module.router)
    openapi.install(app)
    app.add_middleware(BodyLimit, max_bytes=settings.api_max_body_bytes, problem=app.state.problem)
    app.add_middleware(HttpMetrics)
    if instrument:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        app.add_middleware(TraceResponse)
        # No spans for the ASGI receive/send messages: three spans a request become one.
        # No secret in the span: token-like URL parts are replaced, and headers (captured
        # only when the OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_* variables say so) sanitized.
        FastAPIInstrumentor.instrument_app(
            app,
            excluded_urls="healthz,readyz",
            exclude_spans=["receive", "send"],
            server_request_hook=redaction.server_request_hook,
            http_capture_headers_sanitize_fields=redaction.SECRET_HEADERS,
            meter_provider=NoOpMeterProvider(),  # HttpMetrics records the request durations
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


class BodyLimit:
    """Refuses a request body over ``max_bytes`` with 413 problem+json before the app reads
    it: at once when its ``Content-Length`` says so (nothing is read); a body without one
    (chunked) is read here up to the limit and handed on only when it fits."""

    def __init__(self, app: ASGIApp, max_bytes: int, problem: problems.Problem) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.problem = problem

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", ()))
        length = headers.get(b"content-length")
        if length is not None:
            if length.isdigit() and int(length) > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        if b"transfer-encoding" not in headers:  # no body
            await self.app(scope, receive, send)
            return
        buffered: list[Message] = []
        size = 0
        while True:
            message = await receive()
            buffered.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return buffered.pop(0) if buffered else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = self.problem.response(
            413,
            "body-too-large",
            "Request body too large",
            f"the request body exceeds {self.max_bytes} bytes",
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)
