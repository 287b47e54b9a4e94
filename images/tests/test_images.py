"""Each service image runs against the local infrastructure and does its job.

Run by ``images/test.sh`` (after ``images/build.sh``); outside ``make test``'s testpaths.
Containers run with ``--network host`` and a label, so ``images/test.sh`` removes leftovers.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import pytest
import redis
import sqlalchemy
from confluent_kafka.admin import AdminClient
from ticketing_events.producer import EventProducer
from ticketing_events.redis_layout import RedisKeys
from ticketing_events.schemas import Envelope
from ticketing_events.testing import (
    Harness,
    committed_offsets,
    end_offsets,
    payment_failed,
    payment_succeeded,
    read_from,
    reservation_created,
    start_group_at_end,
)
from ticketing_events.topics import (
    CONSUMER_GROUPS,
    PAYMENT_FAILED,
    PAYMENT_SUCCESS,
    RESERVATION_CREATED,
    ConsumerGroup,
    dlq_topic,
    ensure_topics,
)

ROOT = Path(__file__).resolve().parents[2]
PREFIX = os.environ.get("IMAGE_PREFIX", "localhost/ticketing")
TAG = os.environ.get("IMAGE_TAG", "dev")
LABEL = os.environ.get("IMAGES_TEST_LABEL", "ticketing-imgtest")
# docker or podman, with this machine's flags (images/test.sh sets it).
TOOL = shlex.split(os.environ.get("CONTAINER_COMMAND", "podman"))
RUN = uuid.uuid4().hex[:8]
SERVICES = sorted(p.parent.name for p in ROOT.glob("services/*/pyproject.toml"))
OPERATORS = sorted(p.parent.name for p in ROOT.glob("operators/*/Dockerfile"))
CONSUMERS = {g.service: g for g in CONSUMER_GROUPS.values()}
HTTP_SERVICES = {"payment-api", "dataplatform-stub"}
TEMPLATES: dict[str, Callable[[], Envelope]] = {
    PAYMENT_SUCCESS: payment_succeeded,
    PAYMENT_FAILED: payment_failed,
    RESERVATION_CREATED: reservation_created,
}


def container_tool(*args: str, timeout: float = 120) -> str:
    done = subprocess.run([*TOOL, *args], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"{TOOL[0]} {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def image(service: str) -> str:
    return f"{PREFIX}/{service}:{TAG}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


class Container:
    """A detached container of one image on the host network."""

    def __init__(self, service: str, env: dict[str, str], *args: str) -> None:
        flags = [f"--env={k}={v}" for k, v in env.items()]
        self.service = service
        self.id = container_tool(
            "run", "-d", "--network=host", f"--label={LABEL}", *flags, image(service), *args
        )

    def state(self) -> dict[str, object]:
        return dict(json.loads(container_tool("inspect", "--format={{json .State}}", self.id)))

    def logs(self) -> str:
        """The last lines the service wrote, stdout and stderr."""
        done = subprocess.run(
            [*TOOL, "logs", "--tail=40", self.id],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        return done.stdout

    def wait_http(self, url: str, timeout: float = 60) -> None:
        """Until ``url`` answers 200; fails early if the container exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if http_get(url)[0] == 200:
                return
            if not self.state()["Running"]:
                pytest.fail(f"{self.service} exited:\n{self.logs()}")
            time.sleep(0.2)
        pytest.fail(f"{url} did not answer 200 within {timeout}s:\n{self.logs()}")

    def stop(self) -> int:
        """SIGTERM, then the exit code (137 if it had to be killed after 30 s)."""
        container_tool("stop", "--time=30", self.id, timeout=60)
        return int(str(self.state()["ExitCode"]))


@contextmanager
def running(service: str, env: dict[str, str], *args: str) -> Iterator[Container]:
    container = Container(service, env, *args)
    try:
        yield container
        assert container.stop() == 0, f"{service} did not exit cleanly on SIGTERM"
    finally:
        container_tool("rm", "--force", container.id)


def needs_image(service: str) -> None:
    if service not in SERVICES:
        pytest.skip(f"no service {service} under services/")


@pytest.fixture(scope="session")
def schema(database_url: str) -> Iterator[str]:
    """A schema of this run (``payment-api migrate`` creates it), dropped with its tables after."""
    name = f"imgtest_{RUN}"
    yield name
    engine = sqlalchemy.create_engine(database_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    engine.dispose()


@pytest.fixture(scope="session")
def env(
    kafka_bootstrap: str, redis_url: str, database_url: str, schema: str
) -> Iterator[dict[str, str]]:
    """What every container gets: the local infrastructure, a schema and key prefix of this run.

    The run's Redis keys (its prefix, its groups' processed-event markers) go after.
    """
    prefix = f"imgtest-{RUN}:"
    yield {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": prefix,
        "DATABASE_URL": database_url,
        "DATABASE_SCHEMA": schema,
        "OTEL_SDK_DISABLED": "true",
    }
    with redis.Redis.from_url(redis_url) as client:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)


