"""The AsyncAPI document: generated from the registry and models, committed, and valid for the
AsyncAPI project's own parser."""

from __future__ import annotations

import difflib
import subprocess
from pathlib import Path

import yaml
from ticketing_events.asyncapi import render
from ticketing_events.consumer import DeadLetterReason
from ticketing_events.topics import CONSUMER_GROUPS, TOPIC_EVENTS, all_topics

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "asyncapi.yaml"
VALIDATE = ROOT / "scripts" / "asyncapi-validate.sh"


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    """Run @asyncapi/parser on ``path`` (the script installs it into the cache if missing)."""
    return subprocess.run(
        ["bash", str(VALIDATE), str(path)], capture_output=True, text=True, timeout=600
    )


def test_the_committed_document_is_the_generated_one():
    committed, generated = DOC.read_text(), render()
    diff = difflib.unified_diff(
        committed.splitlines(), generated.splitlines(), "committed", "generated", lineterm=""
    )
    assert committed == generated, "run `make asyncapi`:\n" + "\n".join(list(diff)[:60])


def test_the_asyncapi_parser_accepts_the_document():
    pairs = [(t, g) for g in CONSUMER_GROUPS.values() for t in g.topics]
    run = validate(DOC)
    assert run.returncode == 0, run.stdout + run.stderr
    channels, operations = len(all_topics()), len(TOPIC_EVENTS) + 4 * len(pairs)
    messages = 3 * len(TOPIC_EVENTS)  # each event, its dead letter, its redriven copy
    expected = f"{channels} channels, {operations} operations, {messages} messages"
    assert f"valid AsyncAPI 3.1.0: {expected}" in run.stdout


def test_the_asyncapi_parser_rejects_a_broken_document(tmp_path):
    broken = tmp_path / "asyncapi.yaml"
    broken.write_text(DOC.read_text().replace("schemas/EventHeaders", "schemas/Missing", 1))
    run = validate(broken)
    assert run.returncode == 1
    assert "invalid-ref" in run.stdout


def test_the_document_covers_every_topic_group_and_header():
    doc = yaml.safe_load(DOC.read_text())
    assert {c["address"] for c in doc["channels"].values()} == set(all_topics())
    for group in CONSUMER_GROUPS.values():
        for topic in group.topics:
            receive = doc["operations"][f"{group.name}.receive.{topic}"]
            assert receive["bindings"]["kafka"]["groupId"]["enum"] == [group.name]
    schemas = doc["components"]["schemas"]
    assert "traceparent" in schemas["EventHeaders"]["properties"]
    reasons = schemas["DeadLetterHeaders"]["properties"]["dlq.reason"]["enum"]
    assert reasons == [r.value for r in DeadLetterReason]
    payment = doc["components"]["messages"]["PaymentSucceeded"]
    assert payment["payload"] == {"$ref": "#/components/schemas/PaymentSucceeded"}
    assert "seat_id" in schemas["PaymentSucceededPayload"]["properties"]
    assert "key" in payment["bindings"]["kafka"]
