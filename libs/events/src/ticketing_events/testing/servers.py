"""Private servers and proxies: a Redis, a Kafka (one node or a cluster), a Prometheus, a TCP
proxy to cut a connection, a PostgreSQL schema of its own."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis
from confluent_kafka import (
    KafkaException,
)

if TYPE_CHECKING:
    from sqlalchemy import Engine


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
