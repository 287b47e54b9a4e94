"""Configuration from the environment (pydantic-settings)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """``LOG_LEVEL``, ``AUTOSCALER_*``; Kafka's address is ``KAFKA_BOOTSTRAP_SERVERS``
    (``ticketing_events.settings.KafkaSettings``)."""

    model_config = SettingsConfigDict(extra="ignore")

    log_level: str = "INFO"
    # Each admin request (metadata, committed offsets, list offsets) gives up after this long.
    autoscaler_kafka_timeout_s: float = Field(default=10.0, gt=0)
    # Prometheus metrics (``/metrics``) on this port; 0: not served.
    autoscaler_metrics_port: int = Field(default=9464, ge=0)
