"""The FastAPI app factory."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from anyio import to_thread
from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

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

        # No spans for the ASGI receive/send messages: three spans a request become one.
        FastAPIInstrumentor.instrument_app(
            app, excluded_urls="healthz,readyz", exclude_spans=["receive", "send"]
        )
    return app
