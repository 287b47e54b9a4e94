"""The stub as a real server on a free loopback port: records, dedupes, knobs, counters.
Its capacity is a figure of bench/stub_bench.py, not of these tests."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

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


def wait_until(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


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


def test_admin_endpoints_are_served_on_the_admin_port_only(stub):
    with httpx.Client() as client:
        for method, path in (("GET", "/admin/received"), ("PUT", "/admin/knobs")):
            assert client.request(method, f"{stub.base_url}{path}", json={}).status_code == 404
        assert client.post(f"{stub.base_url}/admin/reset").status_code == 404
        assert post(client, f"{stub.admin_url}/payments", "a") == 404
        assert client.get(f"{stub.admin_url}/admin/received").status_code == 200
        assert post(client, stub.payments_url, "a") == 201
    assert stub.received()["unique"] == 1


def test_bodies_are_kept_up_to_the_cap_and_every_key_still_dedupes():
    with running_stub(max_bodies=2) as stub, httpx.Client() as client:
        for key in ("a", "b", "c"):
            assert post(client, stub.payments_url, key, f'{{"key": "{key}"}}'.encode()) == 201
        assert post(client, stub.payments_url, "a") == 200, "a key outlives its body"
        received = stub.received(keys=True)
        assert stub.payment("a") == {"body": None, "received": 2}, "the oldest body went"
        assert stub.payment("c") == {"body": {"key": "c"}, "received": 1}
    assert received["bodies"] == 2
    assert received["keys"] == {"a": 2, "b": 1, "c": 1}
    assert (received["received"], received["unique"], received["duplicates"]) == (4, 3, 1)


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
    response = httpx.put(f"{stub.admin_url}/admin/knobs", json={"error_rate": 2})
    assert response.status_code == 422
    response = httpx.put(f"{stub.admin_url}/admin/knobs", json={"nope": 1})
    assert response.status_code == 422
    assert stub.knobs() == {"latency_ms": 0.0, "error_rate": 0.0, "hang_rate": 0.0}


def test_a_hung_request_never_answers_until_the_knob_is_turned_off(stub):
    stub.knobs(hang_rate=1)
    with httpx.Client(timeout=0.5) as client, pytest.raises(httpx.ReadTimeout):
        post(client, stub.payments_url, "k")
    with ThreadPoolExecutor(1) as pool, httpx.Client(timeout=60) as client:
        waiting = pool.submit(post, client, stub.payments_url, "k")
        wait_until(lambda: stub.received()["hung"] == 2, "the second request to hang")
        assert not waiting.done()
        stub.knobs(hang_rate=0)
        assert waiting.result(60) == 503
    assert stub.received()["unique"] == 0


def test_latency_from_the_environment_and_max_concurrency_is_counted():
    with running_stub(latency_ms=200) as stub, httpx.Client(timeout=60) as client:
        assert stub.knobs()["latency_ms"] == 200
        # Hung requests stay in flight until the knob changes: all twenty at once.
        stub.knobs(hang_rate=1)
        with ThreadPoolExecutor(20) as pool:
            answers = [pool.submit(post, client, stub.payments_url, f"k{i}") for i in range(20)]
            wait_until(lambda: stub.received()["hung"] == 20, "twenty hung requests")
            assert stub.received()["in_flight"] == 20
            stub.knobs(hang_rate=0)
            assert [a.result(60) for a in answers] == [503] * 20
        received = stub.received()
    assert (received["in_flight"], received["max_in_flight"], received["hung"]) == (0, 20, 20)


def test_many_concurrent_requests_are_each_recorded_once_within_the_clients_limit():
    count, concurrency = 600, 64
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with running_stub(latency_ms=50) as stub, httpx.Client(limits=limits, timeout=60) as client:
        with ThreadPoolExecutor(concurrency) as pool:
            keys = [f"k{i}" for i in range(count)]
            statuses = list(pool.map(lambda key: post(client, stub.payments_url, key), keys))
        received = stub.received()
    assert statuses == [201] * count
    assert (received["unique"], received["duplicates"], received["in_flight"]) == (count, 0, 0)
    assert 1 <= received["max_in_flight"] <= concurrency
