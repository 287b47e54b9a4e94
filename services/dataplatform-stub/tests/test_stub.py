"""The stub as a real server on a free loopback port: records, dedupes, knobs, counters."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from dataplatform_stub.control import StubControl, running_stub


@pytest.fixture
def stub() -> Iterator[StubControl]:
    with running_stub() as control:
        yield control


def post(client: httpx.Client, url: str, key: str | None, body: bytes = b'{"n": 1}') -> int:
    headers = {"Idempotency-Key": key} if key else {}
    return client.post(url, content=body, headers=headers).status_code


def test_payments_are_recorded_once_per_key_and_duplicates_counted(stub):
    with httpx.Client() as client:
        assert post(client, stub.payments_url, "a", b'{"amount": 5}') == 201
        assert post(client, stub.payments_url, "b") == 201
        assert post(client, stub.payments_url, "a", b'{"amount": 6}') == 200
        assert post(client, stub.payments_url, None) == 400
        assert post(client, stub.payments_url, "c", b"not json") == 400
    received = stub.received(keys=True)
    assert {k: received[k] for k in ("received", "unique", "duplicates", "requests")} == {
        "received": 3,
        "unique": 2,
        "duplicates": 1,
        "requests": 5,
    }
    assert received["keys"] == {"a": 2, "b": 1}
    assert stub.payment("a") == {"body": {"amount": 5}, "received": 2}, "the first body is kept"
    assert stub.payment("zzz") is None
    stub.reset()
    assert stub.received()["received"] == 0


def test_errors_are_injected_at_the_given_rate_and_can_be_turned_off(stub):
    assert stub.knobs(error_rate=1)["error_rate"] == 1
    with httpx.Client() as client:
        statuses = {post(client, stub.payments_url, f"k{i}") for i in range(20)}
        assert statuses <= {500, 503}
        stub.knobs(error_rate=0.5)
        statuses = [post(client, stub.payments_url, f"h{i}") for i in range(200)]
        assert 50 < statuses.count(201) < 150
        stub.knobs(error_rate=0)
        assert post(client, stub.payments_url, "k0") == 201
    assert stub.received()["errors"] == 20 + statuses.count(500) + statuses.count(503)


def test_knobs_are_validated(stub):
    response = httpx.put(f"{stub.base_url}/admin/knobs", json={"error_rate": 2})
    assert response.status_code == 422
    response = httpx.put(f"{stub.base_url}/admin/knobs", json={"nope": 1})
    assert response.status_code == 422
    assert stub.knobs() == {"latency_ms": 0.0, "error_rate": 0.0, "hang_rate": 0.0}


def test_a_hung_request_never_answers_until_the_knob_is_turned_off(stub):
    stub.knobs(hang_rate=1)
    with httpx.Client(timeout=0.5) as client, pytest.raises(httpx.ReadTimeout):
        post(client, stub.payments_url, "k")
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(post, httpx.Client(timeout=10), stub.payments_url, "k")
        deadline = time.monotonic() + 5
        while stub.received()["hung"] < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not waiting.done()
        stub.knobs(hang_rate=0)
        assert waiting.result(5) == 503
    assert stub.received()["unique"] == 0


def test_latency_from_the_environment_and_max_concurrency_is_counted():
    with running_stub(latency_ms=200) as stub, httpx.Client(timeout=10) as client:
        assert stub.knobs()["latency_ms"] == 200
        with ThreadPoolExecutor(20) as pool:
            start = time.monotonic()
            statuses = list(pool.map(lambda i: post(client, stub.payments_url, f"k{i}"), range(20)))
            elapsed = time.monotonic() - start
        assert statuses == [201] * 20
        assert 0.2 <= elapsed < 1.5, "the twenty requests overlapped"
        received = stub.received()
        assert received["max_in_flight"] == 20
        assert received["in_flight"] == 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def test_it_can_sustain_well_over_a_thousand_requests_per_second_at_50_ms():
    """The load generator here (Python threads) is slower than the stub, so the stub's
    capacity is measured as the requests it answers per second of its own CPU time."""
    count, concurrency = 3000, 64
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with running_stub(latency_ms=50) as stub, httpx.Client(limits=limits) as client:
        assert stub.pid is not None
        cpu = cpu_seconds(stub.pid)
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(lambda i: post(client, stub.payments_url, f"k{i}"), range(count)))
        capacity = count / (cpu_seconds(stub.pid) - cpu)
        received = stub.received()
    assert received["unique"] == count
    assert received["max_in_flight"] == concurrency, "the requests overlapped in the stub"
    assert capacity > 2000, f"{capacity:.0f} requests per CPU second"
