"""The repository's own fixtures: the real Kubernetes control plane of `make k8s-up`. The real
infrastructure's fixtures (Kafka, Redis, PostgreSQL, spans, the consumer harness) come from the
pytest plugin of ticketing_events.testing."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

K8S_HINT = "start the control plane with `make k8s-up`"


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
