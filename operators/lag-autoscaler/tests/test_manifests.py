"""The CRD, RBAC and peering manifests, checked without an API server.

Whether the API server rejects bad specs (schema and CEL rules) is for the control-plane
tests; here: the schema says what the operator's model says, and the model rejects the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from lag_autoscaler.spec import GROUP, KIND, PLURAL, VERSION, AutoscalerSpec
from pydantic import ValidationError

MANIFESTS = Path(__file__).parents[1] / "manifests"


def load(name: str) -> list[dict[str, Any]]:
    return list(yaml.safe_load_all((MANIFESTS / name).read_text()))


@pytest.fixture(scope="module")
def version() -> dict[str, Any]:
    (crd,) = load("crd.yaml")
    assert crd["metadata"]["name"] == f"{PLURAL}.{GROUP}"
    assert (crd["spec"]["group"], crd["spec"]["names"]["kind"]) == (GROUP, KIND)
    assert crd["spec"]["scope"] == "Namespaced"
    (v,) = crd["spec"]["versions"]
    assert v["name"] == VERSION
    return dict(v)


def test_schema_matches_the_model(version: dict[str, Any]) -> None:
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    fields = {f.alias: f for f in AutoscalerSpec.model_fields.values()}
    assert set(spec["properties"]) == set(fields)
    assert spec["required"] == [a for a, f in fields.items() if f.is_required()]
    for alias, prop in spec["properties"].items():
        if "default" in prop:
            assert prop["default"] == fields[alias].default, alias
    assert spec["properties"]["offsetResetPolicy"]["enum"] == ["earliest", "latest"]
    rules = [r["rule"] for r in spec["x-kubernetes-validations"]]
    assert "self.minReplicas <= self.maxReplicas" in rules


def test_status_subresource_and_columns(version: dict[str, Any]) -> None:
    assert version["subresources"] == {"status": {}}
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    for path in ("lag", "current", "desired", "last scale"):
        field = next(p for n, p in columns.items() if n.lower() == path)
        assert field.split(".")[2].split("[")[0] in status, field


VALID = {"deployment": "ranking-consumer", "consumerGroup": "g", "topics": ["payment.success"]}


@pytest.mark.parametrize(
    "change",
    [
        {"deployment": None},
        {"topics": []},
        {"lagThreshold": 0},
        {"activationLagThreshold": -1},
        {"minReplicas": -1},
        {"maxReplicas": 0},
        {"minReplicas": 3, "maxReplicas": 2},
        {"offsetResetPolicy": "none"},
        {"allowIdleConsumers": True, "limitToPartitionsWithLag": True},
        {"scaleDownStabilizationSeconds": 3601},
        {"pollingIntervalSeconds": 0},
    ],
    ids=str,
)
def test_model_rejects_what_the_schema_rejects(change: dict[str, Any]) -> None:
    raw = {k: v for k, v in {**VALID, **change}.items() if v is not None}
    with pytest.raises(ValidationError):
        AutoscalerSpec.model_validate(raw)


def test_defaults() -> None:
    spec = AutoscalerSpec.model_validate(VALID)
    assert (spec.lag_threshold, spec.min_replicas, spec.max_replicas) == (10, 0, 100)
    assert (spec.offset_reset_policy, spec.polling_interval_seconds) == ("latest", 30)


def test_rbac_is_exactly_what_the_operator_uses() -> None:
    role = next(d for d in load("rbac.yaml") if d["kind"] == "ClusterRole")
    rules = {
        (g, r): set(rule["verbs"])
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
    }
    assert rules == {
        (GROUP, PLURAL): {"get", "list", "watch", "patch"},
        (GROUP, f"{PLURAL}/status"): {"get", "patch"},
        ("apps", "deployments/scale"): {"get", "patch"},
        ("", "events"): {"create"},
        ("kopf.dev", "clusterkopfpeerings"): {"get", "list", "watch", "patch"},
        ("kopf.dev", "kopfpeerings"): {"get", "list", "watch", "patch"},
        ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"},
        ("", "namespaces"): {"list", "watch"},
    }


def test_peering_manifests_name_the_default_peering() -> None:
    from lag_autoscaler.main import parser

    docs = load("kopf-peering.yaml")
    kinds = {d["spec"]["names"]["kind"] for d in docs if d["kind"] == "CustomResourceDefinition"}
    assert kinds == {"ClusterKopfPeering", "KopfPeering"}
    peering = next(d for d in docs if d["kind"] == "ClusterKopfPeering")
    assert peering["metadata"]["name"] == parser().parse_args(["run", "-A"]).peering
