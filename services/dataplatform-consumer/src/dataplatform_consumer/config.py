"""Configuration from the environment (pydantic-settings); every field is documented in README.

The client's settings (adapters.py) besides the app's, so they are a module of their own."""

from __future__ import annotations

from pydantic import Field
from ticketing_events.service import ServiceSettings


class Settings(ServiceSettings):
    # Where each payment is POSTed.
    dataplatform_url: str = "http://127.0.0.1:8090/payments"
    # Per request: to connect, and between reads of the answer.
    dataplatform_timeout_s: float = Field(default=5.0, gt=0)
    # Requests in flight at most (one consumer process).
    dataplatform_concurrency: int = Field(default=32, ge=1)
    # Attempts per event for 5xx, 408, 429, timeouts and connection errors; then dead-lettered.
    # Ten over about 20 s of backoff: a platform failing one request in four dead-letters about
    # one payment in a million (five attempts over 1.5 s lost one in a thousand: the chaos run).
    dataplatform_max_attempts: int = Field(default=10, ge=1)
    dataplatform_backoff_initial_s: float = Field(default=0.1, gt=0)
    dataplatform_backoff_max_s: float = Field(default=5.0, gt=0)
    # Consecutive failed requests that open the breaker; keep it <= the attempts, so a platform
    # that fails everything opens the breaker (pause) before any event spends its budget (DLQ).
    dataplatform_breaker_threshold: int = Field(default=5, ge=1)
    # How long the open breaker refuses requests before one probe may go.
    dataplatform_breaker_reset_s: float = Field(default=5.0, gt=0)
