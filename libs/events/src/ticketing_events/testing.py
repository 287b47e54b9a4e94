"""Helpers for tests that run against a real broker (used by every service's test suite)."""

from __future__ import annotations

import base64
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import redis
from confluent_kafka import (
    Consumer,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from ticketing_events.app import ConsumerApp
from ticketing_events.consumer import ConsumerRuntime
from ticketing_events.offsets import KafkaOffsets
from ticketing_events.producer import EventProducer
from ticketing_events.redis_layout import RedisKeys
from ticketing_events.schemas import (
    Envelope,
    FailureReason,
    PaymentFailed,
    PaymentFailedPayload,
    PaymentSucceeded,
    PaymentSucceededPayload,
    ReservationCreated,
    ReservationCreatedPayload,
)
from ticketing_events.settings import ConsumerSettings, KafkaSettings
from ticketing_events.topics import dlq_topic, ensure_topics, redrive_topic, retry_while_settling

if TYPE_CHECKING:
    from sqlalchemy import Engine


def end_offsets(bootstrap_servers: str, topics: Iterable[str]) -> dict[tuple[str, int], int]:
    """High watermark of every partition of ``topics``."""
    with KafkaOffsets(bootstrap_servers, client_id="offset-probe") as offsets:
        return offsets.ends(topics)


def start_group_at_end(
    bootstrap_servers: str, group: str, topics: Iterable[str]
) -> dict[tuple[str, int], int]:
    """Commit the group's offsets at the topics' ends, so it reads only what comes next.

    Returns the offsets committed: the group's starting point.
    """
    ends = end_offsets(bootstrap_servers, topics)
    consumer = Consumer({"bootstrap.servers": bootstrap_servers, "group.id": group})
    try:
        offsets = [TopicPartition(t, p, o) for (t, p), o in ends.items()]
        retry_while_settling(lambda: consumer.commit(offsets=offsets, asynchronous=False))
    finally:
        consumer.close()
    return ends


def committed_offsets(
    bootstrap_servers: str, group: str, topics: Iterable[str]
) -> dict[tuple[str, int], int]:
    """The group's committed offsets; negative where it committed none."""
    with KafkaOffsets(bootstrap_servers, client_id="offset-probe") as offsets:
        return offsets.committed(group, topics)


def set_topic_config(bootstrap_servers: str, topic: str, name: str, value: str) -> None:
    """Set one config of ``topic`` on the broker, e.g. a small ``max.message.bytes``."""
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        AdminClient,
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        ResourceType,
    )

    entry = ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[entry])
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(30)


