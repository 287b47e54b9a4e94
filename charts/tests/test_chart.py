"""The chart's rendered objects, read from the golden manifests under charts/ticketing/examples/.

`make chart-check` (part of `make test`) renders each profile (charts/profiles.sh), fails when a
render differs from its golden file and validates every object against the Kubernetes schemas
and the CRDs; these tests check what the schemas cannot: the wiring.
"""

from __future__ import annotations

import json
import re
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
PROFILES = ("default", "kind", "kind-keda", "kind-operator", "hpa", "external", "operator")
KIND_PROFILES = ("kind", "kind-keda", "kind-operator")
RELEASE = "ticketing"
NAMESPACE = "ticketing"
# The objects of each profile besides the consumers'; a change here is a change of the chart's
# footprint. (+2 NetworkPolicies of the topics and migrate Jobs; +3 with the operator's release
# Job; +4 of the in-cluster infra; external's outbox relay: +5 with its PodMonitor)
OTHER_OBJECTS = {
    "default": 18,
    "kind": 37,
    "kind-keda": 37,
    "kind-operator": 46,
    "hpa": 18,
    "external": 17,
    "operator": 27,
}
SCALED = ("kind-keda", "kind-operator", "hpa")  # profiles that scale every consumer
OPERATOR = f"{RELEASE}-lag-autoscaler"
# The consumers that each profile puts in mode operator.
OPERATED = {
    "operator": {"ranking-consumer", "cleanup-consumer"},
    "kind-operator": {g.service for g in CONSUMER_GROUPS.values()},
}
INFRA = {"kafka", "redis", "postgresql", "jaeger"}
# With the broker and database in the release, its hooks run once an upgrade has replaced them.
HOOKS_WITH_INFRA = "post-install,post-upgrade"
KAFKA = f"{RELEASE}-kafka.{NAMESPACE}.svc.cluster.local:9092"
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


def consumer_objects(profile: str, service: str) -> int:
    """Deployment, ServiceAccount, PodDisruptionBudget and NetworkPolicy; its scaler
    (ScaledObject, HorizontalPodAutoscaler or ConsumerLagAutoscaler) where it is scaled; its
    PodMonitor where the profile has them."""
    scaled = profile in SCALED or service in OPERATED.get(profile, set())
    return 4 + scaled + (profile == "external")


def test_object_counts(profile: tuple[str, list[Manifest]]) -> None:
    """The registry's consumers' objects and the others, so a new group changes no count."""
    name, objects = profile
    counts = Counter(o["kind"] for o in objects)
    print(f"{name}: {len(objects)} objects {dict(sorted(counts.items()))}")
    others = len(objects)
    for group in CONSUMER_GROUPS.values():
        own = f"{RELEASE}-{group.service}"
        mine = [o for o in objects if o["metadata"]["name"] == own]
        assert len(mine) == consumer_objects(name, group.service), (group.service, mine)
        others -= len(mine)
    assert others == OTHER_OBJECTS[name]


@pytest.mark.parametrize("group", sorted(CONSUMER_GROUPS))
def test_each_group_has_its_deployment_and_scaled_object(group: str) -> None:
    objects = load("kind-keda")
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
        if component in INFRA or component in ("loadgen", "outbox-relay"):
            assert component in INFRA or "livenessProbe" not in container, name
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
    jobs = of_kind(objects, "Job")
    infra = {f"{RELEASE}-{name}" for name in INFRA}
    assert set(policies) == set(deployments) | set(jobs) | infra

    def egress_ports(name: str) -> set[int]:
        return {p["port"] for rule in policies[name]["spec"]["egress"] for p in rule["ports"]}

    assert egress_ports(f"{RELEASE}-payment-api") == {53, 9092, 6379, 5432, 4317}
    assert egress_ports(f"{RELEASE}-cleanup-consumer") == {53, 9092, 6379, 4317}
    assert egress_ports(f"{RELEASE}-compensator") == {53, 9092, 5432, 4317}
    assert egress_ports(f"{RELEASE}-dataplatform-consumer") == {53, 9092, 4317, 8090}
    assert egress_ports(f"{RELEASE}-dataplatform-stub") == {53}
    assert egress_ports(f"{RELEASE}-loadgen") == {53, 8000, 5432}
    assert policies[f"{RELEASE}-loadgen"]["spec"]["ingress"] == []  # it serves nothing

    stub_rules = policies[f"{RELEASE}-dataplatform-stub"]["spec"]["ingress"]
    callers = [
        peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
        for rule in stub_rules
        for peer in rule.get("from", [])
    ]
    assert callers == ["dataplatform-consumer"]
    # no rule without `from` (which admits every pod): the stand-in's /admin/* stays closed
    assert all(rule.get("from") for rule in stub_rules)


