"""W3C trace context through Kafka headers, and the process-wide tracer set-up."""

from __future__ import annotations

import os
from collections.abc import Mapping

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

Headers = list[tuple[str, str | bytes | None]]

# Attribute names of the OpenTelemetry messaging semantic conventions.
MESSAGING_SYSTEM = "messaging.system"
MESSAGING_OPERATION_TYPE = "messaging.operation.type"
MESSAGING_OPERATION_NAME = "messaging.operation.name"
MESSAGING_DESTINATION = "messaging.destination.name"
MESSAGING_PARTITION = "messaging.destination.partition.id"
MESSAGING_GROUP = "messaging.consumer.group.name"
MESSAGING_MESSAGE_ID = "messaging.message.id"
MESSAGING_KAFKA_KEY = "messaging.kafka.message.key"
MESSAGING_KAFKA_OFFSET = "messaging.kafka.offset"


class _HeaderListSetter(Setter[Headers]):
    def set(self, carrier: Headers, key: str, value: str) -> None:
        carrier.append((key, value.encode()))


class _HeaderMapGetter(Getter[Mapping[str, bytes]]):
    def get(self, carrier: Mapping[str, bytes], key: str) -> list[str] | None:
        value = carrier.get(key)
        if value is None:
            return None
        try:
            return [value.decode()]
        except UnicodeDecodeError:  # not a context we can read: as if absent
            return None

    def keys(self, carrier: Mapping[str, bytes]) -> list[str]:
        return list(carrier)


_SETTER = _HeaderListSetter()
_GETTER = _HeaderMapGetter()


def inject(headers: Headers, context: Context | None = None) -> None:
    """Append traceparent/tracestate/baggage of ``context`` (default: current) to ``headers``."""
    propagate.inject(headers, context=context, setter=_SETTER)


def fields() -> set[str]:
    """The header names the configured propagators read and write."""
    return set(propagate.get_global_textmap().fields)


def extract(headers: Mapping[str, bytes]) -> Context:
    """The remote context carried by a message's headers (empty when there is none)."""
    return propagate.extract(headers, getter=_GETTER)


def configure_tracing(
    service_name: str, *, processor: SpanProcessor | None = None
) -> TracerProvider | None:
    """Install the global tracer provider for this process.

    Exports OTLP (endpoint from the standard ``OTEL_EXPORTER_OTLP_*`` variables) through a
    batch processor unless ``OTEL_TRACES_EXPORTER=none``; ``processor`` replaces that (tests).
    ``OTEL_SDK_DISABLED=true`` leaves tracing off. The sampler comes from ``OTEL_TRACES_SAMPLER``.
    """
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return None
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)})
    provider = TracerProvider(resource=resource)
    if processor is None and os.environ.get("OTEL_TRACES_EXPORTER", "otlp") != "none":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        processor = BatchSpanProcessor(OTLPSpanExporter())
    if processor is not None:
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    return provider