def read_from(
    bootstrap_servers: str,
    start: dict[tuple[str, int], int],
    *,
    count: int,
    timeout: float = 30.0,
) -> list[Message]:
    """Read ``count`` messages from the given start offsets (no group, nothing committed)."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap_servers, "group.id": "reader", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(t, p, o) for (t, p), o in start.items()])
    found: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while len(found) < count and time.monotonic() < deadline:
            for m in consumer.consume(count - len(found), 0.5):
                if m.error() is None:
                    found.append(m)
    finally:
        consumer.close()
    return found


# -- a harness for consumer tests ---------------------------------------------------------

E = TypeVar("E", bound=Envelope)


class Harness:
    def __init__(self, bootstrap: str, redis_url: str) -> None:
        self.bootstrap = bootstrap
        self.redis_url = redis_url
        self.redis = redis.Redis.from_url(redis_url)
        self.prefix = f"test-{uuid.uuid4().hex[:10]}:"
        self.groups: list[str] = []

    def group(self, topics: Sequence[str], *, redrive: bool = False) -> str:
        """A fresh group that starts at the topics' ends, with its dead-letter topics (and its
        redrive topics when ``redrive``)."""
        group = f"test-{uuid.uuid4().hex[:10]}"
        start_group_at_end(self.bootstrap, group, topics)
        extra = [redrive_topic(t, group) for t in topics] if redrive else []
        ensure_topics(self.bootstrap, [dlq_topic(t, group) for t in topics] + extra)
        self.groups.append(group)
        return group

    @staticmethod
    def ids() -> dict[str, Any]:
        """Fresh reservation, seat and queue token ids. Other suites publish the factories'
        fixed ids on the same topics, and this test's consumers see those events too."""
        n = random.randrange(10**9, 2 * 10**9)
        return {"reservation_id": n, "seat_id": n, "queue_token_id": uuid.uuid4().hex * 2}

    @staticmethod
    def event(template: E, **payload: Any) -> E:
        """A new event (new id) like ``template`` with some payload fields replaced."""
        return type(template).new(template.payload.model_copy(update=payload), producer="tests")

    @property
    def kafka(self) -> KafkaSettings:
        return KafkaSettings(bootstrap_servers=self.bootstrap)

    @staticmethod
    def consumer_settings(**overrides: Any) -> ConsumerSettings:
        values: dict[str, Any] = {
            "batch_size": 100,
            "poll_timeout_s": 0.2,
            "max_attempts": 3,
            "backoff_initial_s": 0.01,
            "backoff_max_s": 0.2,
            "health_port": 0,
            "health_host": "127.0.0.1",
        }
        return ConsumerSettings(**{**values, **overrides})

    def runtime(
        self,
        app: ConsumerApp[Any],
        group: str,
        resources: Mapping[str, Any],
        *,
        settings: Mapping[str, Any] | None = None,
        **consumer: Any,
    ) -> ConsumerRuntime:
        """``app``'s consumer in ``group`` on this harness's Kafka and Redis key prefix;
        ``settings``: fields of the app's settings, ``consumer``: of ``ConsumerSettings``."""
        values = {"consumer_group": group, "redis_key_prefix": self.prefix, **(settings or {})}
        return app.runtime(
            app.settings(**values),
            resources,
            kafka=self.kafka,
            consumer=self.consumer_settings(**consumer),
        )

    @contextmanager
    def running(self, runtime: ConsumerRuntime) -> Iterator[ConsumerRuntime]:
        thread = threading.Thread(target=runtime.run, daemon=True)
        thread.start()
        try:
            yield runtime
        finally:
            runtime.stop()
            thread.join(30)
            assert not thread.is_alive(), "consumer did not stop"

    @staticmethod
    def wait_until(check: Callable[[], bool], timeout: float = 30.0, what: str = "it") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")

    def wait_consumed(self, group: str, topics: Sequence[str], timeout: float = 30.0) -> None:
        """Wait until ``group`` committed past everything on ``topics`` now."""
        ends = end_offsets(self.bootstrap, topics)

        def caught_up() -> bool:
            committed = committed_offsets(self.bootstrap, group, topics)
            # An empty partition is consumed with no offset committed.
            return all(committed[tp] >= end for tp, end in ends.items() if end > 0)

        self.wait_until(caught_up, timeout, what=f"{group} to consume {list(topics)}")

    def publish_poison(self, topic: str) -> bytes:
        """Publish a message no consumer can decode, unique to this test; returns its value."""
        value = f"not json {self.prefix}{uuid.uuid4().hex}".encode()
        producer = Producer({"bootstrap.servers": self.bootstrap})
        producer.produce(topic, key=b"poison", value=value)
        producer.flush(10)
        return value

    def dead_letters(
        self, start: dict[tuple[str, int], int], value: bytes, count: int
    ) -> list[Message]:
        """The messages of ``value`` among the first ``count`` after ``start`` (a DLQ's)."""
        return [m for m in read_from(self.bootstrap, start, count=count) if m.value() == value]

    def processed(self, group: str, event_id: str) -> bool:
        """Whether ``group`` applied ``event_id`` (RedisOnce's dedupe key exists)."""
        return bool(self.redis.exists(RedisKeys(self.prefix).processed(group) + event_id))

    def processed_ids(self, group: str, events: Sequence[Envelope]) -> set[str]:
        """The ids of ``events`` that ``group`` applied (RedisOnce), in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        dedupe = RedisKeys(self.prefix).processed(group)
        for e in events:
            pipe.exists(dedupe + e.event_id)
        return {e.event_id for e, hit in zip(events, pipe.execute(), strict=True) if hit}

    def cleanup(self) -> None:
        keys = list(self.redis.scan_iter(match=f"{self.prefix}*", count=1000))
        for i in range(0, len(keys), 500):
            self.redis.delete(*keys[i : i + 500])
        self.redis.close()


def redis_clock_ms(client: redis.Redis) -> int:
    """The clock Redis sets expiry times by, in Unix milliseconds: bracket a call with two
    readings and compare them with ``PEXPIRETIME`` rather than a TTL that runs down."""
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


class RedisServer:
    """A ``redis-server`` of this test alone, on a free port, without persistence."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (make infra-install)")
        self.binary = binary
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.command(),
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not self.answers():
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.05)

    def answers(self) -> bool:
        client = redis.Redis.from_url(self.url, socket_timeout=1)
        try:
            return bool(client.ping())
        except redis.exceptions.ConnectionError:
            return False
        finally:
            client.close()

    def command(self) -> list[str]:
        port = str(self.port)
        no_persistence = ["--save", "", "--appendonly", "no"]
        return [self.binary, "--port", port, "--bind", "127.0.0.1", *no_persistence]

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


