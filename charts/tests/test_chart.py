"""The chart's rendered objects, read from the golden manifests under charts/ticketing/examples/.

`make chart-check` (part of `make test`) renders each ci/ profile, fails when a render differs
from its golden file and validates every object against the Kubernetes and KEDA schemas; these
tests check what the schemas cannot: the wiring.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from ticketing_events.topics import CONSUMER_GROUPS

EXAMPLES = Path(__file__).resolve().parents[1] / "ticketing" / "examples"
PROFILES = ("default", "kind", "keda", "hpa", "external")
RELEASE = "ticketing"
# The objects of each profile; a change here is a change of the chart's footprint.
OBJECT_COUNTS = {"default": 34, "kind": 43, "keda": 48, "hpa": 39, "external": 28}
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
        assert spec["automountServiceAccountToken"] is False, name
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
    secrets = of_kind(load("default"), "Secret")
    (secret,) = secrets.values()
    assert set(secret["stringData"]) == {"DATABASE_URL", "REDIS_URL"}
    for name, spec in pod_specs(load("default")):
        for container in spec["containers"]:
            for env in container.get("env", []):
                assert "password" not in str(env.get("value", "")), name


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
