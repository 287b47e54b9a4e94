"""The ``ConsumerLagAutoscaler`` resource: its spec as the operator reads it.

The CRD's OpenAPI schema (``charts/ticketing/crds/``) rejects bad specs at the API server; this
model repeats its rules so that an object stored before the schema existed, or a schema that
was never applied, fails here with a status condition instead of a crash.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

GROUP = "autoscaling.ticketing.dev"
VERSION = "v1alpha1"
PLURAL = "consumerlagautoscalers"
KIND = "ConsumerLagAutoscaler"


class OffsetResetPolicy(StrEnum):
    """Where the target's consumers start on a partition without a committed offset."""

    EARLIEST = "earliest"
    LATEST = "latest"


class AutoscalerSpec(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    # The Deployment to scale, in the resource's namespace.
    deployment: str = Field(min_length=1, max_length=253)
    consumer_group: str = Field(min_length=1)
    topics: tuple[str, ...] = Field(min_length=1)
    # Lag one replica is expected to handle (KEDA's default: 10).
    lag_threshold: int = Field(default=10, ge=1)
    # Lag at or below this keeps a target at zero, or lets it go to zero (minReplicas 0).
    activation_lag_threshold: int = Field(default=0, ge=0)
    min_replicas: int = Field(default=0, ge=0)
    max_replicas: int = Field(default=100, ge=1)
    allow_idle_consumers: bool = False
    limit_to_partitions_with_lag: bool = False
    offset_reset_policy: OffsetResetPolicy = OffsetResetPolicy.LATEST
    scale_down_stabilization_seconds: int = Field(default=300, ge=0, le=3600)
    polling_interval_seconds: int = Field(default=30, ge=1, le=3600)

    @model_validator(mode="after")
    def _consistent(self) -> AutoscalerSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError("minReplicas must not exceed maxReplicas")
        if self.allow_idle_consumers and self.limit_to_partitions_with_lag:
            raise ValueError("allowIdleConsumers and limitToPartitionsWithLag exclude each other")
        return self
