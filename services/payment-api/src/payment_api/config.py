"""Configuration from the environment (pydantic-settings); every field is documented in README."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from ticketing_events import db

from payment_api.auth import DEV_AUDIENCE, DEV_ISSUER, DEV_JWT_SECRET


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    service_name: str = "payment-api"
    log_level: str = "INFO"
    # The standard OpenTelemetry switch: when true, no instrumentation is installed either.
    otel_sdk_disabled: bool = False

    # PostgreSQL (postgresql+psycopg://...) or SQLite (sqlite:///path), the embedded default.
    database_url: str = "sqlite:///./.demo/payment.db"
    # PostgreSQL only: the schema (search_path) holding the tables; None means the server default.
    database_schema: str | None = None
    database_pool_size: int = Field(default=10, ge=1)
    database_max_overflow: int = Field(default=20, ge=0)
    # PostgreSQL only: bounds on waiting for the database (0 disables the statement and lock ones).
    database_connect_timeout_s: int = Field(default=db.CONNECT_TIMEOUT_S, ge=2)
    database_statement_timeout_ms: int = Field(default=db.STATEMENT_TIMEOUT_MS, ge=0)
    database_lock_timeout_ms: int = Field(default=db.LOCK_TIMEOUT_MS, ge=0)

    redis_url: str = "redis://127.0.0.1:6379/0"
    # Prepended to every Redis key; empty in production (the documented layout), set by tests.
    redis_key_prefix: str = ""

    kafka_bootstrap_servers: str = "127.0.0.1:9092"

    api_host: str = "0.0.0.0"
    api_port: int = 8000
    api_workers: int = Field(default=1, ge=1)
    # Threads running the (sync) endpoints per process (anyio's default is 40).
    api_threads: int = Field(default=40, ge=1)
    # Larger request bodies are refused with 413 before they are read (every body is a small
    # JSON object).
    api_max_body_bytes: int = Field(default=16384, ge=256)

    hold_seconds: int = Field(default=300, gt=0)

    # Per-user limits (0 turns one off). Live reservations: held and not lapsed; past the cap
    # a reservation is 429 until a hold ends. Writes (POST): a fixed window per user in Redis.
    reservation_limit_per_user: int = Field(default=4, ge=0)
    rate_limit_writes_per_user: int = Field(default=60, ge=0)
    rate_limit_window_s: int = Field(default=10, ge=1)

    queue_activator_enabled: bool = True
    queue_activate_batch: int = Field(default=100, gt=0)
    queue_activate_interval_s: float = Field(default=1.0, gt=0)
    queue_active_ttl_s: int = Field(default=600, gt=0)
    queue_waiting_ttl_s: int = Field(default=3600, gt=0)
    queue_leader_ttl_s: float = Field(default=5.0, gt=0)

    outbox_relay_enabled: bool = True
    # ``payment-api relay`` only: serve /metrics on this port (0: none).
    relay_metrics_port: int = Field(default=0, ge=0, le=65535)
    outbox_batch_size: int = Field(default=200, gt=0)
    outbox_sweep_interval_s: float = Field(default=1.0, gt=0)
    # Once woken, wait this long so a burst of commits goes out as one batch.
    outbox_coalesce_ms: float = Field(default=10.0, ge=0)
    outbox_publish_timeout_s: float = Field(default=10.0, gt=0)
    outbox_retention_s: int = Field(default=86400, ge=0)
    outbox_prune_interval_s: float = Field(default=60.0, gt=0)

    idempotency_retention_s: int = Field(default=86400, gt=0)
    # Rows per transaction when pruning the outbox and the idempotency keys.
    prune_batch_size: int = Field(default=5000, gt=0)

    # Authentication (payment_api/auth.py): a JWT bearer token, user id = ``sub``. Keys by
    # precedence: a JWKS URL (an identity provider), a PEM public key, a shared HS256 secret.
    # The secret's default is the development key shared by the local stack, the tests and
    # the kind profile: anyone can mint tokens with it, so production sets a JWKS URL or key.
    auth_jwks_url: str | None = None
    auth_jwt_public_key: str | None = None
    auth_jwt_secret: str | None = DEV_JWT_SECRET
    auth_jwt_issuer: str = DEV_ISSUER
    auth_jwt_audience: str = DEV_AUDIENCE
    # Comma-separated; empty: HS256 with a secret, the asymmetric ones with a key or JWKS.
    auth_jwt_algorithms: str = ""
    auth_jwt_leeway_s: float = Field(default=30.0, ge=0, le=300)

    problem_type_base: str = "urn:ticketing:problem:"

    # events: the consumers do the post-payment steps. sync: the payment request does them
    # after its commit, before answering (needs the sync-post-processing extra).
    post_processing: Literal["events", "sync"] = "events"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
