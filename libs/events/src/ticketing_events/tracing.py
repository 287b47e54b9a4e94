"""W3C trace context through Kafka headers, and the process-wide tracer set-up."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

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


# The propagators of OTEL_PROPAGATORS's default, as set up at import: while they are the global
# ones, a lone version-00 traceparent (what our producer writes) is read without them.
_DEFAULT_TEXTMAP = (
    propagate.get_global_textmap()
    if os.environ.get("OTEL_PROPAGATORS", "tracecontext,baggage") == "tracecontext,baggage"
    else None
)
_TRACEPARENT_00 = re.compile(rb"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


def extract(headers: Mapping[str, bytes]) -> Context:
    """The remote context carried by a message's headers (empty when there is none)."""
    value = headers.get("traceparent")
    if (
        value is not None
        and "tracestate" not in headers
        and "baggage" not in headers
        and propagate.get_global_textmap() is _DEFAULT_TEXTMAP
        and (match := _TRACEPARENT_00.fullmatch(value))
    ):
        # What the W3C propagators would return, for well under half their cost per message.
        trace_id, span_id = int(match[1], 16), int(match[2], 16)
        if trace_id and span_id:
            remote = SpanContext(trace_id, span_id, True, TraceFlags(int(match[3], 16)))
            return trace.set_span_in_context(NonRecordingSpan(remote), Context())
    return propagate.extract(headers, getter=_GETTER)


def configure_tracing(
    service_name: str, *, processor: SpanProcessor | None = None
) -> TracerProvider | None:
    """Install the global tracer provider for this process.

    Exports OTLP (endpoint from the standard ``OTEL_EXPORTER_OTLP_*`` variables) through a
    batch processor unless ``OTEL_TRACES_EXPORTER=none``; ``processor`` replaces that (tests).
    ``OTEL_SDK_DISABLED=true`` leaves tracing off. The sampler is the SDK's, from
    ``OTEL_TRACES_SAMPLER`` and ``OTEL_TRACES_SAMPLER_ARG`` (default ``parentbased_always_on``);
    with ``parentbased_traceidratio`` the consumers follow the decision in each ``traceparent``.
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