def test_the_stand_ins_admin_port_is_open_to_no_pod(profile: tuple[str, list[Manifest]]) -> None:
    """The stand-in serves /admin/* (latency, errors, hangs, reset) on a port of its own: its
    container and Service name it, but no ingress rule admits a pod to it and no pod's egress
    reaches it; dataplatform-consumer gets the ingest port only."""
    name, objects = profile
    stub = f"{RELEASE}-dataplatform-stub"
    deployment = of_kind(objects, "Deployment").get(stub)
    if deployment is None:
        assert name == "external"  # the real data platform instead
        return
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert set(ports) == {"http", "admin"} and ports["http"] != ports["admin"]
    env = env_of(deployment)
    assert (env["DATAPLATFORM_STUB_PORT"], env["DATAPLATFORM_STUB_ADMIN_PORT"]) == (
        str(ports["http"]),
        str(ports["admin"]),
    )
    service_ports = {
        p["name"]: p["targetPort"] for p in of_kind(objects, "Service")[stub]["spec"]["ports"]
    }
    assert service_ports == {"http": "http", "admin": "admin"}

    policies = of_kind(objects, "NetworkPolicy")
    rules = policies[stub]["spec"]["ingress"]
    assert rules, "the ingest port admits its caller"
    for rule in rules:
        assert rule.get("from"), "a rule without peers admits every pod"
        assert [p["port"] for p in rule["ports"]] == ["http"]
    admin = {"admin", ports["admin"]}
    for policy_name, policy in policies.items():
        for rule in policy["spec"].get("egress") or []:
            assert not admin & {p["port"] for p in rule.get("ports", [])}, policy_name
    consumer = env_of(of_kind(objects, "Deployment")[f"{RELEASE}-dataplatform-consumer"])
    assert consumer["DATAPLATFORM_URL"] == f"http://{stub}:{ports['http']}/payments"


def test_no_port_open_to_every_pod(profile: tuple[str, list[Manifest]]) -> None:
    """An ingress rule without `from` admits every pod. Kubelet probes need none (probeFrom
    is empty by default); only payment-api, while networkPolicy.apiFrom is empty, has one."""
    name, objects = profile
    api_from = values_file_has_api_from(name)
    for policy_name, policy in of_kind(objects, "NetworkPolicy").items():
        open_rules = [r for r in policy["spec"].get("ingress") or [] if not r.get("from")]
        if policy_name == f"{RELEASE}-payment-api" and not api_from:
            assert len(open_rules) == 1, policy_name
        else:
            assert open_rules == [], policy_name