class KafkaServer:
    """A KRaft Kafka of this test alone, on free loopback ports, its data under ``data_dir``:
    a fresh cluster, without topics or consumer groups. One node (broker and controller) by
    default; ``nodes=3`` runs three such nodes, a controller quorum of three whose topics
    default to 3 replicas with 2 in sync, as infra/infra.sh does with ``KAFKA_BROKERS=3``.
    ``kill(n)`` and ``start_node(n)`` crash and bring back node ``n`` (from 1).

    Runs ``kafka.Kafka`` from the jars of ``$KAFKA_LIBS`` (make infra-install), as
    infra/infra.sh does; a node's output goes to ``kafka.log`` in its directory
    (``data_dir``, or ``data_dir/node-<n>`` for a cluster).
    """

    def __init__(self, data_dir: Path, nodes: int = 1) -> None:
        java = shutil.which("java")
        libs = os.environ.get("KAFKA_LIBS", "")
        if java is None or not libs or not Path(libs).is_dir():
            raise RuntimeError("java or the Kafka jars ($KAFKA_LIBS) missing (make infra-install)")
        # C1-only JIT and serial GC: a small broker that starts fast; a cluster's three share
        # the machine, so each gets less heap.
        heap = "-Xmx512m" if nodes == 1 else "-Xmx384m"
        self.java = [java, heap, "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-cp"]
        self.java.append(f"{libs}/*")
        self.data_dir = data_dir
        self.nodes = nodes
        self.ports = {n: free_port() for n in self.node_ids}
        self.controller_ports = {n: free_port() for n in self.node_ids}
        self.port, self.controller_port = self.ports[1], self.controller_ports[1]
        self.bootstrap = ",".join(f"127.0.0.1:{p}" for p in self.ports.values())
        self.log = self.node_dir(1) / "kafka.log"
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def node_ids(self) -> range:
        return range(1, self.nodes + 1)

    def node_dir(self, node: int) -> Path:
        return self.data_dir if self.nodes == 1 else self.data_dir / f"node-{node}"

    def config(self, node: int = 1) -> str:
        broker = f"127.0.0.1:{self.ports[node]}"
        controller = f"127.0.0.1:{self.controller_ports[node]}"
        quorum = ",".join(f"127.0.0.1:{p}" for p in self.controller_ports.values())
        replicas = min(self.nodes, 3)
        in_sync = max(replicas - 1, 1)
        return "\n".join(
            [
                "process.roles=broker,controller",
                f"node.id={node}",
                f"controller.quorum.bootstrap.servers={quorum}",
                f"listeners=PLAINTEXT://{broker},CONTROLLER://{controller}",
                f"advertised.listeners=PLAINTEXT://{broker},CONTROLLER://{controller}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                f"log.dirs={self.node_dir(node) / 'data'}",
                "auto.create.topics.enable=false",
                f"default.replication.factor={replicas}",
                f"min.insync.replicas={in_sync}",
                f"offsets.topic.replication.factor={replicas}",
                f"transaction.state.log.replication.factor={replicas}",
                f"transaction.state.log.min.isr={in_sync}",
                f"share.coordinator.state.topic.replication.factor={replicas}",
                f"share.coordinator.state.topic.min.isr={in_sync}",
                "group.initial.rebalance.delay.ms=0",
                "",
            ]
        )

    def start(self, timeout: float = 120.0) -> None:
        """Start every node (formatting their storage the first time); wait until the cluster's
        metadata lists every broker."""
        for node in self.node_ids:
            self.node_dir(node).mkdir(parents=True, exist_ok=True)
            (self.node_dir(node) / "server.properties").write_text(self.config(node))
        if not (self.node_dir(1) / "data" / "meta.properties").exists():  # else a restart
            self._format()
        for node in self.node_ids:
            self._launch(node)
        self._wait(self.answers, timeout, self.node_ids)

    def _format(self) -> None:
        """One node: a standalone quorum; a cluster: one cluster id and every node an initial
        controller (``id@host:port:directory-id``)."""
        cluster = ["-t", _random_uuid()]
        if self.nodes == 1:
            quorum = ["--standalone"]
        else:
            voters = ",".join(
                f"{n}@127.0.0.1:{self.controller_ports[n]}:{_random_uuid()}" for n in self.node_ids
            )
            quorum = ["--initial-controllers", voters]
        for node in self.node_ids:
            conf = str(self.node_dir(node) / "server.properties")
            with (self.node_dir(node) / "kafka.log").open("ab") as log:
                subprocess.run(
                    [
                        *self.java,
                        "kafka.tools.StorageTool",
                        "format",
                        *quorum,
                        *cluster,
                        "-c",
                        conf,
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    check=True,
                )

    def _launch(self, node: int) -> None:
        conf = self.node_dir(node) / "server.properties"
        with (self.node_dir(node) / "kafka.log").open("ab") as log:
            self.processes[node] = subprocess.Popen(
                [*self.java, "kafka.Kafka", str(conf)], stdout=log, stderr=subprocess.STDOUT
            )

    def _wait(self, ready: Callable[[], bool], timeout: float, nodes: Iterable[int]) -> None:
        """Until ``ready()``; stop everything and fail when one of ``nodes`` exits or time is up."""
        deadline = time.monotonic() + timeout
        while not ready():
            for node in nodes:
                if self.processes[node].poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    log = self.node_dir(node) / "kafka.log"
                    tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
                    raise RuntimeError(f"Kafka node {node} ({self.ports[node]}) not up:\n{tail}")
            time.sleep(0.2)

    def brokers(self) -> set[int]:
        """The ids of the brokers in the cluster's metadata (registered and not fenced);
        empty when no node answers."""
        from confluent_kafka.admin import AdminClient

        listening = [p for p in self.ports.values() if _listens(p)]
        if not listening:  # a client would retry (and log) in the background until collected
            return set()
        admin = AdminClient({"bootstrap.servers": ",".join(f"127.0.0.1:{p}" for p in listening)})
        try:
            return set(admin.list_topics(timeout=5).brokers)
        except KafkaException:
            return set()

    def answers(self) -> bool:
        """Whether every broker is in the cluster's metadata."""
        return self.brokers() == set(self.node_ids)

    def kill(self, node: int) -> None:
        """SIGKILL node ``node``: a crash, no controlled shutdown."""
        process = self.processes.pop(node)
        process.kill()
        process.wait()

    def start_node(self, node: int, timeout: float = 120.0) -> None:
        """Start node ``node`` again; wait until its broker is back in the metadata (it may
        still be catching up its replicas)."""
        self._launch(node)
        self._wait(lambda: node in self.brokers(), timeout, [node])

    def stop(self) -> None:
        """SIGTERM every node at once (a cluster's last node alone would wait for a quorum)."""
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()


def _listens(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _random_uuid() -> str:
    """A random Kafka UUID (cluster or directory id) in URL-safe base64, as ``StorageTool
    random-uuid`` prints; one that starts with a dash would read as an option."""
    while True:
        value = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not value.startswith("-"):
            return value


@dataclass(frozen=True)
class ScrapeTarget:
    """A ``host:port`` serving ``/metrics``, scraped as job ``job`` with ``labels`` added to
    its series (e.g. ``{"service": "payment-api"}``)."""

    address: str
    job: str
    labels: Mapping[str, str] = field(default_factory=dict)


class PrometheusServer:
    """A Prometheus of this test alone, on a free loopback port, scraping ``targets`` every
    ``scrape_interval`` seconds; its config, TSDB and output (``prometheus.log``) under
    ``data_dir``.

    Runs ``$PROMETHEUS_BIN`` (make infra-install builds it). ``query`` and
    ``wait_for_targets_up`` read its HTTP API.
    """

    def __init__(
        self, data_dir: Path, targets: Sequence[ScrapeTarget], scrape_interval: float = 1.0
    ) -> None:
        binary = os.environ.get("PROMETHEUS_BIN", "")
        if not binary or not os.access(binary, os.X_OK):
            raise RuntimeError(
                f"Prometheus not built at {binary or '$PROMETHEUS_BIN'}; make infra-install"
            )
        self.binary = binary
        self.data_dir = data_dir
        self.targets = list(targets)
        self.scrape_interval = scrape_interval
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir / "prometheus.log"
        self.process: subprocess.Popen[bytes] | None = None

    def config(self) -> dict[str, Any]:
        """The scrape config: one job per distinct ``job``, each target a static group."""
        interval = f"{round(self.scrape_interval * 1000)}ms"
        jobs: dict[str, list[dict[str, Any]]] = {}
        for t in self.targets:
            jobs.setdefault(t.job, []).append({"targets": [t.address], "labels": dict(t.labels)})
        return {
            "global": {
                "scrape_interval": interval,
                "scrape_timeout": interval,  # may not exceed the interval
                "evaluation_interval": interval,
            },
            "scrape_configs": [
                {"job_name": job, "static_configs": groups} for job, groups in jobs.items()
            ],
        }

    def start(self, timeout: float = 60.0) -> None:
        """Start it; wait until it is ready to serve queries."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "prometheus.yml"
        config.write_text(json.dumps(self.config(), indent=2))  # JSON is YAML
        command = [
            self.binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={self.data_dir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            # A hidden flag: targets are taken up every 5 s by default, so the first scrape
            # would wait that long.
            "--scrape.discovery-reload-interval=100ms",
        ]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])
                raise RuntimeError(f"Prometheus on port {self.port} not ready:\n{tail}")
            time.sleep(0.1)

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:  # refused, or 503 while it starts
            return False

    def api(self, path: str, **params: str) -> Any:
        """The ``data`` of ``/api/v1/<path>``; a RuntimeError with Prometheus's error."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:  # a bad query: 400 with a JSON error
            body = json.load(exc)
        if body["status"] != "success":
            raise RuntimeError(f"Prometheus {path} {params}: {body['errorType']}: {body['error']}")
        return body["data"]

    def query(self, promql: str) -> list[tuple[dict[str, str], float]]:
        """An instant query's result: (labels, value) per series; a scalar has no labels."""
        data = self.api("query", query=promql)
        if data["resultType"] == "vector":
            return [(r["metric"], float(r["value"][1])) for r in data["result"]]
        if data["resultType"] == "scalar":
            return [({}, float(data["result"][1]))]
        raise ValueError(f"{promql!r} gives a {data['resultType']}, not a vector or scalar")

    def wait_for_targets_up(self, timeout: float = 60.0) -> None:
        """Until the last scrape of every target succeeded."""
        expected = {(t.job, t.address) for t in self.targets}
        deadline = time.monotonic() + timeout
        while True:
            active = self.api("targets", state="active")["activeTargets"]
            up = {
                (t["scrapePool"], t["discoveredLabels"]["__address__"])
                for t in active
                if t["health"] == "up"
            }
            if expected <= up:
                return
            if time.monotonic() > deadline:
                states = {t["scrapeUrl"]: (t["health"], t["lastError"]) for t in active}
                raise AssertionError(f"Prometheus targets not all up: {states}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None


class TcpProxy:
    """Forwards a local port to ``host:port``. ``stop()`` drops every connection and refuses
    new ones (the server looks gone), ``start()`` serves again on the same port."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._running = threading.Event()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._listener.settimeout(0.1)
        self._running.set()
        self._thread = threading.Thread(target=self._accept, args=(self._listener,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._running.clear()
        if self._thread is not None:
            self._thread.join(5)
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            for s in self._sockets:
                with suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while self._running.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            with self._lock:
                self._sockets |= {client, upstream}
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


@contextmanager
def database_proxy(database_url: str) -> Iterator[tuple[TcpProxy, str]]:
    """A running ``TcpProxy`` to the database of ``database_url``, and the URL through it."""
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    proxy.start()
    try:
        yield proxy, url.set(host="127.0.0.1", port=proxy.port).render_as_string(False)
    finally:
        proxy.stop()


@dataclass(frozen=True)
class Database:
    """A PostgreSQL schema of one test session, and an engine on it."""

    url: str
    schema: str
    engine: Engine


@contextmanager
def migrated_schema(
    database_url: str, prefix: str, migrate: Callable[[str], None]
) -> Iterator[Database]:
    """A fresh schema, migrated by ``migrate(schema)``; dropped with its tables after."""
    import sqlalchemy

    from ticketing_events.db import create_db_engine

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    engine = create_db_engine(database_url, schema=name)
    try:
        migrate(name)
        yield Database(database_url, name, engine)
    finally:
        engine.dispose()
        admin = sqlalchemy.create_engine(database_url)
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        admin.dispose()


def processed_event_ids(engine: Engine, group: str) -> set[str]:
    """The event ids ``group`` claimed in the ``processed_events`` table."""
    import sqlalchemy

    query = "select event_id from processed_events where consumer_group = :g"
    with engine.connect() as conn:
        return set(conn.execute(sqlalchemy.text(query), {"g": group}).scalars())


# -- a service's real entrypoint --------------------------------------------------------


def start_service(entrypoint: str, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """``<entrypoint> run`` (installed next to this Python) with small batches, quiet logs."""
    defaults = {
        "CONSUMER_BATCH_SIZE": "20",
        "CONSUMER_POLL_TIMEOUT_S": "0.2",
        "CONSUMER_HEALTH_PORT": "0",
        "CONSUMER_SESSION_TIMEOUT_MS": "6000",
        "OTEL_SDK_DISABLED": "true",
        "LOG_LEVEL": "WARNING",
    }
    command = [str(Path(sys.executable).with_name(entrypoint)), "run"]
    return subprocess.Popen(
        command, env={**os.environ, **defaults, **env}, stdout=subprocess.DEVNULL
    )


def sigterm(process: subprocess.Popen[bytes], timeout: float = 30) -> int:
    """Send SIGTERM and return the exit code; kill the process if it does not exit."""
    try:
        process.send_signal(signal.SIGTERM)
        return process.wait(timeout)
    finally:
        process.kill()


def committed_event_ids(
    bootstrap_servers: str, group: str, topic: str, start: dict[tuple[str, int], int]
) -> set[str]:
    """Ids of the events on ``topic`` from ``start`` up to ``group``'s committed offsets."""
    committed = committed_offsets(bootstrap_servers, group, [topic])
    ends = end_offsets(bootstrap_servers, [topic])
    total = sum(ends[tp] - start[tp] for tp in start)
    messages = read_from(bootstrap_servers, start, count=total, timeout=60)
    assert len(messages) == total, f"read {len(messages)} of {total} messages"
    return {
        _event_id(m)
        for m in messages
        if (m.offset() or 0) < committed[(str(m.topic()), m.partition() or 0)]
    }


def _event_id(message: Message) -> str:
    headers: dict[str, bytes] = dict(message.headers() or ())  # type: ignore[arg-type]
    return headers.get("event_id", b"").decode()


def check_sigterm_mid_stream(
    harness: Harness,
    group: str,
    events: Sequence[Envelope],
    start: Callable[[], subprocess.Popen[bytes]],
    applied: Callable[[], set[str]],
) -> None:
    """SIGTERM the service mid-stream: it exits 0 having committed exactly the events it
    applied (nothing lost, nothing left to redo); restarted, it applies the rest.

    ``start`` runs the service in ``group``; ``applied`` tells the event ids it applied.
    """
    topic = events[0].TYPE
    start_offsets = committed_offsets(harness.bootstrap, group, [topic])
    EventProducer(harness.bootstrap, client_id="test").publish(list(events))
    ours = {e.event_id for e in events}

    def ours_applied() -> set[str]:  # other suites publish on the same topic
        return applied() & ours

    process = start()
    harness.wait_until(lambda: len(ours_applied()) >= 100, what="progress")
    assert sigterm(process) == 0
    done = ours_applied()
    assert len(done) < len(ours), "it stopped mid-stream, as asked"
    committed = committed_event_ids(harness.bootstrap, group, topic, start_offsets)
    assert committed & ours == done, "committed exactly what it applied"

    process = start()
    harness.wait_until(lambda: ours_applied() == ours, 120, "the rest")
    assert sigterm(process) == 0


# -- realistic events -------------------------------------------------------------------

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def _ids(n: int) -> dict[str, Any]:
    return {
        "reservation_id": 10_000 + n,
        "user_id": 500 + n,
        "concert_id": 7,
        "schedule_id": 70 + n % 3,
        "concert_date": date(2026, 12, 24),
        "seat_id": 1_000 + n,
        "queue_token_id": f"{n:064x}",
    }


def payment_succeeded(n: int = 1) -> PaymentSucceeded:
    payload = PaymentSucceededPayload(
        **_ids(n),
        payment_id=90_000 + n,
        amount=150_000,
        paid_at=NOW,
        schedule_seat_count=50,
        sale_opened_at=NOW - timedelta(minutes=10),
    )
    return PaymentSucceeded.new(payload, producer="tests")


def payment_failed(
    n: int = 1, reason: FailureReason = FailureReason.INSUFFICIENT_POINTS
) -> PaymentFailed:
    payload = PaymentFailedPayload(
        **_ids(n),
        payment_id=90_000 + n,
        amount=150_000,
        points_deducted=0,
        reason=reason,
        failed_at=NOW,
    )
    return PaymentFailed.new(payload, producer="tests")


def reservation_created(n: int = 1) -> ReservationCreated:
    payload = ReservationCreatedPayload(
        **_ids(n),
        price=150_000,
        reserved_at=NOW,
        hold_expires_at=NOW + timedelta(minutes=5),
    )
    return ReservationCreated.new(payload, producer="tests")


# -- metrics ---------------------------------------------------------------------------

MetricSamples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape_metrics(url: str) -> MetricSamples:
    """Every sample a ``/metrics`` endpoint serves, as Prometheus reads it: (name, labels) ->
    value."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def metric_total(samples: MetricSamples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)
