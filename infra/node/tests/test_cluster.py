"""The kind profiles' releases on the real node of `make cluster-up` (`make cluster-test`).

The images are loaded into the node (`node.sh load-release`), the chart is installed with
charts/profiles.sh's values for the profile, then infra/node/values.yaml (the infrastructure
images built here), then this test's own values (a short load generator round, a short
scaling window). Checks, against the real Pods, Services and in-cluster infrastructure:
1. every Pod Running and Ready under the chart's security context, the hook Jobs' topics and
   schema present;
2. the load generator's payments, through payment-api's Service, with consumer Pods deleted
   in the middle of the rush: every effect exactly once;
3. one payment's trace in the in-cluster Jaeger spans payment-api and each consumer;
4. kind-operator: the lag-autoscaler scales a consumer from 1 to N on lag and back;
5. `helm upgrade` rolls out, `helm uninstall` leaves the namespace empty.
The host reaches Pods and ClusterIPs directly: the node's bridge and kube-proxy's nftables
rules are on this machine. Kafka's advertised listener is a cluster DNS name, so Kafka is
read from inside payment-api's Pod (`kubectl exec`, python with the image's client).

Not collected by `make test` (infra/ is outside pytest's testpaths). Run it with the node up:
    make cluster-up && make cluster-test
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import sqlalchemy
from alembic.script import ScriptDirectory
from node_api import ENV, NODE_SH, REPO, kubectl, ready_node, run, shell_env
from payment_api.config import Settings
from payment_api.migrations import alembic_config
from sqlalchemy import text
from ticketing_events.topics import CONSUMER_GROUPS, PAYMENT_FAILED, PAYMENT_SUCCESS, consumers_of

sys.path.insert(0, str(REPO / "tests"))
from jaeger import Trace, fetch_trace

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(1500)]

# The namespace of the release under test, cluster-test-PROFILE (set by install).
NAMESPACE = ["cluster-test"]
# CLUSTER_TEST_KEEP=1: a release installed in its namespace is reused, and left installed at
# the end (to iterate on the checks).
KEEP = os.environ.get("CLUSTER_TEST_KEEP") == "1"
RELEASE = "ticketing"
CONSUMERS = tuple(g.service for g in CONSUMER_GROUPS.values())
# The consumers that the rush's test deletes a Pod of, mid-rush.
DELETED = ("ranking-consumer", "dataplatform-consumer")
# kind-operator: the consumer the operator scales, and the bounds and window it is given.
SCALED = "dataplatform-consumer"
MAX_REPLICAS = 3
LAG_THRESHOLD = 20
WINDOW_S = 20
POLL_S = 2


HELM = shell_env('eval "$(bash charts/tools.sh --kind 2>/dev/null)"', "HELM")["HELM"]
# What a measurement of the run saw, printed at the end (`make cluster-test` runs with -s).
REPORT: dict[str, Any] = {}


def ns() -> str:
    return NAMESPACE[0]


def kget(*args: str) -> Any:
    return json.loads(kubectl("-n", ns(), "get", *args, "-o", "json"))


def helm(*args: str, namespace: str = "", timeout: float = 900) -> str:
    kube = ("--kubeconfig", ENV["NODE_KUBECONFIG"], "--namespace", namespace or ns())
    return run(HELM, *args, *kube, timeout=timeout)


def wait_until(what: str, check: Callable[[], Any], timeout: float, every: float = 1.0) -> Any:
    """check()'s first truthy result."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(every)


def node_memory_mib() -> dict[str, int]:
    """The Pods' memory (the kubelet's kubepods cgroup, v1 memory hierarchy) and the host's."""
    stat = dict(
        line.split()
        for line in Path("/sys/fs/cgroup/memory/kubepods/memory.stat").read_text().splitlines()
    )
    free = dict(
        (line.split(":")[0], int(line.split()[1]))
        for line in Path("/proc/meminfo").read_text().splitlines()
    )
    return {
        "pods_rss": int(stat["total_rss"]) >> 20,
        "pods_cache": int(stat["total_cache"]) >> 20,
        "host_used": (free["MemTotal"] - free["MemAvailable"]) >> 10,
    }


