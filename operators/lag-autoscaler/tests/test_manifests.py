"""The CRDs (the chart's crds/: ours and kopf's peering kinds), checked without an API server.

Whether the API server rejects bad specs (schema and CEL rules) is for the control-plane
tests; here: the schema says what the operator's model says, and the model rejects the same.
The operator's RBAC is the chart's, checked in charts/tests/test_chart.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from lag_autoscaler.spec import GROUP, KIND, PLURAL, VERSION, AutoscalerSpec
from pydantic import ValidationError

CRDS = Path(__file__).parents[3] / "charts" / "ticketing" / "crds"


def load(name: str) -> list[dict[str, Any]]:
    return list(yaml.safe_load_all((CRDS / f"{name}.yaml").read_text()))


def test_one_crd_per_file_named_after_it() -> None:
    files = sorted(CRDS.glob("*.yaml"))
    assert [p.stem for p in files] == [
        "clusterkopfpeerings.kopf.dev",
        f"{PLURAL}.{GROUP}",
        "kopfpeerings.kopf.dev",
    ]
    for path in files:
        (crd,) = load(path.stem)
        assert crd["kind"] == "CustomResourceDefinition"
        assert crd["metadata"]["name"] == path.stem


@pytest.fixture(scope="module")
def version() -> dict[str, Any]:
    (crd,) = load(f"{PLURAL}.{GROUP}")
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


@pytest.mark.parametrize(
    ("plural", "kind", "scope"),
    [("clusterkopfpeerings", "ClusterKopfPeering", "Cluster"),
     ("kopfpeerings", "KopfPeering", "Namespaced")],
)  # fmt: skip
def test_the_peering_crds_are_the_ones_kopf_uses(plural: str, kind: str, scope: str) -> None:
    (crd,) = load(f"{plural}.kopf.dev")
    assert (crd["spec"]["group"], crd["spec"]["names"]["plural"]) == ("kopf.dev", plural)
    assert (crd["spec"]["names"]["kind"], crd["spec"]["scope"]) == (kind, scope)
    (v,) = crd["spec"]["versions"]
    assert (v["name"], v["served"], v["storage"]) == ("v1", True, True)
    # kopf keeps the peers' keep-alives in the status, one key per peer; the chart's Role
    # grants no status subresource.
    status = v["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert status["x-kubernetes-preserve-unknown-fields"] is True
    assert "subresources" not in v