@pytest.fixture(scope="session")
def groups(kafka_bootstrap: str) -> Iterator[list[ConsumerGroup]]:
    """The run's consumer groups; they and their dead-letter topics go after."""
    made: list[ConsumerGroup] = []
    yield made
    if made:
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        dlqs = [dlq_topic(t, g.name) for g in made for t in g.topics]
        for future in admin.delete_topics(dlqs).values():
            future.result()
        for future in admin.delete_consumer_groups([g.name for g in made]).values():
            future.result()


@pytest.fixture(scope="session")
def migrated(env: dict[str, str]) -> dict[str, str]:
    """The schema migrated by the payment-api image (its job or init container in Kubernetes)."""
    needs_image("payment-api")
    flags = [f"--env={k}={v}" for k, v in env.items()]
    container_tool(
        "run",
        "--rm",
        "--network=host",
        f"--label={LABEL}",
        *flags,
        image("payment-api"),
        "migrate",
        timeout=180,
    )
    return env


@pytest.mark.parametrize("service", SERVICES + OPERATORS)
def test_image_shape(service: str) -> None:
    """Non-root, exec-form entrypoint, no build tools or build-time settings left."""
    config = json.loads(
        container_tool("image", "inspect", "--format={{json .Config}}", image(service))
    )
    assert config["User"].split(":")[0] == "10001"
    if (ROOT / "services" / service / "Dockerfile").exists() or service in OPERATORS:
        assert config["Entrypoint"] == [service]
    else:  # images/consumer.Dockerfile: a link to the service's console script
        assert config["Entrypoint"] == ["/app/entrypoint"]
        assert config["Labels"]["org.opencontainers.image.title"] == service
        target = container_tool(
            "run", "--rm", "--entrypoint=readlink", image(service), "-f", "/app/entrypoint"
        )
        assert target == f"/app/.venv/bin/{service}"
    names = {e.split("=", 1)[0] for e in config["Env"]}
    assert {"PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"} <= names
    assert not names & {"PIP_CERT", "SSL_CERT_FILE"}
    found = container_tool(
        "run", "--rm", "--entrypoint=sh", image(service), "-c", "command -v uv pip gcc cc || true"
    )
    assert found == "", f"build tools in the image: {found}"


@pytest.mark.parametrize("operator", OPERATORS)
def test_operator_starts_its_command_line(operator: str) -> None:
    """The operator needs a Kubernetes API to run; here its entrypoint and imports load."""
    assert "usage:" in container_tool("run", "--rm", image(operator), "run", "--help")


def test_payment_api_ready(migrated: dict[str, str]) -> None:
    port = free_port()
    api = {**migrated, "API_HOST": "127.0.0.1", "API_PORT": str(port)}
    with running("payment-api", api, "serve") as container:
        container.wait_http(f"http://127.0.0.1:{port}/readyz")
        assert http_get(f"http://127.0.0.1:{port}/v1/concerts")[0] == 200


def test_load_generator_plays_a_round(migrated: dict[str, str]) -> None:
    """The chart's loadgen component: `ticketing-loadgen` from the payment-api image seeds a
    catalogue into the API's database and its fans pay through the API, signed in with
    development JWTs of the key both are given (AUTH_JWT_SECRET)."""
    port = free_port()
    key = {"AUTH_JWT_SECRET": f"image-test-key-{uuid.uuid4().hex}{uuid.uuid4().hex}"}
    api = {**migrated, **key, "API_HOST": "127.0.0.1", "API_PORT": str(port)}
    with running("payment-api", api, "serve") as container:
        container.wait_http(f"http://127.0.0.1:{port}/readyz")
        output = container_tool(
            "run", "--rm", "--network=host", f"--label={LABEL}",
            *[f"--env={k}={v}" for k, v in {**migrated, **key}.items()],
            "--entrypoint=ticketing-loadgen", image("payment-api"),
            "--api", f"http://127.0.0.1:{port}", "--fans", "20", "--rate", "20",
            "--seats", "2", "--patience", "3", "--rounds", "1",
            timeout=180,
        )  # fmt: skip
    assert "round 1 done" in output, output
    assert "errors 0;" in output, output