@dataclass
class Release:
    profile: str
    namespace: str
    values: list[str]
    install_s: float = 0.0
    uninstalled: bool = False

    def service_url(self, component: str, port: int) -> str:
        service = kget("service", f"{RELEASE}-{component}")
        return f"http://{service['spec']['clusterIP']}:{port}"

    def engine(self) -> sqlalchemy.Engine:
        ip = kget("service", f"{RELEASE}-postgresql")["spec"]["clusterIP"]
        secret = kget("secret", f"{RELEASE}-connections")["data"]
        import base64

        url = base64.b64decode(secret["DATABASE_URL"]).decode()
        # the in-cluster URL, with the Service's name swapped for its ClusterIP
        return sqlalchemy.create_engine(re.sub(r"@[^:/]+", f"@{ip}", url, count=1))

    def redis(self) -> redis.Redis:
        return redis.Redis(host=kget("service", f"{RELEASE}-redis")["spec"]["clusterIP"])

    def kafka(self, code: str) -> Any:
        """Run python `code` in payment-api's Pod (its Kafka client, the cluster's DNS); its
        last line of output as JSON."""
        out = kubectl(
            "-n", ns(), "exec", f"deploy/{RELEASE}-payment-api", "--", "python", "-c", code
        )
        return json.loads(out.strip().splitlines()[-1])


def profile_values(profile: str) -> list[str]:
    return run("bash", "charts/profiles.sh", profile).split()


def install(profile: str, test_values: dict[str, Any], work: Path) -> Release:
    values = [*profile_values(profile), str(REPO / "infra/node/values.yaml")]
    (work / "test.yaml").write_text(json.dumps(test_values))  # JSON is YAML
    values.append(str(work / "test.yaml"))
    flags = [f for v in values for f in ("-f", v)]
    version = json.loads(kubectl("version", "-o", "json"))["serverVersion"]["gitVersion"]
    rendered = helm("template", RELEASE, "charts/ticketing", "--kube-version", version, *flags)
    (work / "release.yaml").write_text(rendered)
    run("bash", str(NODE_SH), "load-release", str(work / "release.yaml"), str(work / "images.yaml"))
    flags += ["-f", str(work / "images.yaml")]
    NAMESPACE[0] = f"cluster-test-{profile}"
    reuse = KEEP and installed(ns())
    uninstall_leftovers(but=ns() if reuse else None)
    if reuse:
        return Release(profile, ns(), flags)
    start = time.monotonic()
    # No --wait: Helm waits for the hook Jobs (topics, schema), then the rollouts below.
    try:
        helm(
            "install", RELEASE, "charts/ticketing", "--create-namespace", "--timeout", "10m", *flags
        )
        for deployment in kubectl("-n", ns(), "get", "deploy", "-o", "name").split():
            kubectl("-n", ns(), "rollout", "status", deployment, "--timeout=600s", timeout=620)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{diagnosis()}") from None
    release = Release(profile, ns(), flags, install_s=time.monotonic() - start)
    REPORT[f"{profile}: install to every Deployment rolled out, s"] = round(release.install_s, 1)
    return release


def diagnosis() -> str:
    """The namespace's Pods, and the last log lines of those not Ready."""
    lines = [kubectl("-n", ns(), "get", "pods", "-o", "wide", check=False)]
    for pod in kget("pods")["items"]:
        if not any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in pod["status"].get("conditions", [])
        ):
            name = pod["metadata"]["name"]
            logs = kubectl("-n", ns(), "logs", name, "--all-containers", "--tail=15", check=False)
            lines.append(f"--- {name}\n{logs}")
    return "\n".join(lines)


