"""Validate rendered manifests offline, strictly (unknown fields are errors).

Kubernetes kinds (CRDs included) against the schemas bundled in kubernetes-validate; custom
resources (KEDA's ScaledObject, the chart's ConsumerLagAutoscaler and KopfPeering) against the
openAPIV3Schema of their CRD. Run by charts/check.sh:

    python charts/validate.py --kube-version 1.34.0 --crds KEDA_DIR --crds CHART/crds FILE...
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    """The CRD schema with unknown fields forbidden, as the API server prunes them."""
    out = dict(schema)
    if "properties" in out:
        out["properties"] = {k: strict(v) for k, v in out["properties"].items()}
        if "additionalProperties" not in out and not out.get(
            "x-kubernetes-preserve-unknown-fields"
        ):
            out["additionalProperties"] = False
    for key in ("items", "additionalProperties"):
        if isinstance(out.get(key), dict):
            out[key] = strict(out[key])
    return out


def crd_schemas(crd_dirs: list[Path]) -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> JSON schema, for every served version of every CRD in the dirs."""
    schemas = {}
    paths = [path for crd_dir in crd_dirs for path in sorted(crd_dir.glob("*.yaml"))]
    for path in paths:
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version.get("served"):
                schema = strict(version["schema"]["openAPIV3Schema"])
                # the API server checks these, whether the CRD schema names them or not
                schema["properties"]["apiVersion"] = {"type": "string"}
                schema["properties"]["kind"] = {"type": "string"}
                schema["properties"]["metadata"] = {"type": "object"}
                schemas[(f"{group}/{version['name']}", kind)] = schema
    return schemas


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kube-version", required=True)
    parser.add_argument("--crds", type=Path, action="append", required=True, help="repeatable")
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    crds = crd_schemas(args.crds)
    custom_groups = {api_version.split("/")[0] for api_version, _ in crds}
    errors = 0
    for path in args.files:
        kinds: collections.Counter[str] = collections.Counter()
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc:
                continue
            kinds[doc["kind"]] += 1
            name = f"{path.name}: {doc['kind']} {doc['metadata']['name']}"
            try:
                crd = crds.get((doc["apiVersion"], doc["kind"]))
                if crd is not None:
                    jsonschema.validate(doc, crd, cls=jsonschema.Draft7Validator)
                elif doc["apiVersion"].split("/")[0] in custom_groups:
                    raise LookupError(f"no CRD for {doc['apiVersion']} {doc['kind']}")
                else:
                    kubernetes_validate.validate(doc, args.kube_version, strict=True)
            except (jsonschema.ValidationError, kubernetes_validate.ValidationError) as exc:
                errors += 1
                message = getattr(exc, "message", str(exc))
                where = "/".join(str(p) for p in getattr(exc, "absolute_path", ()))
                print(f"INVALID {name}: {where}: {message}", file=sys.stderr)
            except (LookupError, kubernetes_validate.SchemaNotFoundError) as exc:
                errors += 1
                print(f"NO SCHEMA {name}: {exc}", file=sys.stderr)
        summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        print(f"{path.stem}: {sum(kinds.values())} objects ({summary})")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
