"""`lag-autoscaler run` against the real control plane (`make k8s-up`) and the real broker.

The Deployment's Pods run on kwok's fake node, so replicas become Ready without images.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from lag_autoscaler.reconcile import parse_time
from lag_autoscaler.spec import GROUP, PLURAL, VERSION
from ticketing_events.testing import (
    end_offsets,
    free_port,
    metric_total,
    scrape_metrics,
    start_group_at_end,
)

from .conftest import Topics

pytestmark = [pytest.mark.kafka, pytest.mark.k8s]

CRDS = Path(__file__).parents[3] / "charts" / "ticketing" / "crds"
T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


@pytest.fixture
def cluster(kube: Any) -> Any:
    kube.apply_crds(sorted(CRDS.glob("*.yaml")))
    return kube


def deployment(name: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "consumer", "image": "consumer:test"}]},
            },
        },
    }


def autoscaler(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ConsumerLagAutoscaler",
        "metadata": {"name": name},
        "spec": spec,
    }


class Operator:
    """``lag-autoscaler run -n NS [args]`` as its own process, logging to a file."""

    def __init__(
        self, kubeconfig: str, namespace: str, log: Path, bootstrap: str, args: list[str]
    ) -> None:
        self.log = log
        self.metrics_port = free_port()  # each replica its own, as each pod has
        env = {
            **os.environ,
            "KUBECONFIG": kubeconfig,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "AUTOSCALER_KAFKA_TIMEOUT_S": "3",
            "AUTOSCALER_METRICS_PORT": str(self.metrics_port),
            "LOG_LEVEL": "INFO",
        }
        command = [str(Path(sys.executable).with_name("lag-autoscaler")), "run"]
        command += ["-n", namespace, *args]
        with log.open("wb") as out:
            self.process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        finally:
            self.process.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def operator(cluster: Any, tmp_path: Path) -> Iterator[Callable[..., Operator]]:
    started: list[Operator] = []

    def start(
        namespace: str, bootstrap: str, args: tuple[str, ...] = ("--standalone",)
    ) -> Operator:
        log = tmp_path / f"operator-{len(started)}.log"
        op = Operator(cluster.kubeconfig, namespace, log, bootstrap, list(args))
        started.append(op)
        return op

    yield start
    for op in started:
        op.stop()


class Objects:
    def __init__(self, kube: Any, namespace: str) -> None:
        self.ns = namespace
        self.apps = client.AppsV1Api(kube.api)
        self.custom = client.CustomObjectsApi(kube.api)
        self.core = client.CoreV1Api(kube.api)

    def replicas(self, name: str = "consumer") -> int:
        # The API omits replicas: 0.
        return int(self.apps.read_namespaced_deployment_scale(name, self.ns).spec.replicas or 0)

    def ready(self, name: str = "consumer") -> int:
        status = self.apps.read_namespaced_deployment_status(name, self.ns).status
        return int(status.ready_replicas or 0)

    def status(self, name: str = "consumer") -> dict[str, Any]:
        obj = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name)
        return dict(obj.get("status") or {})

    def condition(self, name: str, kind: str) -> tuple[str, str] | None:
        for c in self.status(name).get("conditions", []):
            if c["type"] == kind:
                return c["status"], c["reason"]
        return None

    def patch_spec(self, name: str, **spec: Any) -> None:
        body = {"spec": spec}
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name, body)

    def events(self, reason: str) -> list[str]:
        found = self.core.list_namespaced_event(self.ns).items
        return [e.message for e in found if e.reason == reason]


def test_scales_with_lag_up_down_and_to_zero(
    cluster: Any, operator: Callable[..., Operator], kafka_topics: Topics
) -> None:
    ns = cluster.namespace()
    objects = Objects(cluster, ns)
    topic = kafka_topics.topic(4)
    group = kafka_topics.group()
    start_group_at_end(kafka_topics.bootstrap, group, [topic])
    cluster.apply([deployment("consumer", 1)], namespace=ns)
    window = 8
    spec = {
        "deployment": "consumer",
        "consumerGroup": group,
        "topics": [topic],
        "lagThreshold": 10,
        "minReplicas": 1,
        "maxReplicas": 10,
        "scaleDownStabilizationSeconds": window,
        "pollingIntervalSeconds": 1,
    }
    cluster.apply([autoscaler("consumer", **spec)], namespace=ns)
    op = operator(ns, kafka_topics.bootstrap)

    # A backlog of 50 while the group consumes nothing: 50 / 10 = 5, capped at 4 partitions.
    kafka_topics.publish(topic, {0: 20, 1: 20, 2: 10})
    wait_for("scale-up to 4", lambda: objects.replicas() == 4, timeout=60)
    wait_for("4 ready pods", lambda: objects.ready() == 4)
    status = objects.status()
    assert (status["totalLag"], status["partitions"], status["desiredReplicas"]) == (50, 4, 4)
    assert objects.condition("consumer", "Ready") == ("True", "PartitionCap")
    assert any("-> 4 replicas" in m for m in objects.events("Scaled")), op.output()
    metrics = scrape_metrics(f"http://127.0.0.1:{op.metrics_port}/metrics")
    labels = {"namespace": ns, "autoscaler": "consumer"}
    assert metric_total(metrics, "ticketing_autoscaler_lag", **labels) == 50
    assert metric_total(metrics, "ticketing_autoscaler_replicas_desired", **labels) == 4

    # The backlog consumed: down to minReplicas, but only after the stabilization window. The
    # operator's own times tell, not when this test looked: the last poll before the commit
    # saw the backlog, and its recommendation of 4 holds for the whole window.
    saw_backlog = parse_time(objects.status()["lastPollTime"])
    kafka_topics.commit(group, end_offsets(kafka_topics.bootstrap, [topic]))
    wait_for("lag 0 seen", lambda: objects.status().get("totalLag") == 0, timeout=30)
    wait_for("scale-down to 1", lambda: objects.replicas() == 1, timeout=window + 30)
    wait_for("its status", lambda: objects.status().get("desiredReplicas") == 1)
    scaled_down = parse_time(objects.status()["lastScaleTime"])
    assert scaled_down - saw_backlog >= timedelta(seconds=window)

    # minReplicas 0: a lag at or under the activation threshold lets it go to zero ...
    objects.patch_spec("consumer", minReplicas=0, activationLagThreshold=5)
    kafka_topics.publish(topic, {3: 3})
    wait_for("scale to 0", lambda: objects.replicas() == 0, timeout=window + 30)
    assert objects.condition("consumer", "Active") == ("False", "LagAtOrBelowActivation")
    # ... and a lag above it wakes it: 13 / 10 -> 2.
    kafka_topics.publish(topic, {3: 10})
    wait_for("scale 0 -> 2", lambda: objects.replicas() == 2, timeout=30)
    assert objects.condition("consumer", "Active") == ("True", "LagAboveActivation")
    assert op.process.poll() is None, op.output()


def test_kafka_outage_leaves_replicas_and_says_so(
    cluster: Any, operator: Callable[..., Operator]
) -> None:
    ns = cluster.namespace()
    objects = Objects(cluster, ns)
    cluster.apply([deployment("consumer", 3)], namespace=ns)
    spec = {"deployment": "consumer", "consumerGroup": "g", "topics": ["payment.success"]}
    cluster.apply([autoscaler("consumer", **spec, pollingIntervalSeconds=1)], namespace=ns)
    operator(ns, "127.0.0.1:1")  # nothing listens there

    wait_for(
        "KafkaReachable=False",
        lambda: objects.condition("consumer", "KafkaReachable") == ("False", "LagReadFailed"),
        timeout=60,
    )
    assert objects.condition("consumer", "Ready") == ("False", "KafkaUnreachable")
    assert objects.replicas() == 3
    assert objects.events("LagReadFailed") or objects.events("KafkaUnreachable")


VALID = {"deployment": "consumer", "consumerGroup": "g", "topics": ["payment.success"]}


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param({k: v for k, v in VALID.items() if k != "deployment"}, id="no-deployment"),
        pytest.param({**VALID, "topics": []}, id="no-topics"),
        pytest.param({**VALID, "lagThreshold": 0}, id="lag-threshold-0"),
        pytest.param({**VALID, "minReplicas": 5, "maxReplicas": 2}, id="min-over-max"),
        pytest.param({**VALID, "offsetResetPolicy": "none"}, id="bad-reset-policy"),
        pytest.param({**VALID, "scaleDownStabilizationSeconds": 7200}, id="window-too-long"),
        pytest.param(
            {**VALID, "allowIdleConsumers": True, "limitToPartitionsWithLag": True},
            id="both-caps",
        ),
    ],
)
def test_the_api_server_rejects_bad_specs(cluster: Any, spec: dict[str, Any]) -> None:
    ns = cluster.namespace()
    custom = client.CustomObjectsApi(cluster.api)
    with pytest.raises(ApiException) as rejected:
        custom.create_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, autoscaler("bad", **spec)
        )
    assert rejected.value.status == 422, rejected.value.body


def test_the_api_server_fills_defaults(cluster: Any) -> None:
    ns = cluster.namespace()
    custom = client.CustomObjectsApi(cluster.api)
    created = custom.create_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, autoscaler("good", **VALID)
    )
    assert created["spec"]["lagThreshold"] == 10
    assert created["spec"]["offsetResetPolicy"] == "latest"
    assert created["spec"]["scaleDownStabilizationSeconds"] == 300


def test_release_deletes_what_the_stopped_operator_had_finalized(
    cluster: Any, operator: Callable[..., Operator], kafka_bootstrap: str
) -> None:
    """The chart's pre-delete hook: without it the objects would stay Terminating."""
    ns = cluster.namespace()
    objects = Objects(cluster, ns)
    cluster.apply([deployment("consumer", 1)], namespace=ns)
    names = ["first", "second"]
    cluster.apply([autoscaler(n, **VALID) for n in names], namespace=ns)
    op = operator(ns, kafka_bootstrap)

    def finalized() -> bool:
        return all(
            objects.custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, n)[
                "metadata"
            ].get("finalizers")
            for n in names
        )

    wait_for("kopf's finalizers", finalized, timeout=30)
    op.stop()

    command = [str(Path(sys.executable).with_name("lag-autoscaler")), "release", "-n", ns]
    env = {**os.environ, "KUBECONFIG": cluster.kubeconfig}
    subprocess.run(command, env=env, check=True, timeout=60)

    listing = objects.custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)
    assert listing["items"] == []