def installed(namespace: str) -> bool:
    kube = ("--kubeconfig", ENV["NODE_KUBECONFIG"], "--namespace", namespace)
    return subprocess.run([HELM, "status", RELEASE, *kube], capture_output=True).returncode == 0


def uninstall_leftovers(but: str | None) -> None:
    """The node holds one release at a time (2 cores): a release still installed in a
    cluster-test namespace (an interrupted run's, a failed test's) goes first, namespace too,
    but the one in namespace ``but``."""
    for name in kubectl("get", "namespaces", "-o", "name").split():
        namespace = name.removeprefix("namespace/")
        if namespace.startswith("cluster-test-") and namespace != but:
            if installed(namespace):
                helm("uninstall", RELEASE, "--wait", "--timeout", "5m", namespace=namespace)
            kubectl("delete", "namespace", namespace, "--ignore-not-found", "--timeout=300s")


def uninstall(release: Release) -> None:
    if not release.uninstalled and installed(release.namespace):
        helm("uninstall", RELEASE, "--wait", "--timeout", "5m", namespace=release.namespace)
    release.uninstalled = True


@pytest.fixture(scope="module", autouse=True)
def report() -> Iterator[None]:
    """Prints what the run measured, at the end (`make cluster-test` shows it)."""
    yield
    for key, value in REPORT.items():
        print(f"cluster-test: {key}: {value}")


@pytest.fixture(scope="module")
def node() -> str:
    return ready_node()


def loadgen_values(fans: int, rate: int) -> dict[str, Any]:
    # One round, started by the test (replicas 0 until then).
    env = {"LOADGEN_FANS": fans, "LOADGEN_RATE": rate, "LOADGEN_ROUNDS": 1, "LOADGEN_PAUSE": 0}
    return {"replicas": 0, "env": env}


