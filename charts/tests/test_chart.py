"""The chart's rendered objects, read from the golden manifests under charts/ticketing/examples/.

`make chart-check` (part of `make test`) renders each ci/ profile, fails when a render differs
from its golden file and validates every object against the Kubernetes schemas and the CRDs; these
tests check what the schemas cannot: the wiring.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from lag_autoscaler.main import parser
from lag_autoscaler.spec import GROUP, KIND, PLURAL, VERSION, AutoscalerSpec
from ticketing_events.topics import CONSUMER_GROUPS

CHART = Path(__file__).resolve().parents[1] / "ticketing"
EXAMPLES = CHART / "examples"
PROFILES = ("default", "kind", "keda", "hpa", "external", "operator")
RELEASE = "ticketing"
NAMESPACE = "ticketing"
# The objects of each profile; a change here is a change of the chart's footprint.
OBJECT_COUNTS = {"default": 35, "kind": 44, "keda": 49, "hpa": 40, "external": 28, "operator": 45}
OPERATOR = f"{RELEASE}-lag-autoscaler"
# The consumers that ci/operator-values.yaml puts in mode operator.
OPERATED = {"ranking-consumer", "cleanup-consumer"}
INFRA = {"kafka", "redis", "postgresql", "jaeger"}
# Passwords that the ci/ values files put into the chart's own Secret.
CI_PASSWORDS = ("ci-database-password", "ci-redis-password", "ticketing-dev")

Manifest = dict[str, Any]


def load(profile: str) -> list[Manifest]:
    text = (EXAMPLES / f"{profile}.yaml").read_text()
    return [doc for doc in yaml.safe_load_all(text) if doc]


@pytest.fixture(scope="module", params=PROFILES)
def profile(request: pytest.FixtureRequest) -> tuple[str, list[Manifest]]:
    return request.param, load(request.param)


def of_kind(objects: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def env_of(deployment: Manifest) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def pod_specs(objects: list[Manifest]) -> list[tuple[str, Manifest]]:
    specs = []
    for o in objects:
        name = f"{o['kind']} {o['metadata']['name']}"
        if o["kind"] in ("Deployment", "Job"):
            specs.append((name, o["spec"]["template"]["spec"]))
        elif o["kind"] == "Pod":
            specs.append((name, o["spec"]))
    return specs


def test_object_counts(profile: tuple[str, list[Manifest]]) -> None:
    name, objects = profile
    counts = Counter(o["kind"] for o in objects)
    print(f"{name}: {len(objects)} objects {dict(sorted(counts.items()))}")
    assert len(objects) == OBJECT_COUNTS[name]


@pytest.mark.parametrize("group", sorted(CONSUMER_GROUPS))
def test_each_group_has_its_deployment_and_scaled_object(group: str) -> None:
    objects = load("keda")
    partitions = int(topics_job_arg(objects, "--partitions"))
    spec = CONSUMER_GROUPS[group]
    name = f"{RELEASE}-{spec.service}"

    env = env_of(of_kind(objects, "Deployment")[name])
    assert env["CONSUMER_GROUP"] == group
    assert env["OTEL_SERVICE_NAME"] == spec.service

    scaled = of_kind(objects, "ScaledObject")[name]
    assert scaled["spec"]["scaleTargetRef"]["name"] == name
    triggers = [t["metadata"] for t in scaled["spec"]["triggers"]]
    assert [t["topic"] for t in triggers] == list(spec.topics)  # one trigger per topic
    for trigger in triggers:
        assert trigger["consumerGroup"] == group
        assert trigger["offsetResetPolicy"] == env["CONSUMER_AUTO_OFFSET_RESET"] == "earliest"
        assert trigger["bootstrapServers"] == env["KAFKA_BOOTSTRAP_SERVERS"]
        if trigger["allowIdleConsumers"] != "true":
            assert scaled["spec"]["maxReplicaCount"] <= partitions


def test_every_group_of_the_registry_is_deployed(profile: tuple[str, list[Manifest]]) -> None:
    _, objects = profile
    envs = [env_of(d) for d in of_kind(objects, "Deployment").values()]
    groups = {env["CONSUMER_GROUP"] for env in envs if "CONSUMER_GROUP" in env}
    assert groups == set(CONSUMER_GROUPS)


def test_hpa_scales_consumers_on_cpu() -> None:
    objects = load("hpa")
    hpas = of_kind(objects, "HorizontalPodAutoscaler")
    assert set(hpas) == {f"{RELEASE}-{g.service}" for g in CONSUMER_GROUPS.values()}
    deployments = of_kind(objects, "Deployment")
    for name, hpa in hpas.items():
        assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
        assert "replicas" not in deployments[name]["spec"]  # the HPA owns the count


def test_security_context_everywhere(profile: tuple[str, list[Manifest]]) -> None:
    _, objects = profile
    specs = pod_specs(objects)
    assert specs
    for name, spec in specs:
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        # Only the operator and its hook talk to the Kubernetes API.
        with_token = spec.get("serviceAccountName") == OPERATOR
        assert spec["automountServiceAccountToken"] is with_token, name
        mounts_tmp = {v["name"] for v in spec.get("volumes", [])}
        for container in spec["containers"]:
            ctx = container["securityContext"]
            assert ctx["allowPrivilegeEscalation"] is False, name
            assert ctx["readOnlyRootFilesystem"] is True, name
            assert ctx["capabilities"]["drop"] == ["ALL"], name
            assert container["resources"]["limits"]["memory"], name
            if name.startswith("Deployment") or name.startswith("Job"):
                tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
                assert tmp and tmp[0]["name"] in mounts_tmp, name


def test_probes_on_the_health_endpoints(profile: tuple[str, list[Manifest]]) -> None:
    _, objects = profile
    for name, deployment in of_kind(objects, "Deployment").items():
        component = deployment["metadata"]["labels"]["app.kubernetes.io/name"]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        if component in INFRA:
            continue
        paths = (
            container["livenessProbe"]["httpGet"]["path"],
            container["readinessProbe"]["httpGet"]["path"],
        )
        expected = {
            "payment-api": ("/healthz", "/readyz"),
            "dataplatform-stub": ("/healthz", "/healthz"),
            "lag-autoscaler": ("/healthz", "/healthz"),
        }.get(component, ("/livez", "/readyz"))
        assert paths == expected, name


def test_no_secret_value_with_an_existing_secret() -> None:
    objects = load("external")
    text = (EXAMPLES / "external.yaml").read_text()
    assert not of_kind(objects, "Secret")
    assert "postgresql+psycopg://" not in text and "redis://" not in text
    for password in CI_PASSWORDS:
        assert password not in text
    for name, spec in pod_specs(objects):
        for container in spec["containers"]:
            for env in container.get("env", []):
                if env["name"] in ("DATABASE_URL", "REDIS_URL"):
                    ref = env["valueFrom"]["secretKeyRef"]
                    assert ref["name"] == "ticketing-connections", name


def test_chart_secret_holds_the_urls_otherwise() -> None:
    objects = load("default")
    secrets = of_kind(objects, "Secret")
    assert set(secrets) == {"ticketing-connections", "ticketing-connections-hooks"}
    regular, hooks = secrets["ticketing-connections"], secrets["ticketing-connections-hooks"]
    assert regular["stringData"] == hooks["stringData"]
    assert set(regular["stringData"]) == {"DATABASE_URL", "REDIS_URL"}
    assert "annotations" not in regular["metadata"]
    # The hook copy goes once the hook Jobs succeeded: nothing outlives an uninstall.
    policy = hooks["metadata"]["annotations"]["helm.sh/hook-delete-policy"]
    assert "hook-succeeded" in policy.split(",")
    for name, spec in pod_specs(objects):
        wanted = "ticketing-connections" + ("-hooks" if name.startswith("Job ") else "")
        for container in spec["containers"]:
            for env in container.get("env", []):
                assert "password" not in str(env.get("value", "")), name
                if env["name"] in ("DATABASE_URL", "REDIS_URL"):
                    assert env["valueFrom"]["secretKeyRef"]["name"] == wanted, name


def test_network_policies_allow_only_what_each_needs() -> None:
    objects = load("kind")
    policies = of_kind(objects, "NetworkPolicy")
    deployments = {
        n: d
        for n, d in of_kind(objects, "Deployment").items()
        if d["metadata"]["labels"]["app.kubernetes.io/name"] not in INFRA
    }
    assert set(policies) == set(deployments)

    def egress_ports(name: str) -> set[int]:
        return {p["port"] for rule in policies[name]["spec"]["egress"] for p in rule["ports"]}

    assert egress_ports(f"{RELEASE}-payment-api") == {53, 9092, 6379, 5432, 4317}
    assert egress_ports(f"{RELEASE}-cleanup-consumer") == {53, 9092, 6379, 4317}
    assert egress_ports(f"{RELEASE}-compensator") == {53, 9092, 5432, 4317}
    assert egress_ports(f"{RELEASE}-dataplatform-consumer") == {53, 9092, 4317, 8090}
    assert egress_ports(f"{RELEASE}-dataplatform-stub") == {53}

    stub_rules = policies[f"{RELEASE}-dataplatform-stub"]["spec"]["ingress"]
    callers = [
        peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
        for rule in stub_rules
        for peer in rule.get("from", [])
    ]
    assert callers == ["dataplatform-consumer"]


def test_hook_jobs_use_the_payment_api_image() -> None:
    for profile, phase in (("default", "pre-install"), ("kind", "post-install")):
        jobs = of_kind(load(profile), "Job")
        assert set(jobs) == {f"{RELEASE}-topics", f"{RELEASE}-migrate"}
        for job in jobs.values():
            assert job["metadata"]["annotations"]["helm.sh/hook"] == f"{phase},pre-upgrade"
            (container,) = job["spec"]["template"]["spec"]["containers"]
            assert container["image"] == "localhost/ticketing/payment-api:dev"
        topics = jobs[f"{RELEASE}-topics"]["spec"]["template"]["spec"]["containers"][0]
        assert topics["command"] == ["ticketing-topics"]
        migrate = jobs[f"{RELEASE}-migrate"]["spec"]["template"]["spec"]["containers"][0]
        assert migrate["args"] == ["migrate"]


def topics_job_arg(objects: list[Manifest], flag: str) -> str:
    (container,) = of_kind(objects, "Job")[f"{RELEASE}-topics"]["spec"]["template"]["spec"][
        "containers"
    ]
    args = container["args"]
    return args[args.index(flag) + 1]


def values(profile: str, component: str) -> dict[str, Any]:
    """A component's settings: values.yaml, then the profile's, default merged under the entry."""

    def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
        out = dict(base)
        for k, v in over.items():
            out[k] = merge(out[k], v) if isinstance(v, dict) and k in out else v
        return out

    files = (CHART / "values.yaml", CHART / "ci" / f"{profile}-values.yaml")
    merged: dict[str, Any] = {}
    for path in files:
        merged = merge(merged, yaml.safe_load(path.read_text()))
    return merge(merged["components"]["default"], merged["components"].get(component, {}))


def operator_objects(objects: list[Manifest]) -> list[Manifest]:
    """The objects that exist for the operator only."""
    kinds = {KIND, "KopfPeering", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}
    return [o for o in objects if o["kind"] in kinds or o["metadata"]["name"].startswith(OPERATOR)]


def test_operator_only_while_a_consumer_is_in_operator_mode(
    profile: tuple[str, list[Manifest]],
) -> None:
    name, objects = profile
    found = Counter(o["kind"] for o in operator_objects(objects))
    if name != "operator":
        assert not found
        return
    assert found == {
        "ServiceAccount": 1,
        "Deployment": 1,
        "PodDisruptionBudget": 1,
        "NetworkPolicy": 1,
        "Role": 1,
        "RoleBinding": 1,
        "KopfPeering": 1,
        "Job": 1,
        KIND: len(OPERATED),
    }


def test_one_autoscaler_per_operated_consumer() -> None:
    objects = load("operator")
    autoscalers = of_kind(objects, KIND)
    deployments = of_kind(objects, "Deployment")
    assert set(autoscalers) == {f"{RELEASE}-{c}" for c in OPERATED}
    groups = {g.service: (group, g.topics) for group, g in CONSUMER_GROUPS.items()}
    for component in OPERATED:
        name = f"{RELEASE}-{component}"
        cla = autoscalers[name]
        assert cla["apiVersion"] == f"{GROUP}/{VERSION}"
        spec = cla["spec"]
        AutoscalerSpec.model_validate(spec)  # the operator reads it as it is
        env = env_of(deployments[name])
        group, topics = groups[component]
        assert spec["deployment"] == name
        assert spec["consumerGroup"] == env["CONSUMER_GROUP"] == group
        assert spec["topics"] == list(topics)
        assert spec["offsetResetPolicy"] == env["CONSUMER_AUTO_OFFSET_RESET"]
        a = values("operator", component)["autoscaling"]
        assert a["mode"] == "operator"
        assert (spec["minReplicas"], spec["maxReplicas"]) == (a["minReplicas"], a["maxReplicas"])
        k = a["keda"]
        assert spec["lagThreshold"] == k["lagThreshold"]
        assert spec["activationLagThreshold"] == k["activationLagThreshold"]
        assert spec["pollingIntervalSeconds"] == k["pollingInterval"]
        assert spec["scaleDownStabilizationSeconds"] == k["cooldownPeriod"]
        assert spec["allowIdleConsumers"] == k["allowIdleConsumers"]
        assert "limitToPartitionsWithLag" not in spec
    # The operator owns the operated consumers' replicas; the others keep theirs.
    for name, deployment in deployments.items():
        operated = name.removeprefix(f"{RELEASE}-") in OPERATED
        assert ("replicas" in deployment["spec"]) is not operated, name


def test_operator_runs_namespaced_with_leader_election() -> None:
    objects = load("operator")
    deployment = of_kind(objects, "Deployment")[OPERATOR]
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "localhost/ticketing/lag-autoscaler:dev"
    args = parser().parse_args(container["args"])
    assert (args.command, args.namespace, args.all_namespaces) == ("run", [NAMESPACE], False)
    assert not args.standalone and args.priority is None  # each replica draws its own
    (peering,) = of_kind(objects, "KopfPeering").values()
    assert args.peering == peering["metadata"]["name"]
    port = container["ports"][0]["containerPort"]
    assert args.liveness == f"http://0.0.0.0:{port}/healthz"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert pod["serviceAccountName"] == OPERATOR
    assert of_kind(objects, "ServiceAccount")[OPERATOR]["automountServiceAccountToken"] is True
    env = env_of(deployment)
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka-bootstrap.kafka.svc:9092"


def rules_of(role: Manifest) -> dict[tuple[str, str], tuple[set[str], list[str] | None]]:
    return {
        (group, resource): (set(rule["verbs"]), rule.get("resourceNames"))
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }


def test_operator_rbac_is_least_privilege() -> None:
    objects = load("operator")
    (role,) = of_kind(objects, "Role").values()
    targets = sorted(f"{RELEASE}-{c}" for c in OPERATED)
    assert rules_of(role) == {
        # watch; kopf's finalizer and annotations; list, patch and delete for the hook
        (GROUP, PLURAL): ({"get", "list", "watch", "patch", "delete"}, None),
        (GROUP, f"{PLURAL}/status"): ({"get", "patch"}, None),
        ("apps", "deployments/scale"): ({"get", "patch"}, targets),
        ("", "events"): ({"create"}, None),
        ("kopf.dev", "kopfpeerings"): ({"get", "list", "watch", "patch"}, None),
    }
    # Nothing cluster-wide: the operator does not scan namespaces or CRDs (handlers.py).
    assert not of_kind(objects, "ClusterRole") and not of_kind(objects, "ClusterRoleBinding")
    (binding,) = of_kind(objects, "RoleBinding").values()
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": OPERATOR, "namespace": NAMESPACE}
    ]
    assert (binding["roleRef"]["kind"], binding["roleRef"]["name"]) == (
        "Role",
        role["metadata"]["name"],
    )
    tokens = [
        n
        for n, sa in of_kind(objects, "ServiceAccount").items()
        if sa["automountServiceAccountToken"]
    ]
    assert tokens == [OPERATOR]


def test_operator_network_policy() -> None:
    policy = of_kind(load("operator"), "NetworkPolicy")[OPERATOR]["spec"]
    egress = {p["port"] for rule in policy["egress"] for p in rule["ports"]}
    assert egress == {53, 9092, 443, 6443}  # DNS, Kafka, the API server
    assert [p["port"] for rule in policy["ingress"] for p in rule["ports"]] == ["http"]


def test_release_hook_frees_the_autoscalers_before_uninstall() -> None:
    objects = load("operator")
    jobs = of_kind(objects, "Job")
    hook = jobs[f"{OPERATOR}-release"]
    annotations = hook["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-delete"
    other = jobs[f"{RELEASE}-topics"]["metadata"]["annotations"]
    for key in ("helm.sh/hook-weight", "helm.sh/hook-delete-policy"):
        assert annotations[key] == other[key], key
    pod = hook["spec"]["template"]["spec"]
    assert (pod["serviceAccountName"], pod["automountServiceAccountToken"]) == (OPERATOR, True)
    (container,) = pod["containers"]
    assert container["image"] == "localhost/ticketing/lag-autoscaler:dev"
    args = parser().parse_args(container["args"])
    assert (args.command, args.namespace) == ("release", NAMESPACE)
