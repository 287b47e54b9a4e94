"""The AsyncAPI 3 document of the events, built from the topic and group registry and the
pydantic models: ``make asyncapi`` writes it to docs/asyncapi.yaml.

Channels are the topics, each group's dead-letter topics and redrive topics; messages carry
the JSON schema of their payload, their key and their headers (the envelope's, the W3C trace
context, the dead-letter and redrive headers).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pydantic.json_schema import models_json_schema

from ticketing_events import schemas
from ticketing_events.consumer import DeadLetterReason
from ticketing_events.dlq.records import REDRIVE_FROM
from ticketing_events.topics import CONSUMER_GROUPS, TOPIC_EVENTS, dlq_topic, redrive_topic

ASYNCAPI_VERSION = "3.1.0"
KAFKA_BINDING = "0.5.0"
PRODUCER = "payment-api"  # every event leaves through its transactional outbox relay
REDRIVER = "ticketing-dlq"

Json = dict[str, Any]

_TRACE: Json = {
    "description": "the W3C trace context: one trace per payment, through every group",
    "location": "$message.header#/traceparent",
}

_TEXT: Json = {"type": "string"}

# Headers of every event, as EventProducer writes them.
EVENT_HEADERS: dict[str, Json] = {
    "event_type": _TEXT | {"description": "the event type, the topic's name"},
    "event_id": _TEXT | {"description": "the event's id (UUIDv7), the idempotency key"},
    "schema_version": _TEXT
    | {"description": "MAJOR.MINOR of the payload schema", "pattern": r"^\d+\.\d+$"},
    "content-type": {"type": "string", "const": "application/json"},
    "traceparent": _TEXT
    | {
        "description": "W3C trace context of the publish span: one trace per payment",
        "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
    },
    "tracestate": _TEXT | {"description": "W3C trace state, when the trace has one"},
}

# Headers the consumer runtime adds to a dead letter (ConsumerRuntime._dead_letter_record).
DLQ_HEADERS: dict[str, Json] = {
    "dlq.reason": {"type": "string", "enum": [r.value for r in DeadLetterReason]},
    "dlq.error": _TEXT | {"description": "the error, at most 500 characters"},
    "dlq.attempts": _TEXT | {"description": "handler attempts spent (decimal)"},
    "dlq.group": _TEXT | {"description": "the consumer group that failed the event"},
    "dlq.original.topic": _TEXT | {"description": "where the group read the record"},
    "dlq.original.partition": _TEXT | {"description": "its partition (decimal)"},
    "dlq.original.offset": _TEXT | {"description": "its offset (decimal)"},
    "dlq.failed_at": _TEXT | {"description": "when it was dead-lettered (ISO 8601, UTC)"},
    "dlq.truncated": _TEXT
    | {
        "description": "what was left out to fit the topic's max.message.bytes: `value`, or "
        "`value,key,headers`; the original is at dlq.original.*",
        "enum": ["value", "value,key,headers"],
    },
    "dlq.original.bytes": _TEXT | {"description": "the original value's size, when truncated"},
}

REDRIVE_HEADERS: dict[str, Json] = {
    REDRIVE_FROM: _TEXT
    | {"description": "the dead letter it came from, `dlq-topic/partition/offset`"},
}


def _headers(properties: dict[str, Json], required: list[str], description: str) -> Json:
    return {
        "type": "object",
        "description": description,
        "properties": properties,
        "required": required,
    }


def _ref(kind: str, name: str) -> Json:
    return {"$ref": f"#/components/{kind}/{name}"}


def _key(description: str) -> Json:
    key = _TEXT | {"description": description}
    return {"bindings": {"kafka": {"key": key, "bindingVersion": KAFKA_BINDING}}}


def _components() -> Json:
    _, top = models_json_schema(
        [(cls, "validation") for cls in TOPIC_EVENTS.values()],
        ref_template="#/components/schemas/{model}",
    )
    components: Json = {
        "schemas": {
            **top["$defs"],
            "EventHeaders": _headers(
                EVENT_HEADERS,
                ["event_type", "event_id", "schema_version", "content-type"],
                "Kafka headers of every event (UTF-8 values)",
            ),
            "DeadLetterHeaders": _headers(
                {**EVENT_HEADERS, **DLQ_HEADERS},
                [h for h in DLQ_HEADERS if h not in ("dlq.truncated", "dlq.original.bytes")],
                "The original record's headers (those it had) and the runtime's dlq.* headers",
            ),
            "RedrivenHeaders": _headers(
                {**EVENT_HEADERS, **REDRIVE_HEADERS},
                list(REDRIVE_HEADERS),
                "The dead letter's original headers, without dlq.*, and where it came from",
            ),
        },
        "messages": {},
    }
    for cls in TOPIC_EVENTS.values():
        name = cls.__name__
        as_sent = "; or whatever bytes the dead letter held (undecodable, invalid, a version "
        components["messages"][name] = {
            "name": cls.TYPE,
            "title": name,
            "contentType": "application/json",
            "headers": _ref("schemas", "EventHeaders"),
            "payload": _ref("schemas", name),
            "correlationId": _TRACE,
            **_key("the seat id: a seat's events stay ordered in one partition"),
        }
        components["messages"][f"{name}DeadLetter"] = {
            "name": f"{cls.TYPE}.dead-letter",
            "title": f"{name} dead letter",
            "contentType": "application/json",
            "headers": _ref("schemas", "DeadLetterHeaders"),
            "payload": {
                "description": f"the original value: usually a {name}{as_sent}not read); "
                "absent when dlq.truncated names `value`",
                "anyOf": [_ref("schemas", name), {"type": "null"}, {}],
            },
            **_key("the original's key; absent when dlq.truncated names `key`"),
        }
        components["messages"][f"{name}Redriven"] = {
            "name": f"{cls.TYPE}.redriven",
            "title": f"{name} redriven",
            "contentType": "application/json",
            "headers": _ref("schemas", "RedrivenHeaders"),
            "payload": {
                "description": f"the original value, the original's when the dead letter was "
                f"truncated: usually a {name}{as_sent}not read)",
                "anyOf": [_ref("schemas", name), {}],
            },
            "correlationId": _TRACE,
            **_key("the original's key"),
        }
    return components


def _group_id(group: str) -> Json:
    group_id = {"type": "string", "enum": [group]}
    return {"bindings": {"kafka": {"groupId": group_id, "bindingVersion": KAFKA_BINDING}}}


def document() -> Json:
    """The AsyncAPI 3 document, as a JSON-compatible dict."""
    channels: Json = {}
    operations: Json = {}

    def channel(address: str, message: str, description: str) -> Json:
        channels[address] = {
            "address": address,
            "description": description,
            "messages": {message: _ref("messages", message)},
            "bindings": {"kafka": {"topic": address, "bindingVersion": KAFKA_BINDING}},
        }
        return {"$ref": f"#/channels/{address}"}

    for topic, cls in TOPIC_EVENTS.items():
        name = cls.__name__
        ref = channel(topic, name, f"{name} events, one type per topic")
        operations[f"{PRODUCER}.send.{topic}"] = {
            "action": "send",
            "channel": ref,
            "summary": f"{PRODUCER} publishes {topic} from its transactional outbox",
            "messages": [{"$ref": f"#/channels/{topic}/messages/{name}"}],
        }
    for group in CONSUMER_GROUPS.values():
        for topic in group.topics:
            name = TOPIC_EVENTS[topic].__name__
            dlq, redrive = dlq_topic(topic, group.name), redrive_topic(topic, group.name)
            dead, redriven = f"{name}DeadLetter", f"{name}Redriven"
            dlq_ref = channel(dlq, dead, f"{group.name}'s dead letters of {topic}")
            redrive_ref = channel(
                redrive, redriven, f"{topic} dead letters sent back to {group.name} alone"
            )
            source_ref = {"$ref": f"#/channels/{topic}"}
            operations[f"{group.name}.receive.{topic}"] = {
                "action": "receive",
                "channel": source_ref,
                "summary": f"{group.service} handles {topic} in group {group.name}",
                "messages": [{"$ref": f"#/channels/{topic}/messages/{name}"}],
                **_group_id(group.name),
            }
            operations[f"{group.name}.dead-letter.{topic}"] = {
                "action": "send",
                "channel": dlq_ref,
                "summary": f"{group.service} dead-letters what it cannot handle",
                "messages": [{"$ref": f"#/channels/{dlq}/messages/{dead}"}],
            }
            operations[f"{REDRIVER}.redrive.{topic}.{group.name}"] = {
                "action": "send",
                "channel": redrive_ref,
                "summary": f"`{REDRIVER} redrive` sends dead letters back, once each",
                "messages": [{"$ref": f"#/channels/{redrive}/messages/{redriven}"}],
            }
            operations[f"{group.name}.receive.{redrive}"] = {
                "action": "receive",
                "channel": redrive_ref,
                "summary": f"{group.service} handles its redriven events like any other",
                "messages": [{"$ref": f"#/channels/{redrive}/messages/{redriven}"}],
                **_group_id(group.name),
            }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "Ticketing events",
            "version": schemas.CURRENT_VERSION,
            "description": (schemas.__doc__ or "").strip(),
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka",
                "description": "the local broker of `make infra-up`",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": _components(),
    }


def render() -> str:
    """The document as YAML, keys in the order built."""
    import yaml  # type: ignore[import-untyped]

    class Dumper(yaml.SafeDumper):  # type: ignore[misc]
        """Multi-line strings (the docstrings) as literal blocks."""

    def text(dumper: Any, value: str) -> Any:
        return dumper.represent_scalar(
            "tag:yaml.org,2002:str", value, style="|" if "\n" in value else None
        )

    Dumper.add_representer(str, text)
    header = "# Generated by `make asyncapi` from ticketing_events; do not edit.\n"
    return header + str(yaml.dump(document(), Dumper=Dumper, sort_keys=False, width=100))


def main(argv: list[str] | None = None) -> int:
    """Write the document to PATH, or with ``--check`` tell whether PATH is up to date."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("path", type=Path)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not args.path.exists() or args.path.read_text() != text:
            print(f"{args.path} is out of date: run `make asyncapi`", file=sys.stderr)
            return 1
        return 0
    args.path.write_text(text)
    print(f"wrote {args.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