def values_file_has_api_from(profile: str) -> bool:
    import subprocess

    files = subprocess.run(
        ["bash", str(CHART.parent / "profiles.sh"), profile],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return any(
        (yaml.safe_load(Path(f).read_text()) or {}).get("networkPolicy", {}).get("apiFrom")
        for f in files
    )


def test_payment_api_verifies_jwts_from_values_or_a_secret() -> None:
    """kind: the development key from the chart's Secret, for payment-api and the load
    generator; external: the identity provider's JWKS, no secret at all."""
    kind = of_kind(load("kind"), "Deployment")
    secret = of_kind(load("kind"), "Secret")[f"{RELEASE}-connections"]
    assert secret["stringData"]["AUTH_JWT_SECRET"]
    for name in ("payment-api", "loadgen"):
        env = env_of(kind[f"{RELEASE}-{name}"])
        assert env["AUTH_JWT_SECRET"]["secretKeyRef"] == {  # type: ignore[index]
            "name": f"{RELEASE}-connections",
            "key": "AUTH_JWT_SECRET",
        }
        assert env["AUTH_JWT_ISSUER"] and env["AUTH_JWT_AUDIENCE"]
    external = env_of(of_kind(load("external"), "Deployment")[f"{RELEASE}-payment-api"])
    assert external["AUTH_JWKS_URL"].startswith("https://")
    assert "AUTH_JWT_SECRET" not in external
    for name, container in containers(load("external")):
        assert "AUTH_JWT_SECRET" not in {e["name"] for e in container.get("env", [])}, name


def test_topics_are_replicated_except_on_one_broker() -> None:
    """Writes (acks=all) need 2 of 3 replicas in sync; the kind profile's one broker, 1 of 1."""
    for name in ("default", "external", "hpa", "operator"):
        assert topics_job_arg(load(name), "--replication-factor") == "3", name
        assert topics_job_arg(load(name), "--min-insync-replicas") == "2", name
    assert topics_job_arg(load("kind"), "--replication-factor") == "1"
    assert topics_job_arg(load("kind"), "--min-insync-replicas") == "1"


def test_in_cluster_infra_admits_the_release_only() -> None:
    """kind: Kafka, Redis, PostgreSQL and Jaeger take connections on their ports from the
    release's pods only; kind-keda adds KEDA's namespace (it reads the lag from Kafka)."""
    for profile, extra in (("kind", []), ("kind-keda", ["keda"])):
        policies = of_kind(load(profile), "NetworkPolicy")
        for name in INFRA:
            spec = policies[f"{RELEASE}-{name}"]["spec"]
            assert spec["policyTypes"] == ["Ingress"]
            (rule,) = spec["ingress"]
            peers = rule["from"]
            assert peers[0] == {
                "podSelector": {"matchLabels": {"app.kubernetes.io/instance": RELEASE}}
            }
            namespaces = [
                p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                for p in peers[1:]
            ]
            assert namespaces == extra, (profile, name)


def test_hook_jobs_reach_only_what_they_need() -> None:
    """Each hook Job has a NetworkPolicy, a hook as well, created before it: no ingress, egress
    to DNS and its one dependency (the in-cluster pod with infra.enabled)."""
    wanted = {
        "topics": {53, 9092},
        "migrate": {53, 5432},
        "lag-autoscaler-release": {53, 443, 6443},
    }
    for profile in ("default", "kind", "operator", "external"):
        objects = load(profile)
        policies = of_kind(objects, "NetworkPolicy")
        for name, job in of_kind(objects, "Job").items():
            policy = policies[name]
            short = name.removeprefix(f"{RELEASE}-")
            annotations = policy["metadata"]["annotations"]
            assert annotations["helm.sh/hook"] == job["metadata"]["annotations"]["helm.sh/hook"]
            assert int(annotations["helm.sh/hook-weight"]) < int(
                job["metadata"]["annotations"]["helm.sh/hook-weight"]
            )
            selector = policy["spec"]["podSelector"]["matchLabels"]
            assert selector.items() <= job["spec"]["template"]["metadata"]["labels"].items()
            assert policy["spec"]["ingress"] == []
            ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
            assert ports == wanted[short], (profile, name)


def test_hook_jobs_use_the_payment_api_image() -> None:
    for profile, phases in (("default", "pre-install,pre-upgrade"), ("kind", HOOKS_WITH_INFRA)):
        jobs = of_kind(load(profile), "Job")
        assert set(jobs) == {f"{RELEASE}-topics", f"{RELEASE}-migrate"}
        for job in jobs.values():
            assert job["metadata"]["annotations"]["helm.sh/hook"] == phases
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
    if name not in OPERATED:
        assert not found
        return
    assert found == {
        "ServiceAccount": 1,
        "Deployment": 1,
        "PodDisruptionBudget": 1,
        "NetworkPolicy": 2,  # the operator's and its release Job's
        "Role": 1,
        "RoleBinding": 1,
        "KopfPeering": 1,
        "Job": 1,
        KIND: len(OPERATED[name]),
    }


def test_one_autoscaler_per_operated_consumer() -> None:
    objects = load("operator")
    autoscalers = of_kind(objects, KIND)
    deployments = of_kind(objects, "Deployment")
    operated = OPERATED["operator"]
    assert set(autoscalers) == {f"{RELEASE}-{c}" for c in operated}
    groups = {g.service: (group, g.topics) for group, g in CONSUMER_GROUPS.items()}
    for component in operated:
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
        owned = name.removeprefix(f"{RELEASE}-") in operated
        assert ("replicas" in deployment["spec"]) is not owned, name


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
    targets = sorted(f"{RELEASE}-{c}" for c in OPERATED["operator"])
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
    assert policy["ingress"] == []  # its probes come from the kubelet: no pod calls it


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


def containers(objects: list[Manifest]) -> list[tuple[str, Manifest]]:
    return [(name, c) for name, spec in pod_specs(objects) for c in spec["containers"]]


def test_no_service_links(profile: tuple[str, list[Manifest]]) -> None:
    """Service links would put every Service's address into every pod's environment."""
    _, objects = profile
    for name, spec in pod_specs(objects):
        assert spec["enableServiceLinks"] is False, name


def test_payment_api_drains_before_it_stops(profile: tuple[str, list[Manifest]]) -> None:
    """Its preStop sleep lets the Service stop sending before uvicorn stops; no other has one."""
    _, objects = profile
    for name, deployment in of_kind(objects, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        if name != f"{RELEASE}-payment-api":
            assert "lifecycle" not in container, name
            continue
        command = container["lifecycle"]["preStop"]["exec"]["command"]
        assert command[0] == "sleep"
        assert 0 < int(command[1]) < pod["terminationGracePeriodSeconds"] / 2


@pytest.mark.parametrize("name", KIND_PROFILES)
def test_kafka_answers_by_its_full_name(name: str) -> None:
    """KEDA's operator runs in its own namespace: the bootstrap and the listener the broker
    advertises must resolve there, so both are the Service's full name."""
    objects = load(name)
    service = of_kind(objects, "Service")[f"{RELEASE}-kafka"]
    assert f"{service['metadata']['name']}.{NAMESPACE}.svc.cluster.local:9092" == KAFKA
    config = of_kind(objects, "ConfigMap")[f"{RELEASE}-kafka"]["data"]["server.properties"]
    (advertised,) = re.findall(r"^advertised\.listeners=(.*)$", config, re.M)
    assert f"PLAINTEXT://{KAFKA}" in advertised.split(",")
    bootstraps = {topics_job_arg(objects, "--bootstrap-servers")}
    for deployment in of_kind(objects, "Deployment").values():
        env = env_of(deployment)
        if "KAFKA_BOOTSTRAP_SERVERS" in env:
            bootstraps.add(env["KAFKA_BOOTSTRAP_SERVERS"])
    for scaled in of_kind(objects, "ScaledObject").values():
        bootstraps |= {t["metadata"]["bootstrapServers"] for t in scaled["spec"]["triggers"]}
    assert bootstraps == {KAFKA}


def test_infra_keeps_its_data_on_claims() -> None:
    """Kafka's log and PostgreSQL's data on claims of the default StorageClass, Recreate (one
    pod per claim); Redis and Jaeger keep nothing."""
    objects = load("kind")
    claims = of_kind(objects, "PersistentVolumeClaim")
    assert set(claims) == {f"{RELEASE}-kafka", f"{RELEASE}-postgresql"}
    for claim in claims.values():
        assert "storageClassName" not in claim["spec"]  # the default one
        assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    for name, deployment in of_kind(objects, "Deployment").items():
        component = name.removeprefix(f"{RELEASE}-")
        if component not in INFRA:
            continue
        assert deployment["spec"]["strategy"] == {"type": "Recreate"}, name
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        if name in claims:
            assert volumes["data"]["persistentVolumeClaim"] == {"claimName": name}
        others = [v for n, v in volumes.items() if name not in claims or n != "data"]
        assert all("emptyDir" in v or "configMap" in v for v in others), name


def test_an_upgrade_cannot_lose_topics_or_the_schema() -> None:
    """With the infra in the release, the topic and migration hooks run after an upgrade has
    replaced the broker and the database (post-upgrade), with the Secret they read; and a chart
    bump alone does not replace them (no version in their pod labels)."""
    objects = load("kind")
    hooks = [
        o
        for o in objects
        if o["metadata"].get("annotations", {}).get("helm.sh/hook", "test") != "test"
    ]
    assert {f"{o['kind']} {o['metadata']['name']}" for o in hooks} == {
        f"Job {RELEASE}-topics",
        f"Job {RELEASE}-migrate",
        f"Secret {RELEASE}-connections-hooks",
        f"NetworkPolicy {RELEASE}-topics",
        f"NetworkPolicy {RELEASE}-migrate",
    }
    for hook in hooks:
        assert hook["metadata"]["annotations"]["helm.sh/hook"] == HOOKS_WITH_INFRA
    for name, deployment in of_kind(objects, "Deployment").items():
        if name.removeprefix(f"{RELEASE}-") in INFRA:
            labels = deployment["spec"]["template"]["metadata"]["labels"]
            assert not {"helm.sh/chart", "app.kubernetes.io/version"} & set(labels), name


def test_postgresql_is_ready_over_tcp() -> None:
    """During initdb the image runs a server on its Unix socket only: readiness asks over TCP."""
    deployment = of_kind(load("kind"), "Deployment")[f"{RELEASE}-postgresql"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    command = container["readinessProbe"]["exec"]["command"]
    assert command[0] == "pg_isready"
    assert command[command.index("-h") + 1] == "127.0.0.1"


def notes(profile: str) -> str:
    return (EXAMPLES / f"{profile}.NOTES.txt").read_text()


def mebibytes(quantity: str) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}
    return float(quantity[:-2]) * units[quantity[-2:]]


def test_the_notes_kafka_tool_fits_next_to_the_broker() -> None:
    """The NOTES' kafka-consumer-groups.sh runs in the broker's container with a heap of its
    own: both JVMs, each with about 200 MiB besides its heap, fit the container's limit."""
    deployment = of_kind(load("kind"), "Deployment")[f"{RELEASE}-kafka"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    broker = re.search(r"-Xmx(\d+)m", env_of(deployment)["KAFKA_HEAP_OPTS"])
    tool = re.search(
        rf"exec deploy/{RELEASE}-kafka -- env KAFKA_HEAP_OPTS=-Xmx(\d+)m", notes("kind")
    )
    assert broker and tool
    limit = mebibytes(container["resources"]["limits"]["memory"])
    assert int(broker[1]) + 200 + int(tool[1]) + 200 <= limit


def test_notes_tell_how_to_watch(profile: tuple[str, list[Manifest]]) -> None:
    name, objects = profile
    text = notes(name)
    assert "is a hook" not in text  # the chart's Secret is a regular object
    if of_kind(objects, "ScaledObject"):
        assert f"kubectl -n {NAMESPACE} get hpa,scaledobject -w" in text
    if of_kind(objects, KIND):
        assert f"kubectl -n {NAMESPACE} get cla -w" in text
    if f"{RELEASE}-loadgen" in of_kind(objects, "Deployment"):
        assert f"logs -f deploy/{RELEASE}-loadgen" in text
    if f"{RELEASE}-jaeger" in of_kind(objects, "Service"):
        assert f"port-forward svc/{RELEASE}-jaeger 16686:16686" in text


@pytest.mark.parametrize("name", PROFILES)
def test_load_generator_only_in_the_kind_profiles(name: str) -> None:
    assert (f"{RELEASE}-loadgen" in of_kind(load(name), "Deployment")) is (name in KIND_PROFILES)


def test_load_generator_plays_against_the_api_service() -> None:
    objects = load("kind")
    deployments = of_kind(objects, "Deployment")
    loadgen, api = deployments[f"{RELEASE}-loadgen"], deployments[f"{RELEASE}-payment-api"]
    (container,) = loadgen["spec"]["template"]["spec"]["containers"]
    (api_container,) = api["spec"]["template"]["spec"]["containers"]
    assert container["image"] == api_container["image"]  # ticketing-loadgen is in its image
    assert container["command"] == ["ticketing-loadgen"]
    assert "--stay" in container["args"]  # the Deployment would replay a finished run
    assert "ports" not in container and "readinessProbe" not in container
    env = env_of(loadgen)
    assert int(env["LOADGEN_ROUNDS"]) == 0  # until stopped
    service = of_kind(objects, "Service")[f"{RELEASE}-payment-api"]
    (port,) = service["spec"]["ports"]
    assert env["API_URL"] == f"http://{service['metadata']['name']}:{port['port']}"
    selector = service["spec"]["selector"]
    assert selector.items() <= api["spec"]["template"]["metadata"]["labels"].items()
    assert env["DATABASE_URL"]["secretKeyRef"]["name"] == f"{RELEASE}-connections"  # type: ignore[index]


def test_api_callers_pass_a_restricted_api_policy() -> None:
    """With networkPolicy.apiFrom set, payment-api admits those peers, the `helm test` pod and
    the components that need the API; external has no load generator, so only the first two."""
    policy = of_kind(load("external"), "NetworkPolicy")[f"{RELEASE}-payment-api"]["spec"]
    prometheus = [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    rules = [rule for rule in policy["ingress"] if rule.get("from") != prometheus]
    callers = [p.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name")
               for rule in rules for p in rule.get("from", [])]  # fmt: skip
    assert callers == [None, "test"]


def test_images_by_name_and_per_image_tag() -> None:
    """image.tags pins single images (charts/kind.sh: each by its id, so a rebuilt image rolls
    out); the others keep image.tag."""
    objects = load("external")
    for name, container in containers(objects):
        image = container["image"]
        assert image.startswith("registry.example.com/ticketing/"), name
        expected = "0.1.1" if image.split("/")[-1].startswith("payment-api:") else "0.1.0"
        assert image.rsplit(":", 1)[1] == expected, name


# The kind node's memory as charts/kind.sh and the README state it (MiB), and what Kubernetes
# (control plane, CoreDNS, kindnet) and KEDA's three pods take of it.
NODE_MEMORY = {"kind": 4096, "kind-keda": 6144, "kind-operator": 6144}
KUBERNETES_MIB = 1024
KEDA_MIB = 512


@pytest.mark.parametrize("name", KIND_PROFILES)
def test_kind_profiles_fit_the_stated_node(name: str) -> None:
    """The memory requests of every pod, each consumer at its most replicas, fit the node."""
    objects = load(name)
    scaled = of_kind(objects, "ScaledObject").values()
    most = {o["spec"]["scaleTargetRef"]["name"]: o["spec"]["maxReplicaCount"] for o in scaled}
    for cla in of_kind(objects, KIND).values():
        most[cla["spec"]["deployment"]] = cla["spec"]["maxReplicas"]
    total = KUBERNETES_MIB + (KEDA_MIB if scaled else 0)
    for deployment_name, deployment in of_kind(objects, "Deployment").items():
        replicas = most.get(deployment_name, deployment["spec"].get("replicas", 1))
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            total += replicas * mebibytes(container["resources"]["requests"]["memory"])
    print(f"{name}: {total:.0f} MiB of {NODE_MEMORY[name]}")
    assert total <= NODE_MEMORY[name]


# The components that serve /metrics, and on which port.
METRICS_PORTS = {"payment-api": 8000, "lag-autoscaler": 9464, "outbox-relay": 9464} | {
    g.service: 8080 for g in CONSUMER_GROUPS.values()
}


def test_pods_that_serve_metrics_are_annotated_for_prometheus(
    profile: tuple[str, list[Manifest]],
) -> None:
    _, objects = profile
    for name, deployment in of_kind(objects, "Deployment").items():
        component = deployment["metadata"]["labels"]["app.kubernetes.io/name"]
        annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
        scraped = {k: v for k, v in annotations.items() if k.startswith("prometheus.io/")}
        if component in METRICS_PORTS:
            port = str(METRICS_PORTS[component])
            assert scraped == {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": port,
                "prometheus.io/path": "/metrics",
            }, name
            (container,) = deployment["spec"]["template"]["spec"]["containers"]
            assert port in {str(p["containerPort"]) for p in container["ports"]}, name
        else:
            assert scraped == {}, name


@pytest.mark.parametrize("name", PROFILES)
def test_one_outbox_relay_per_release(name: str) -> None:
    """The relay runs in payment-api's workers unless it has a Deployment of its own (the
    external profile's), which serves metrics on a port of its own and reaches no Redis."""
    deployments = of_kind(load(name), "Deployment")
    relay = deployments.get(f"{RELEASE}-outbox-relay")
    api_env = env_of(deployments[f"{RELEASE}-payment-api"])
    assert (relay is not None) == (name == "external")
    if relay is None:
        assert "OUTBOX_RELAY_ENABLED" not in api_env
        return
    assert api_env["OUTBOX_RELAY_ENABLED"] == "false"
    (container,) = relay["spec"]["template"]["spec"]["containers"]
    assert container["image"].rsplit("/", 1)[1] == "payment-api:0.1.1"
    assert container["args"] == ["relay"]
    assert container["ports"] == [{"name": "metrics", "containerPort": 9464, "protocol": "TCP"}]
    env = env_of(relay)
    assert env["RELAY_METRICS_PORT"] == "9464"
    assert {"DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS"} <= set(env)
    assert "REDIS_URL" not in env


def test_the_operator_serves_metrics_on_a_port_of_its_own() -> None:
    deployment = of_kind(load("operator"), "Deployment")[OPERATOR]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert {"name": "metrics", "containerPort": 9464, "protocol": "TCP"} in container["ports"]
    assert env_of(deployment)["AUTOSCALER_METRICS_PORT"] == "9464"


def test_pod_monitors_and_the_scrape_rule_when_asked() -> None:
    """external asks for PodMonitors (with its Prometheus's label) and admits the monitoring
    namespace on the metrics port; the other profiles render no PodMonitor."""
    objects = load("external")
    monitors = of_kind(objects, "PodMonitor")
    deployed = {
        d["metadata"]["labels"]["app.kubernetes.io/name"]
        for d in of_kind(objects, "Deployment").values()
    }
    assert set(monitors) == {f"{RELEASE}-{c}" for c in deployed & set(METRICS_PORTS)}
    for name, monitor in monitors.items():
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        port = "metrics" if name.endswith(("-outbox-relay", "-lag-autoscaler")) else "http"
        assert monitor["spec"]["podMetricsEndpoints"] == [
            {"port": port, "path": "/metrics", "interval": "15s"}
        ]
        assert monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] in name
        policy = of_kind(objects, "NetworkPolicy")[name]
        scrape = [
            r
            for r in policy["spec"]["ingress"]
            if r["ports"] == [{"port": port, "protocol": "TCP"}]
        ]
        monitoring = {"kubernetes.io/metadata.name": "monitoring"}
        assert any(
            p.get("namespaceSelector", {}).get("matchLabels") == monitoring
            for r in scrape
            for p in r.get("from", [])
        ), name
    for other in set(PROFILES) - {"external"}:
        assert not of_kind(load(other), "PodMonitor"), other


def test_the_dashboard_ships_in_a_config_map(profile: tuple[str, list[Manifest]]) -> None:
    _, objects = profile
    dashboard = of_kind(objects, "ConfigMap")[f"{RELEASE}-dashboard"]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads(dashboard["data"]["ticketing.json"])
    assert shipped == json.loads((CHART / "dashboards" / "ticketing.json").read_text())
    assert {t["expr"] for p in shipped["panels"] for t in p["targets"]}
