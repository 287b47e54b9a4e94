"""The data platform over HTTP: at most ``concurrency`` requests in flight (aiohttp, on an
event loop in a thread of its own), retries with backoff, the circuit breaker, and one CLIENT
span per request."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Sequence
from types import TracebackType
from typing import Any, TypeVar

import aiohttp
import structlog
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, StatusCode
from ticketing_events.consumer import (
    Delivery,
    DeploymentError,
    PermanentError,
    RetriesExhausted,
    backoff_delay,
)
from ticketing_events.schemas import PaymentSucceeded
from yarl import URL

from dataplatform_consumer.config import Settings
from dataplatform_consumer.handlers import CircuitBreaker, Verdict, payment_request, verdict_for

log = structlog.get_logger("dataplatform_consumer")
tracer = trace.get_tracer("dataplatform_consumer")
T = TypeVar("T")


class PlatformUnavailable(Exception):
    """The breaker is open: the platform is down. An outage error: the runtime pauses."""


class PlatformRejected(PermanentError):
    """The platform refused this payment (a 4xx not about the deployment): dead-lettered at once."""


class PlatformMisconfigured(DeploymentError):
    """The platform's answer says the deployment is wrong (``Verdict.MISCONFIGURED``): the
    runtime pauses, reports not ready and dead-letters nothing until it is fixed."""


class DataPlatformClient:
    """Sends payments; ``send_all`` returns each event's error, or None once it is accepted.

    asyncio rather than threads: aiohttp spends about a quarter of the CPU per request of
    httpx's sync client in a pool of threads (bench/http_clients.py).
    """

    def __init__(self, settings: Settings) -> None:
        self.url = URL(settings.dataplatform_url)
        self.settings = settings
        self.breaker = CircuitBreaker(
            settings.dataplatform_breaker_threshold, settings.dataplatform_breaker_reset_s
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="dataplatform", daemon=True
        )
        self._thread.start()
        self._http = self._run(self._open())
        # Requests past the limit wait here, not in the connection pool, whose wait counts
        # against the connect timeout.
        self._in_flight = asyncio.Semaphore(settings.dataplatform_concurrency)
        # The last answer, when it said the deployment is wrong: what the open breaker reports.
        self._misconfigured: str | None = None
        self._span_attributes: dict[str, str | int] = {
            "http.request.method": "POST",
            "url.full": str(self.url),
            "server.address": self.url.host or "",
            "server.port": self.url.port or (443 if self.url.scheme == "https" else 80),
        }

    async def _open(self) -> aiohttp.ClientSession:
        timeout = self.settings.dataplatform_timeout_s
        limit = self.settings.dataplatform_concurrency
        return aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, connect=timeout, sock_read=timeout),
            connector=aiohttp.TCPConnector(limit=limit),
        )

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def send_all(self, batch: Sequence[Delivery[PaymentSucceeded]]) -> list[Exception | None]:
        return self._run(self._send_all(batch))

    async def _send_all(
        self, batch: Sequence[Delivery[PaymentSucceeded]]
    ) -> list[Exception | None]:
        return list(await asyncio.gather(*(self._send(delivery) for delivery in batch)))

    async def _send(self, delivery: Delivery[PaymentSucceeded]) -> Exception | None:
        headers, body = payment_request(delivery.event)
        s = self.settings
        attempt = 0
        while True:
            # The breaker is asked once a slot is free: an event waiting for one while the
            # breaker opened does not call the platform.
            async with self._in_flight:
                if not self.breaker.allow():
                    break
                attempt += 1
                verdict, detail = Verdict.RETRY, ""
                try:
                    verdict, detail = await self._post(delivery, headers, body, attempt)
                finally:  # whatever _post raised, the breaker hears of it: a probe never sticks
                    self._record(verdict, detail)
            if verdict is Verdict.DONE:
                return None
            if verdict is Verdict.REJECT:
                return PlatformRejected(detail)
            if verdict is Verdict.MISCONFIGURED:
                return self._misconfiguration(detail)
            if self.breaker.is_open:
                break
            if attempt >= s.dataplatform_max_attempts:
                return RetriesExhausted(f"{attempt} attempts, the last: {detail}")
            log.debug("platform request failed, retrying", error=detail, attempt=attempt)
            initial, cap = s.dataplatform_backoff_initial_s, s.dataplatform_backoff_max_s
            await asyncio.sleep(backoff_delay(attempt, initial, cap))
        misconfigured = self._misconfigured
        if misconfigured is not None:
            return self._misconfiguration(misconfigured)
        return PlatformUnavailable(f"circuit open for {self.url}")

    def _record(self, verdict: Verdict, detail: str) -> None:
        """Tell the breaker how a request went. An answer saying the deployment is wrong opens
        it at once: every event would get the same, so only the probes ask again."""
        if verdict is Verdict.MISCONFIGURED:
            self._misconfigured = detail
            self.breaker.trip()
        else:
            self._misconfigured = None
            self.breaker.record(verdict is not Verdict.RETRY)

    def _misconfiguration(self, detail: str) -> PlatformMisconfigured:
        return PlatformMisconfigured(
            f"{self.url} answered {detail}; check DATAPLATFORM_URL and the platform's credentials"
        )

    async def _post(
        self,
        delivery: Delivery[PaymentSucceeded],
        headers: dict[str, str],
        body: bytes,
        attempt: int,
    ) -> tuple[Verdict, str]:
        with tracer.start_as_current_span(
            "POST", context=delivery.context, kind=SpanKind.CLIENT, attributes=self._span_attributes
        ) as span:
            if attempt > 1:
                span.set_attribute("http.request.resend_count", attempt - 1)
            carrier = dict(headers)
            propagate.inject(carrier)
            try:
                # Redirects are not followed: one says the URL is wrong (Verdict.MISCONFIGURED).
                async with self._http.post(
                    self.url, data=body, headers=carrier, allow_redirects=False
                ) as response:
                    answer = await response.read()  # decoded: a bad encoding raises here
                    status = response.status
            # timeouts, lost connections, undecodable answers
            except (aiohttp.ClientError, TimeoutError) as exc:
                span.set_attribute("error.type", type(exc).__qualname__)
                span.set_status(StatusCode.ERROR, str(exc))
                return Verdict.RETRY, f"{type(exc).__name__}: {exc}"
            span.set_attribute("http.response.status_code", status)
            verdict = verdict_for(status)
            if verdict is Verdict.DONE:
                return verdict, ""
            span.set_attribute("error.type", str(status))
            span.set_status(StatusCode.ERROR)
            return verdict, f"HTTP {status}: {answer[:200].decode(errors='replace')}"

    def close(self) -> None:
        self._run(self._http.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> DataPlatformClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