@pytest.fixture(scope="module")
def kind_release(node: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    values = {"components": {"loadgen": loadgen_values(fans=300, rate=5)}}
    release = install("kind", values, tmp_path_factory.mktemp("kind"))
    REPORT["kind: node memory at rest, MiB"] = node_memory_mib()
    yield release
    if not KEEP:
        uninstall(release)


# -- 1. Pods, security context, hooks ------------------------------------------------------

# Read from PID 1 of each container: its uid, capabilities, no_new_privs, seccomp mode, and
# whether the root filesystem takes a write (`touch` fails on a read-only one).
PROC_PROBE = (
    "grep -E '^(Uid|CapEff|CapPrm|NoNewPrivs|Seccomp):' /proc/1/status;"
    " touch /.rw 2>/dev/null && echo RW=1 || echo RW=0"
)


def test_every_pod_runs_ready_under_the_chart_security_context(kind_release: Release) -> None:
    pods = kget("pods")["items"]
    components = {p["metadata"]["labels"]["app.kubernetes.io/name"] for p in pods}
    assert {"payment-api", "dataplatform-stub", "kafka", "redis", "postgresql", "jaeger"} | set(
        CONSUMERS
    ) <= components
    for pod in pods:
        name = pod["metadata"]["name"]
        assert pod["status"]["phase"] == "Running", name
        ready = [c for c in pod["status"]["conditions"] if c["type"] == "Ready"]
        assert ready[0]["status"] == "True", name
        spec = pod["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"] and not sc["capabilities"].get("add")
            facts = dict(
                line.replace(":", "=", 1).split("=", 1)
                for line in kubectl(
                    "-n", ns(), "exec", name, "-c", c["name"], "--", "sh", "-c", PROC_PROBE
                ).splitlines()
            )
            assert facts["Uid"].split()[0] != "0", (name, facts)
            assert int(facts["CapEff"], 16) == 0 and int(facts["CapPrm"], 16) == 0, name
            assert facts["NoNewPrivs"].strip() == "1", name
            assert facts["Seccomp"].strip() == "2", name  # filter mode: RuntimeDefault
            assert facts["RW"] == "0", f"{name}: root filesystem writable"


def test_the_hook_jobs_created_the_topics_and_the_schema(kind_release: Release) -> None:
    missing = kind_release.kafka(
        "import json, os\n"
        "from confluent_kafka.admin import AdminClient\n"
        "from ticketing_events.topics import all_topics\n"
        "admin = AdminClient({'bootstrap.servers': os.environ['KAFKA_BOOTSTRAP_SERVERS']})\n"
        "have = admin.list_topics(timeout=10).topics\n"
        "print(json.dumps({'registry': len(all_topics()),"
        " 'missing': [t for t in all_topics() if t not in have],"
        " 'partitions': len(have['payment.success'].partitions)}))"
    )
    assert missing["registry"] > 0 and missing["missing"] == []
    assert missing["partitions"] == 6  # the chart's topics.partitions
    engine = kind_release.engine()
    with engine.connect() as conn:
        applied = conn.execute(text("select version_num from alembic_version")).scalars().all()
    engine.dispose()
    head = ScriptDirectory.from_config(alembic_config(Settings())).get_current_head()
    assert applied == [head]


# -- 2 and 5. The load generator's rush, consumer Pods deleted in the middle ----------------

# The lag of a consumer group over its topics (the image's registry), and the partitions of
# each of its members, read from inside the cluster.
GROUP_PROBE = """
import json, os
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from ticketing_events.topics import CONSUMER_GROUPS
bootstrap = os.environ['KAFKA_BOOTSTRAP_SERVERS']
group = {group!r}
(topics,) = [g.topics for g in CONSUMER_GROUPS.values() if g.name == group]
probe = Consumer({{'bootstrap.servers': bootstrap, 'group.id': group}})
tps = [TopicPartition(t, p) for t in topics
       for p in probe.list_topics(t, timeout=10).topics[t].partitions]
lag = 0
for tp in probe.committed(tps, timeout=10):
    low, high = probe.get_watermark_offsets(tp, timeout=10)
    lag += high - (tp.offset if tp.offset >= 0 else low)
probe.close()
admin = AdminClient({{'bootstrap.servers': bootstrap}})
(described,) = admin.describe_consumer_groups([group]).values()
members = [sorted(f'{{a.topic}}/{{a.partition}}' for a in m.assignment.topic_partitions)
           for m in described.result().members]
print(json.dumps({{'lag': lag, 'members': members, 'partitions': len(tps)}}))
"""


def group_of(service: str) -> str:
    (deployment,) = kget("deploy", "-l", f"app.kubernetes.io/name={service}")["items"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    (group,) = [e["value"] for e in container["env"] if e["name"] == "CONSUMER_GROUP"]
    return str(group)


def group_state(release: Release, service: str) -> dict[str, Any]:
    return dict(release.kafka(GROUP_PROBE.format(group=group_of(service))))


class Sampler(threading.Thread):
    """In a `with` block, calls `sample` every `every` seconds; keeps (seconds, result) pairs."""

    def __init__(self, sample: Callable[[], Any], every: float) -> None:
        super().__init__(daemon=True)
        self.sample, self.every = sample, every
        self.start_time = time.monotonic()
        self.samples: list[tuple[float, Any]] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            self.samples.append((time.monotonic() - self.start_time, self.sample()))
            self.stopped.wait(self.every)

    def __enter__(self) -> Sampler:
        self.start()
        return self

    def __exit__(self, error: type[BaseException] | None, *exc: object) -> None:
        """Stops sampling; unless the block failed, one more sample: the state it waited for."""
        self.stopped.set()
        self.join()
        if error is None:
            self.samples.append((time.monotonic() - self.start_time, self.sample()))


def start_loadgen() -> None:
    kubectl("-n", ns(), "scale", f"deploy/{RELEASE}-loadgen", "--replicas=1")


def stop_loadgen() -> None:
    """Back to the chart's replicas (0), so that a later `helm upgrade` changes nothing of
    kubectl's."""
    kubectl("-n", ns(), "scale", f"deploy/{RELEASE}-loadgen", "--replicas=0")


def round_done() -> str | None:
    logs = kubectl("-n", ns(), "logs", f"deploy/{RELEASE}-loadgen", check=False)
    found = re.search(r"round 1 done: (.*)", logs)
    return found.group(1) if found else None


def drained(release: Release, services: tuple[str, ...]) -> None:
    """The outbox published and every group's lag zero."""
    engine = release.engine()

    def unpublished() -> bool:
        with engine.connect() as conn:
            query = "select count(*) from outbox where published_at is null"
            return conn.execute(text(query)).scalar() == 0

    wait_until("the outbox published", unpublished, 300)
    engine.dispose()
    for service in services:
        wait_until(
            f"{service} drained", lambda s=service: group_state(release, s)["lag"] == 0, 600, 3
        )


@dataclass
class Rush:
    tally: str
    deleted: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="module")
def rush(kind_release: Release) -> Rush:
    """The load generator's round; a Pod of each DELETED consumer deleted (`kubectl delete
    pod`, the chart's grace period) once payments flow; every group drained."""
    engine = kind_release.engine()

    def payments() -> bool:
        with engine.connect() as conn:
            return int(conn.execute(text("select count(*) from payments")).scalar() or 0) >= 20

    result = Rush(tally="")
    with Sampler(node_memory_mib, 2) as memory:
        start_loadgen()
        wait_until("payments of the rush", payments, 600, 2)
        engine.dispose()
        for service in DELETED:
            (pod,) = kget("pods", "-l", f"app.kubernetes.io/name={service}")["items"]
            kubectl("-n", ns(), "delete", "pod", pod["metadata"]["name"], timeout=120)
            result.deleted[service] = pod["metadata"]["name"]
        for service in DELETED:
            deployment = f"deploy/{RELEASE}-{service}"
            kubectl("-n", ns(), "rollout", "status", deployment, "--timeout=300s")
        result.tally = wait_until("the load generator's round", round_done, 900, 3)
        stop_loadgen()
        drained(kind_release, CONSUMERS)
    samples = [m for _, m in memory.samples]
    REPORT["kind: load generator's round"] = result.tally
    REPORT["kind: node memory under the rush (peak), MiB"] = {
        k: max(m[k] for m in samples) for k in samples[0]
    }
    return result


def effects(release: Release) -> dict[str, list[str]]:
    """What each consumer failed to do exactly once, for every payment made so far."""
    problems: dict[str, list[str]] = {s: [] for s in CONSUMERS}
    engine = release.engine()
    with engine.connect() as conn:
        events = conn.execute(
            text(
                "select event_id, event_type, payload from outbox where event_type like 'payment.%'"
            )
        ).all()
        confirmed = dict(
            conn.execute(
                text(
                    "select schedule_id, count(*) from reservations where status = 'confirmed'"
                    " group by 1"
                )
            ).all()
        )
        sold = {
            s: n
            for s, n in conn.execute(text("select schedule_id, sold from schedule_sales")).all()
            if n
        }
        succeeded = conn.execute(
            text("select count(*) from payments where status = 'succeeded'")
        ).scalar()
        cancelled = conn.execute(
            text(
                "select r.id, r.status, s.status, s.reservation_id from reservations r"
                " join seats s on s.id = r.seat_id where r.id = any(:ids)"
            ),
            {
                "ids": [
                    json.loads(p)["payload"]["reservation_id"]
                    for _, kind, p in events
                    if kind == "payment.failed"
                ]
            },
        ).all()
    engine.dispose()
    successes = [
        (e, json.loads(p)["payload"]) for e, kind, p in events if kind == "payment.success"
    ]
    failures = [e for e, kind, _ in events if kind == "payment.failed"]
    assert successes and failures, "the rush made no successful or no failed payment"
    assert len(successes) == succeeded == sum(confirmed.values())
    # ranking: each schedule's sales counted once per confirmed reservation
    if sold != confirmed:
        problems["ranking-consumer"].append(f"sold {sold} != confirmed {confirmed}")
    # data platform: each payment received once
    stub = httpx.Client(base_url=release.service_url("dataplatform-stub", 8090), timeout=10)
    for event_id, _ in successes:
        received = stub.get(f"/payments/{event_id}").json().get("received")
        if received != 1:
            problems["dataplatform-consumer"].append(f"{event_id} received {received}")
    stub.close()
    # cleanup: the sold seats' holds released and their payers' queue tokens expired
    r = release.redis()
    for event_id, payload in successes:
        if r.exists(f"seat:hold:{payload['seat_id']}", f"queue:active:{payload['queue_token_id']}"):
            problems["cleanup-consumer"].append(f"{event_id}: hold or token left")
    r.close()
    # compensator: each failed payment's reservation cancelled, its seat no longer its own
    if len(cancelled) != len(failures):
        problems["compensator"].append(f"{len(failures)} failed, {len(cancelled)} found")
    for rid, status, seat_status, holder in cancelled:
        if status != "cancelled" or (holder == rid and seat_status != "available"):
            problems["compensator"].append(f"reservation {rid} {status}, seat {seat_status}")
    return problems


def test_a_consumer_pod_deleted_under_load_loses_and_doubles_nothing(
    kind_release: Release, rush: Rush
) -> None:
    for service, old in rush.deleted.items():
        (pod,) = kget("pods", "-l", f"app.kubernetes.io/name={service}")["items"]
        assert pod["metadata"]["name"] != old, f"{service}: its Pod was not replaced"
    found = effects(kind_release)
    assert {s: found[s] for s in rush.deleted} == {s: [] for s in rush.deleted}


def test_every_effect_of_the_load_generators_payments_happens_exactly_once(
    kind_release: Release, rush: Rush
) -> None:
    paid = int(re.search(r"paid (\d+)", rush.tally).group(1))  # type: ignore[union-attr]
    assert paid > 0, rush.tally
    assert effects(kind_release) == {s: [] for s in CONSUMERS}


# -- 3. Traces ------------------------------------------------------------------------------


def payment_trace(release: Release, status: int, consumers: tuple[str, ...]) -> Trace:
    """A trace of the rush's payments that answered `status`, once it has every consumer."""
    jaeger = release.service_url("jaeger", 16686)
    found = httpx.get(
        f"{jaeger}/api/traces",
        params={"service": "payment-api", "operation": "POST /v1/payments", "limit": 200},
        timeout=30,
    ).json()["data"]
    for data in found:
        for span in data["spans"]:
            tags = {t["key"]: t["value"] for t in span.get("tags", [])}
            code = tags.get("http.response.status_code", tags.get("http.status_code"))
            if span["operationName"] == "POST /v1/payments" and int(code or 0) == status:
                return fetch_trace(
                    jaeger,
                    data["traceID"],
                    lambda t: all(t.of(s, "consumer") for s in consumers),
                    timeout=60,
                )
    raise AssertionError(f"no payment answered {status} among {len(found)} traces")


def assert_spans(t: Trace, topic: str, consumers: tuple[str, ...]) -> None:
    (server,) = [s for s in t.of("payment-api", "server") if s.name == "POST /v1/payments"]
    (publish,) = [s for s in t.of("payment-api", "producer") if s.name == f"{topic} publish"]
    assert t.descends_from(publish, server)
    for service in consumers:
        (span,) = t.of(service, "consumer")
        assert t.descends_from(span, publish), service


def test_one_payments_trace_spans_payment_api_and_each_consumer(
    kind_release: Release, rush: Rush
) -> None:
    consumers = consumers_of(PAYMENT_SUCCESS)
    paid = payment_trace(kind_release, 201, consumers)
    assert_spans(paid, "payment.success", consumers)
    assert not paid.of("compensator")
    failed_consumers = consumers_of(PAYMENT_FAILED)
    failed = payment_trace(kind_release, 402, failed_consumers)
    assert_spans(failed, "payment.failed", failed_consumers)
    REPORT["kind: a paid payment's trace"] = f"{paid.trace_id}: {sorted(paid.services)}"
    REPORT["kind: a failed payment's trace"] = f"{failed.trace_id}: {sorted(failed.services)}"


# -- 6. Upgrade and uninstall ---------------------------------------------------------------

# Whatever a release leaves in its namespace (the namespace's own default ServiceAccount and
# root CA ConfigMap aside).
KINDS = (
    "all,configmap,secret,serviceaccount,role,rolebinding,networkpolicy,persistentvolumeclaim,"
    "poddisruptionbudget,job,consumerlagautoscalers"
)
OWN = {"configmap/kube-root-ca.crt", "serviceaccount/default"}


def assert_uninstall_leaves_nothing(release: Release) -> None:
    uninstall(release)

    def left() -> set[str]:
        return set(kubectl("-n", release.namespace, "get", KINDS, "-o", "name").split()) - OWN

    wait_until(f"the namespace emptied (left: {left()})", lambda: not left(), 180, 2)


INFRA = ("kafka", "redis", "postgresql", "jaeger")


def test_helm_upgrade_rolls_out_and_uninstall_leaves_nothing(
    kind_release: Release, rush: Rush, tmp_path: Path
) -> None:
    before = {d["metadata"]["name"]: d for d in kget("deploy")["items"]}
    # A new annotation on every component's Pods (the infrastructure's are not components).
    mark = {"cluster-test/upgrade": str(time.time_ns())}
    changed = tmp_path / "changed.yaml"
    changed.write_text(json.dumps({"components": {"default": {"podAnnotations": mark}}}))
    flags = [*kind_release.values, "-f", str(changed)]
    helm("upgrade", RELEASE, "charts/ticketing", "--timeout", "10m", *flags)
    for name, old in before.items():
        kubectl("-n", ns(), "rollout", "status", f"deploy/{name}", "--timeout=600s", timeout=620)
        new = kget("deploy", name)
        grown = new["metadata"]["generation"] > old["metadata"]["generation"]
        infra = name.removeprefix(f"{RELEASE}-") in INFRA
        assert grown != infra, f"{name}: generation {new['metadata']['generation']}"
        assert new["status"]["observedGeneration"] == new["metadata"]["generation"], name
    # A rollout is complete while its old Pods are still terminating (not counted in its
    # replicas): those are not checked.
    for pod in kget("pods")["items"]:
        component = pod["metadata"]["labels"]["app.kubernetes.io/name"]
        if component not in INFRA and "deletionTimestamp" not in pod["metadata"]:
            annotations = pod["metadata"].get("annotations", {})
            assert annotations.items() >= mark.items(), (pod["metadata"]["name"], annotations)
    assert_uninstall_leaves_nothing(kind_release)


# -- 4. kind-operator: the lag-autoscaler scales a consumer on its lag -----------------------


@pytest.fixture(scope="module")
def operator_release(node: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    keda = {
        "lagThreshold": LAG_THRESHOLD,
        "activationLagThreshold": 5,
        "pollingInterval": POLL_S,
        "cooldownPeriod": WINDOW_S,
    }
    values = {
        "components": {
            # the operator scales one consumer; the others keep one replica
            "default": {"autoscaling": {"mode": "none"}},
            SCALED: {
                "autoscaling": {
                    "mode": "operator",
                    "minReplicas": 1,
                    "maxReplicas": MAX_REPLICAS,
                    "keda": keda,
                }
            },
            # slower than the kind profile's, so that a short rush makes lag
            "dataplatform-stub": {"env": {"DATAPLATFORM_STUB_LATENCY_MS": 500}},
            "loadgen": loadgen_values(fans=400, rate=20),
        }
    }
    release = install("kind-operator", values, tmp_path_factory.mktemp("operator"))
    yield release
    if not KEEP:
        uninstall(release)


def scaling_sample() -> dict[str, Any]:
    deployment = kget("deploy", f"{RELEASE}-{SCALED}")
    status = kget("consumerlagautoscalers", f"{RELEASE}-{SCALED}").get("status", {})
    return {
        "replicas": deployment["spec"]["replicas"],
        "ready": deployment["status"].get("readyReplicas", 0),
        "lag": status.get("totalLag"),
    }


def test_the_operator_scales_a_consumer_out_on_lag_and_back_after_its_window(
    operator_release: Release,
) -> None:
    (operator,) = kget("deploy", "-l", "app.kubernetes.io/name=lag-autoscaler")["items"]
    account = operator["spec"]["template"]["spec"]["serviceAccountName"]
    assert (
        kget("serviceaccount", account)["metadata"]["labels"]["app.kubernetes.io/managed-by"]
        == "Helm"
    )
    for pod in kget("pods", "-l", "app.kubernetes.io/name=lag-autoscaler")["items"]:
        assert pod["spec"]["serviceAccountName"] == account
        assert pod["status"]["phase"] == "Running"
    assert scaling_sample()["replicas"] == 1

    def shared() -> dict[str, Any] | None:
        ready = scaling_sample()["ready"]
        state = group_state(operator_release, SCALED)
        members = state["members"]
        # Every member reads the busy topic: the group's redrive topic has one partition,
        # so a balanced assignment cannot leave a Pod with redrive partitions only.
        busy = [any(p.startswith("payment.success/") for p in m) for m in members]
        # Each partition (of its topic and of the group's redrive topic) to one member only,
        # and all of the topic's: a cooperative rebalance passes through an assignment
        # without the partitions it moves.
        assigned = [p for m in members for p in m]
        whole = len([p for p in assigned if p.startswith("payment.success/")])
        once = len(assigned) == len(set(assigned))
        joined = ready > 1 and len(members) == ready and all(busy)
        return state if joined and once and whole == state["partitions"] else None

    def lag() -> int:
        return int(group_state(operator_release, SCALED)["lag"])

    with Sampler(scaling_sample, 1) as sampler:
        start_loadgen()
        wait_until("scaled out", lambda: scaling_sample()["replicas"] > 1, 600, 2)
        state = wait_until("the new Pods joined and shared the partitions", shared, 300, 3)
        wait_until("the round", round_done, 900, 3)
        stop_loadgen()
        wait_until("lag drained", lambda: lag() == 0, 600, 3)
        wait_until("scaled back in", lambda: scaling_sample()["replicas"] == 1, 300, 2)
    samples = sampler.samples

    replicas = [s["replicas"] for _, s in samples]
    assert max(replicas) <= MAX_REPLICAS
    # Down to one replica no sooner than the window after the lag last asked for more. The
    # lag sampled is the operator's status, written at its poll and read here up to a poll
    # and a kubectl call later (a CI run saw 15.8 s for a 20 s window): three polls of slack,
    # still far from a scale-in with no window (within a poll of the lag falling).
    above = [t for t, s in samples if (s["lag"] or 0) > LAG_THRESHOLD]
    down = next(t for t, s in samples if t > above[-1] and s["replicas"] == 1)
    assert down - above[-1] >= WINDOW_S - 3 * POLL_S, (above[-1], down)
    timeline = [
        (round(t), s["replicas"], s["lag"])
        for i, (t, s) in enumerate(samples)
        if i == 0 or s["replicas"] != samples[i - 1][1]["replicas"]
    ]
    REPORT["kind-operator: (s, replicas, lag) at each change"] = timeline
    REPORT["kind-operator: peak lag"] = max(s["lag"] or 0 for _, s in samples)
    REPORT["kind-operator: members' partitions"] = state["members"]


def test_uninstalling_the_operator_profile_leaves_nothing(operator_release: Release) -> None:
    assert_uninstall_leaves_nothing(operator_release)