@contextmanager
def stub() -> Iterator[str]:
    """The data platform stand-in, answering /healthz; yields its base URL."""
    needs_image("dataplatform-stub")
    port, admin_port = free_port(), free_port()
    env = {
        "DATAPLATFORM_STUB_HOST": "127.0.0.1",
        "DATAPLATFORM_STUB_PORT": str(port),
        "DATAPLATFORM_STUB_ADMIN_PORT": str(admin_port),
    }
    with running("dataplatform-stub", env, "serve") as container:
        url = f"http://127.0.0.1:{port}"
        container.wait_http(f"{url}/healthz")
        yield url


def test_dataplatform_stub_healthy() -> None:
    with stub():
        pass


def applied(env: dict[str, str], group: str, event_id: str) -> bool:
    """The consumer's processed-event marker: a Redis key, or a row of processed_events."""
    with redis.Redis.from_url(env["REDIS_URL"]) as client:
        if client.exists(RedisKeys(env["REDIS_KEY_PREFIX"]).processed(group) + event_id):
            return True
    engine = sqlalchemy.create_engine(env["DATABASE_URL"])
    try:
        with engine.connect() as conn:
            row = conn.execute(
                sqlalchemy.text(
                    f'SELECT 1 FROM "{env["DATABASE_SCHEMA"]}".processed_events'
                    " WHERE consumer_group = :group AND event_id = :event_id"
                ),
                {"group": group, "event_id": event_id},
            ).first()
        return row is not None
    except sqlalchemy.exc.ProgrammingError:  # no such table: not a database consumer
        return False
    finally:
        engine.dispose()


def received(platform: str, event_id: str) -> bool:
    """Whether the stand-in recorded the payment (its idempotency key is the event id)."""
    return http_get(f"{platform}/payments/{event_id}")[0] == 200


def fresh(template: Envelope) -> Envelope:
    """A new event like the template with fresh ids, and a seat hold that has not ended yet
    (the templates' holds end at their fixed date, and seatlock-consumer skips ended ones)."""
    payload = Harness.ids()
    if "hold_expires_at" in type(template.payload).model_fields:
        payload["hold_expires_at"] = datetime.now(UTC) + timedelta(minutes=5)
    return Harness.event(template, **payload)


@pytest.mark.parametrize("service", sorted(set(SERVICES) - HTTP_SERVICES))
def test_consumer_processes_an_event(
    service: str, migrated: dict[str, str], groups: list[ConsumerGroup]
) -> None:
    """Ready, then one event per topic of its group: committed, applied, not dead-lettered."""
    assert service in CONSUMERS, f"{service} is no consumer of the topic registry: add its check"
    topics = CONSUMERS[service].topics
    bootstrap = migrated["KAFKA_BOOTSTRAP_SERVERS"]
    group = f"imgtest-{RUN}-{service}"
    groups.append(ConsumerGroup(group, service, topics))
    start_group_at_end(bootstrap, group, topics)
    dlqs = [dlq_topic(t, group) for t in topics]
    ensure_topics(bootstrap, dlqs)
    dlq_ends = end_offsets(bootstrap, dlqs)
    port = free_port()
    consumer = {
        **migrated,
        "CONSUMER_GROUP": group,
        "CONSUMER_HEALTH_HOST": "127.0.0.1",
        "CONSUMER_HEALTH_PORT": str(port),
        "CONSUMER_POLL_TIMEOUT_S": "0.2",
        "CONSUMER_SESSION_TIMEOUT_MS": "6000",
    }
    with ExitStack() as stack:
        effect = partial(applied, migrated, group)
        if service == "dataplatform-consumer":
            platform = stack.enter_context(stub())
            consumer["DATAPLATFORM_URL"] = f"{platform}/payments"
            effect = partial(received, platform)
        container = stack.enter_context(running(service, consumer, "run"))
        container.wait_http(f"http://127.0.0.1:{port}/readyz")
        events = [fresh(TEMPLATES[t]()) for t in topics]
        EventProducer(bootstrap, client_id="imgtest").publish(events)
        ends = end_offsets(bootstrap, topics)

        def done() -> bool:
            committed = committed_offsets(bootstrap, group, topics)
            return all(committed[tp] >= end for tp, end in ends.items()) and all(
                effect(e.event_id) for e in events
            )

        try:
            Harness.wait_until(done, 60, f"{service} to commit and apply {len(events)} event(s)")
        except AssertionError as exc:
            pytest.fail(f"{exc}\n{container.logs()}")
    # Other suites publish on the same topics (bad events too): look for ours only.
    dead_count = sum(end - dlq_ends[tp] for tp, end in end_offsets(bootstrap, dlqs).items())
    dead = read_from(bootstrap, dlq_ends, count=dead_count)
    dead_values = [m.value() or b"" for m in dead]
    assert not [e for e in events if any(e.event_id.encode() in v for v in dead_values)], (
        "dead-lettered"
    )
