"""Configuration from the environment (pydantic-settings); services extend these."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class KafkaSettings(BaseSettings):
    """``KAFKA_*``: where the brokers are."""

    model_config = SettingsConfigDict(env_prefix="KAFKA_", extra="ignore")

    bootstrap_servers: str = "127.0.0.1:9092"
    client_id: str = "ticketing"


class ConsumerSettings(BaseSettings):
    """``CONSUMER_*``: how the consumer runtime polls, retries and reports health."""

    model_config = SettingsConfigDict(env_prefix="CONSUMER_", extra="ignore")

    batch_size: int = 500
    poll_timeout_s: float = 0.5
    # Handler errors: bounded retries, then the dead-letter topic.
    max_attempts: int = 5
    backoff_initial_s: float = 0.1
    backoff_max_s: float = 5.0
    health_host: str = "0.0.0.0"
    health_port: int = 8080
    # Liveness fails when the poll loop has not turned for this long.
    liveness_stale_s: float = 60.0
    auto_offset_reset: str = "earliest"
    session_timeout_ms: int = 45000
    # How soon a topic created after the consumer started (the chart's topic hook runs after
    # the Pods) is found: librdkafka's default is five minutes.
    metadata_refresh_ms: int = 10000
    max_poll_interval_ms: int = 300000
    # An asynchronous commit Kafka has not confirmed by then is sent again: librdkafka can
    # drop the reply of one sent while the group coordinator moves (a broker crash).
    commit_resend_s: float = 10.0
    # How often librdkafka reports statistics, the source of the lag gauge (0: never).
    stats_interval_ms: int = 5000


class TopicSettings(BaseSettings):
    """``TOPIC_*``: how ``ensure_topics`` replicates the topics it creates. Unset, replication
    follows the cluster's size (up to 3) and ``min.insync.replicas`` is one less (at least 1)."""

    model_config = SettingsConfigDict(env_prefix="TOPIC_", extra="ignore")

    replication_factor: int | None = None
    min_insync_replicas: int | None = None
