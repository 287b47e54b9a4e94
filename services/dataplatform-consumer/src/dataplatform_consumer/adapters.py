"""The data platform over HTTP: a thread pool of at most ``concurrency`` requests in flight,
retries with backoff, the circuit breaker, and one CLIENT span per request."""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType

import httpx
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

from dataplatform_consumer.config import Settings
from dataplatform_consumer.handlers import CircuitBreaker, Verdict, payment_request, verdict_for

log = structlog.get_logger("dataplatform_consumer")
tracer = trace.get_tracer("dataplatform_consumer")


class PlatformUnavailable(Exception):
    """The breaker is open: the platform is down. An outage error: the runtime pauses."""


class PlatformRejected(PermanentError):
    """The platform refused this payment (a 4xx not about the deployment): dead-lettered at once."""


class PlatformMisconfigured(DeploymentError):
    """The platform's answer says the deployment is wrong (``Verdict.MISCONFIGURED``): the
    runtime pauses, reports not ready and dead-letters nothing until it is fixed."""


class DataPlatformClient:
    """Sends payments; ``send_all`` returns each event's error, or None once it is accepted.

    Threads rather than asyncio: httpx's sync client costs far less CPU per request here.
    """

    def __init__(self, settings: Settings) -> None:
        self.url = httpx.URL(settings.dataplatform_url)
        self.settings = settings
        self.breaker = CircuitBreaker(
            settings.dataplatform_breaker_threshold, settings.dataplatform_breaker_reset_s
        )
        limit = settings.dataplatform_concurrency
        self._http = httpx.Client(
            timeout=settings.dataplatform_timeout_s,
            limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit),
        )
        self._pool = ThreadPoolExecutor(limit, thread_name_prefix="dataplatform")
        # The last answer, when it said the deployment is wrong: what the open breaker reports.
        self._misconfigured: str | None = None
        self._span_attributes: dict[str, str | int] = {
            "http.request.method": "POST",
            "url.full": str(self.url),
            "server.address": self.url.host,
            "server.port": self.url.port or (443 if self.url.scheme == "https" else 80),
        }

    def send_all(self, batch: Sequence[Delivery[PaymentSucceeded]]) -> list[Exception | None]:
        return list(self._pool.map(self._send, batch))

    def _send(self, delivery: Delivery[PaymentSucceeded]) -> Exception | None:
        headers, body = payment_request(delivery.event)
        s = self.settings
        attempt = 0
        while self.breaker.allow():
            attempt += 1
            verdict, detail = Verdict.RETRY, ""
            try:
                verdict, detail = self._post(delivery, headers, body, attempt)
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
            time.sleep(backoff_delay(attempt, initial, cap))
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

    def _post(
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
                response = self._http.post(self.url, content=body, headers=carrier)
            except httpx.RequestError as exc:  # timeouts, lost connections, undecodable answers
                span.set_attribute("error.type", type(exc).__qualname__)
                span.set_status(StatusCode.ERROR, str(exc))
                return Verdict.RETRY, f"{type(exc).__name__}: {exc}"
            status = response.status_code
            span.set_attribute("http.response.status_code", status)
            verdict = verdict_for(status)
            if verdict is Verdict.DONE:
                return verdict, ""
            span.set_attribute("error.type", str(status))
            span.set_status(StatusCode.ERROR)
            return verdict, f"HTTP {status}: {response.text[:200]}"

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._http.close()

    def __enter__(self) -> DataPlatformClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
