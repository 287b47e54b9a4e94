"""Configuration from the environment (pydantic-settings); every field is documented in README."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Knobs(BaseModel):
    """How badly the platform behaves; changed at runtime with ``PUT /admin/knobs``."""

    model_config = ConfigDict(extra="forbid")

    latency_ms: float = Field(default=0.0, ge=0)
    # Fractions of payment requests answered 500/503, or never answered.
    error_rate: float = Field(default=0.0, ge=0, le=1)
    hang_rate: float = Field(default=0.0, ge=0, le=1)


class Settings(BaseSettings):
    """``DATAPLATFORM_STUB_*``: where to listen and the knobs at start."""

    model_config = SettingsConfigDict(env_prefix="DATAPLATFORM_STUB_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8090
    # /admin/* (knobs, counters, reset) on a port of its own, closed to clients in the chart.
    admin_port: int = 8091
    latency_ms: float = Field(default=0.0, ge=0)
    error_rate: float = Field(default=0.0, ge=0, le=1)
    hang_rate: float = Field(default=0.0, ge=0, le=1)
    # Bodies kept (the latest); keys and their counts are all kept, for dedupe.
    max_bodies: int = Field(default=10_000, ge=0)
    log_level: str = "warning"

    def knobs(self) -> Knobs:
        return Knobs.model_validate(self.model_dump(include=set(Knobs.model_fields)))
