"""`helm install`, `upgrade` and `uninstall` of the chart on the real control plane (`make k8s-up`).

Every object of each profile (charts/profiles.sh) must be accepted by a real kube-apiserver
(KEDA's CRDs and ours applied first). Pods run on kwok's fake node, so `--wait` sees
Deployments ready and the hook Jobs complete without images. Nothing provisions volumes there,
so the profiles' infra persistence is off.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

pytestmark = pytest.mark.k8s

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "ticketing"
RELEASE = "ticketing"


def profiles(*args: str) -> list[str]:
    """charts/profiles.sh: every profile, or one's values files."""
    script = str(ROOT / "charts" / "profiles.sh")
    return subprocess.run(
        ["bash", script, *args], capture_output=True, text=True, check=True
    ).stdout.split()


PROFILES = sorted(profiles())


class Helm:
    def __init__(self, binary: str, kubeconfig: str) -> None:
        self.binary = binary
        self.kubeconfig = kubeconfig

    def __call__(self, *args: str) -> str:
        command = [self.binary, "--kubeconfig", self.kubeconfig, *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def manifest(self, namespace: str) -> list[dict[str, Any]]:
        text = self("get", "manifest", RELEASE, "-n", namespace)
        return [d for d in yaml.safe_load_all(text) if d]


@pytest.fixture(scope="module")
def tools() -> dict[str, str]:
    out = subprocess.run(
        ["bash", str(ROOT / "charts" / "tools.sh")], capture_output=True, text=True, check=True
    ).stdout
    return dict(line.split("=", 1) for line in out.split())


@pytest.fixture
def helm(kube: Any, tools: dict[str, str]) -> Helm:
    # KEDA's ScaledObject, and prometheus-operator's PodMonitor (the external profile's).
    crd_dirs = (tools["KEDA_CRDS"], tools["PROMETHEUS_OPERATOR_CRDS"])
    kube.apply_crds([crd for d in crd_dirs for crd in sorted(Path(d).glob("*.yaml"))])
    return Helm(tools["HELM"], kube.kubeconfig)


def live(kube: Any, doc: dict[str, Any], namespace: str) -> dict[str, Any] | None:
    resource = kube.dynamic.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
    ns = namespace if resource.namespaced else None
    try:
        return dict(resource.get(name=doc["metadata"]["name"], namespace=ns).to_dict())
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def name(doc: dict[str, Any]) -> str:
    return f"{doc['kind']} {doc['metadata']['name']}"


def install(helm: Helm, namespace: str, profile: str, *extra: str) -> None:
    values = [arg for file in profiles(profile) for arg in ("-f", file)]
    helm("upgrade", "--install", RELEASE, str(CHART), "-n", namespace, *values,
         "--set", "infra.persistence.enabled=false",
         "--wait", "--wait-for-jobs", "--timeout", "4m", *extra)  # fmt: skip


def leftovers(kube: Any, namespace: str) -> list[str]:
    """Objects of the release's namespace, other than what Kubernetes puts in every one."""
    core, apps, batch = (client.CoreV1Api(kube.api), client.AppsV1Api(kube.api),
                         client.BatchV1Api(kube.api))  # fmt: skip
    listings = {
        "Pod": core.list_namespaced_pod,
        "Job": batch.list_namespaced_job,
        "Deployment": apps.list_namespaced_deployment,
        "StatefulSet": apps.list_namespaced_stateful_set,
        "Service": core.list_namespaced_service,
        "Secret": core.list_namespaced_secret,
        "ConfigMap": core.list_namespaced_config_map,
        "ServiceAccount": core.list_namespaced_service_account,
        "PersistentVolumeClaim": core.list_namespaced_persistent_volume_claim,
    }
    builtin = {("ConfigMap", "kube-root-ca.crt"), ("ServiceAccount", "default")}
    return [
        f"{kind} {o.metadata.name}"
        for kind, list_objects in listings.items()
        for o in list_objects(namespace).items
        if (kind, o.metadata.name) not in builtin
    ]


def wait_gone(kube: Any, docs: list[dict[str, Any]], namespace: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        remaining = [name(d) for d in docs if live(kube, d, namespace)]
        remaining += leftovers(kube, namespace)
        if not remaining:
            return
        assert time.monotonic() < deadline, f"left behind after uninstall: {remaining}"
        time.sleep(1)


@pytest.mark.parametrize("profile", PROFILES)
def test_install_and_uninstall(kube: Any, helm: Helm, profile: str) -> None:
    ns = kube.namespace()
    install(helm, ns, profile)

    docs = helm.manifest(ns)
    assert docs
    missing = [name(d) for d in docs if not live(kube, d, ns)]
    assert not missing, missing
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet"):
            status = live(kube, d, ns)["status"]  # type: ignore[index]
            assert status.get("readyReplicas") == status.get("replicas"), (d["metadata"], status)

    helm("uninstall", RELEASE, "-n", ns, "--wait", "--timeout", "2m")
    wait_gone(kube, docs, ns)


def test_upgrade_applies_changed_values(kube: Any, helm: Helm) -> None:
    ns = kube.namespace()
    install(helm, ns, "default")
    apps = client.AppsV1Api(kube.api)
    before = apps.read_namespaced_deployment("ticketing-ranking-consumer", ns)

    install(helm, ns, "default", "--set", "components.ranking-consumer.replicas=3",
            "--set", "logLevel=DEBUG", "--set", "components.compensator.enabled=false")  # fmt: skip

    after = apps.read_namespaced_deployment("ticketing-ranking-consumer", ns)
    assert (before.spec.replicas, after.spec.replicas) == (1, 3)
    assert after.status.ready_replicas == 3
    env = {e.name: e.value for e in after.spec.template.spec.containers[0].env}
    assert env["LOG_LEVEL"] == "DEBUG"
    with pytest.raises(ApiException) as gone:
        apps.read_namespaced_deployment("ticketing-compensator", ns)
    assert gone.value.status == 404
    history = yaml.safe_load(helm("history", RELEASE, "-n", ns, "-o", "yaml"))
    assert [h["status"] for h in history] == ["superseded", "deployed"]

    docs = helm.manifest(ns)
    helm("uninstall", RELEASE, "-n", ns, "--wait", "--timeout", "2m")
    wait_gone(kube, docs, ns)


@pytest.mark.kafka
def test_the_operator_works_with_the_charts_rbac(
    kube: Any, helm: Helm, kafka_bootstrap: str, tmp_path: Path
) -> None:
    """`lag-autoscaler run` and `release` with the chart's ServiceAccount token, as in its pod
    and its pre-delete hook: its Role and ClusterRole are enough, and nothing is Forbidden."""
    ns = kube.namespace()
    install(helm, ns, "operator", "--set", "components.ranking-consumer.autoscaling.minReplicas=2")
    core, apps = client.CoreV1Api(kube.api), client.AppsV1Api(kube.api)
    account = f"{RELEASE}-lag-autoscaler"
    token = core.create_namespaced_service_account_token(
        account, ns, {"spec": {"expirationSeconds": 3600}}
    ).status.token
    config = yaml.safe_load(Path(kube.kubeconfig).read_text())
    config["users"] = [{"name": account, "user": {"token": token}}]
    config["contexts"][0]["context"]["user"] = account
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    entrypoint = str(Path(sys.executable).with_name("lag-autoscaler"))
    (operator,) = [d for d in helm.manifest(ns) if d["metadata"]["name"] == account
                   and d["kind"] == "Deployment"]  # fmt: skip
    args = operator["spec"]["template"]["spec"]["containers"][0]["args"]
    log = tmp_path / "operator.log"
    with log.open("wb") as out:
        process = subprocess.Popen([entrypoint, *args], env=env, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 60
        while (
            apps.read_namespaced_deployment_scale(f"{RELEASE}-ranking-consumer", ns).spec.replicas
            < 2
        ):
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        events = [e.reason for e in core.list_namespaced_event(ns).items]
        assert "Scaled" in events
    finally:
        process.terminate()
        process.wait(30)
    output = log.read_text()
    assert "Forbidden" not in output and " 403" not in output, output

    # The pre-delete hook's command: the stopped operator's finalizers would block the uninstall.
    subprocess.run([entrypoint, "release", "--namespace", ns], env=env, check=True, timeout=60)
    docs = helm.manifest(ns)
    helm("uninstall", RELEASE, "-n", ns, "--wait", "--timeout", "2m")
    wait_gone(kube, docs, ns)
