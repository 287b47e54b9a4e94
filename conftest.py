"""Fixtures shared by every test suite: the real infrastructure, and an in-memory span sink."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from ticketing_events.testing import Harness, RedisServer
from ticketing_events.topics import ensure_topics
from ticketing_events.tracing import configure_tracing

HINT = "start the local infrastructure with `make infra-up`"
K8S_HINT = "start the control plane with `make k8s-up`"


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    from confluent_kafka.admin import AdminClient

    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    try:
        AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
    except Exception as exc:
        pytest.fail(f"Kafka at {bootstrap} does not answer ({exc}); {HINT}")
    ensure_topics(bootstrap)
    return bootstrap


@pytest.fixture(scope="session")
def redis_url() -> str:
    import redis

    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        redis.Redis.from_url(url).ping()
    except Exception as exc:
        pytest.fail(f"Redis at {url} does not answer ({exc}); {HINT}")
    return url


@pytest.fixture(scope="session")
def database_url() -> str:
    import sqlalchemy

    url = os.environ.get(
        "DATABASE_URL", "postgresql+psycopg://ticketing:ticketing@127.0.0.1:5432/ticketing"
    )
    try:
        with sqlalchemy.create_engine(url).connect() as conn:
            conn.exec_driver_sql("select 1")
    except Exception as exc:
        pytest.fail(f"database at {url} does not answer ({exc}); {HINT}")
    return url


_EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="session")
def _tracer_provider() -> None:
    # The global provider can be set once per process; every test shares this one.
    configure_tracing("tests", processor=SimpleSpanProcessor(_EXPORTER))


@pytest.fixture(scope="session")
def meter_provider() -> None:
    # Global, like the tracer provider: the metrics of every runtime and app of the session.
    from ticketing_events.metrics import configure_metrics

    if configure_metrics("tests") is None:
        pytest.fail("OTEL_SDK_DISABLED is set: the metrics tests need the SDK")


@pytest.fixture
def spans(_tracer_provider: None) -> Iterator[InMemorySpanExporter]:
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


@pytest.fixture
def harness(kafka_bootstrap: str, redis_url: str) -> Iterator[Harness]:
    """Fresh consumer groups, a random Redis key prefix, runtimes in threads; cleaned up."""
    h = Harness(kafka_bootstrap, redis_url)
    yield h
    h.cleanup()


@pytest.fixture
def small_topic(kafka_bootstrap: str) -> Iterator[str]:
    """A topic of this test alone whose broker refuses messages over 1000 bytes."""
    from confluent_kafka.admin import AdminClient, NewTopic

    name = f"test-small-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    topic = NewTopic(name, num_partitions=1, replication_factor=1)
    topic.config = {"max.message.bytes": "1000"}
    admin.create_topics([topic])[name].result(30)
    yield name
    admin.delete_topics([name])[name].result(30)


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A redis-server of the test's own, which it may stop and start (outage tests)."""
    server = RedisServer()
    server.start()
    yield server
    server.stop()


class Kube:
    """The real control plane of `make k8s-up`: an API client, server-side apply, namespaces."""

    def __init__(self, kubeconfig: str) -> None:
        from kubernetes import config, dynamic

        self.kubeconfig = kubeconfig
        self.api = config.new_client_from_config(config_file=kubeconfig)
        self.dynamic = dynamic.DynamicClient(self.api)
        self.namespaces: list[str] = []

    def apply(self, docs: Iterable[dict[str, Any]], namespace: str | None = None) -> None:
        for doc in docs:
            resource = self.dynamic.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
            ns = namespace if resource.namespaced else None
            resource.server_side_apply(
                body=doc, namespace=ns, field_manager="tests", force_conflicts=True
            )

    def apply_crds(self, paths: Iterable[Path]) -> None:
        """Apply CRD files and wait until each is established (served)."""
        import yaml
        from kubernetes import client

        docs = [d for p in paths for d in yaml.safe_load_all(p.read_text()) if d]
        self.apply(docs)
        ext = client.ApiextensionsV1Api(self.api)
        deadline = time.monotonic() + 30
        for doc in docs:
            while True:
                crd = ext.read_custom_resource_definition(doc["metadata"]["name"])
                conditions = {c.type: c.status for c in (crd.status.conditions or [])}
                if conditions.get("Established") == "True":
                    break
                assert time.monotonic() < deadline, f"CRD {crd.metadata.name} not established"
                time.sleep(0.2)
        self.dynamic.resources.invalidate_cache()

    def namespace(self) -> str:
        from kubernetes import client

        name = f"test-{uuid.uuid4().hex[:8]}"
        client.CoreV1Api(self.api).create_namespace({"metadata": {"name": name}})
        self.namespaces.append(name)
        return name

    def cleanup(self) -> None:
        from kubernetes import client

        core = client.CoreV1Api(self.api)
        for name in self.namespaces:
            core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture(scope="session")
def kubeconfig() -> str:
    """The admin kubeconfig of the real control plane (etcd, kube-apiserver, controllers, kwok)."""
    from kubernetes import client, config

    default = Path(__file__).parent / ".infra" / "k8s" / "kubeconfig"
    path = os.environ.get("K8S_KUBECONFIG", str(default))
    try:
        client.VersionApi(config.new_client_from_config(config_file=path)).get_code()
    except Exception as exc:
        pytest.fail(f"no Kubernetes API server with {path} ({exc}); {K8S_HINT}")
    return path


@pytest.fixture
def kube(kubeconfig: str) -> Iterator[Kube]:
    """The control plane; namespaces made with ``kube.namespace()`` are deleted afterwards."""
    k = Kube(kubeconfig)
    yield k
    k.cleanup()