def test_two_replicas_elect_one_and_fail_over(
    cluster: Any, operator: Callable[..., Operator], kafka_topics: Topics
) -> None:
    """kopf peering: the higher priority works, the other pauses until it is gone."""
    ns = cluster.namespace()
    objects = Objects(cluster, ns)
    topic, group = kafka_topics.topic(1), kafka_topics.group()
    start_group_at_end(kafka_topics.bootstrap, group, [topic])  # no lag: minReplicas rules
    peering = {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "la"}}
    cluster.apply([peering, deployment("consumer", 1)], namespace=ns)
    spec = {"deployment": "consumer", "consumerGroup": group, "topics": [topic]}
    cluster.apply([autoscaler("consumer", **spec, minReplicas=2, pollingIntervalSeconds=1)], ns)

    def start(priority: int) -> Operator:
        return operator(
            ns, kafka_topics.bootstrap, ("--peering", "la", "--priority", str(priority))
        )

    low = start(10)
    wait_for("the low one works alone", lambda: objects.replicas() == 2, timeout=60)
    high = start(20)
    wait_for("the low one pauses", lambda: "Pausing operations" in low.output(), timeout=60)
    assert "Pausing operations" not in high.output()

    # Only the working replica reacts to a change.
    objects.patch_spec("consumer", minReplicas=3)
    wait_for("the high one scales", lambda: objects.replicas() == 3, timeout=30)
    assert "Scaled" not in low.output().split("Pausing operations")[-1]

    high.stop()  # a clean exit takes its peer record away

    def resumed() -> bool:
        return "Resuming operations" in low.output().split("Pausing operations")[-1]

    wait_for("the low one resumes", resumed, timeout=60)
    objects.patch_spec("consumer", minReplicas=4)
    wait_for("the low one scales again", lambda: objects.replicas() == 4, timeout=30)
