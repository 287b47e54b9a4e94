"""Smoke check of the real node of `make cluster-up` (infra/node/node.sh).

A Pod of one of our service images runs Ready under the chart's security context (non-root,
read-only root filesystem, no capabilities, RuntimeDefault seccomp), a ClusterIP Service
reaches it from another Pod, and CoreDNS resolves the Service's name.

Not collected by `make test` (infra/ is outside pytest's testpaths). Run it with the node up:
    make cluster-up && uv run pytest infra/node/tests -m k8s
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
from node_api import ENV, NODE_SH, kubectl, ready_node

pytestmark = pytest.mark.k8s

IMAGE = os.environ.get("NODE_SMOKE_IMAGE", "localhost/ticketing/dataplatform-stub:dev")
PORT = 8090

# The chart's defaults (charts/ticketing/values.yaml: podSecurityContext, securityContext).
POD_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "fsGroup": 10001,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def in_range(ip: str, cidr: str) -> bool:
    import ipaddress

    return ipaddress.ip_address(ip) in ipaddress.ip_network(cidr)


@pytest.fixture(scope="module")
def node() -> str:
    name = ready_node()
    # The service image, from podman's store (images/build.sh) into containerd.
    subprocess.run(["bash", str(NODE_SH), "load", IMAGE], check=True, timeout=300)
    return name


@pytest.fixture(scope="module")
def namespace(node: str) -> Iterator[str]:
    name = f"node-smoke-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def manifests(namespace: str) -> str:
    stub = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "stub", "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "stub"}},
            "template": {
                "metadata": {"labels": {"app": "stub"}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": POD_SECURITY,
                    "containers": [
                        {
                            "name": "stub",
                            "image": IMAGE,
                            "imagePullPolicy": "Never",
                            "args": ["serve"],
                            "ports": [{"name": "http", "containerPort": PORT}],
                            "readinessProbe": {
                                "httpGet": {"path": "/healthz", "port": "http"},
                                "periodSeconds": 1,
                            },
                            "resources": {
                                "requests": {"cpu": "10m", "memory": "64Mi"},
                                "limits": {"memory": "256Mi"},
                            },
                            "securityContext": CONTAINER_SECURITY,
                        }
                    ],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "stub", "namespace": namespace},
        "spec": {
            "selector": {"app": "stub"},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        },
    }
    client = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "client", "namespace": namespace},
        "spec": {
            "automountServiceAccountToken": False,
            "securityContext": POD_SECURITY,
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "client",
                    "image": IMAGE,
                    "imagePullPolicy": "Never",
                    "command": ["sleep", "600"],
                    "securityContext": CONTAINER_SECURITY,
                }
            ],
        },
    }
    return "\n---\n".join(json.dumps(m) for m in (stub, service, client))


@pytest.fixture(scope="module")
def deployed(namespace: str) -> dict[str, object]:
    start = time.monotonic()
    kubectl("apply", "-f", "-", stdin=manifests(namespace))
    kubectl("-n", namespace, "rollout", "status", "deploy/stub", "--timeout=90s")
    ready_s = time.monotonic() - start
    kubectl("-n", namespace, "wait", "--for=condition=Ready", "pod/client", "--timeout=90s")
    pod = json.loads(kubectl("-n", namespace, "get", "pod", "-l", "app=stub", "-o", "json"))
    print(f"apply -> stub Ready in {ready_s:.1f} s")
    return {"pod": pod["items"][0], "ready_s": ready_s}


# Run in the Pod: its uid/gid, PID 1's capabilities, no_new_privs and seccomp mode, and
# whether the root filesystem takes a write.
SECURITY_PROBE = """
import json, os
status = {}
for line in open("/proc/1/status").read().splitlines():
    key, _, value = line.partition(":")
    status[key] = value.strip()
try:
    open("/written", "w")
    readonly = False
except OSError:
    readonly = True
print(json.dumps({
    "uid": os.getuid(), "gid": os.getgid(), "capeff": status["CapEff"],
    "capprm": status["CapPrm"], "nonewprivs": status["NoNewPrivs"],
    "seccomp": status["Seccomp"], "readonly_root": readonly,
}))
"""


def exec_py(namespace: str, pod: str, code: str) -> str:
    return kubectl("-n", namespace, "exec", pod, "--", "python3", "-c", code)


def test_pod_runs_ready_under_the_chart_security_context(
    namespace: str, deployed: dict[str, object]
) -> None:
    pod = deployed["pod"]
    assert isinstance(pod, dict)
    name = pod["metadata"]["name"]
    assert in_range(pod["status"]["podIP"], ENV["POD_CIDR"])
    out = exec_py(namespace, name, SECURITY_PROBE)
    facts = json.loads(out)
    assert facts["uid"] == 10001 and facts["gid"] == 10001
    assert int(facts["capeff"], 16) == 0 and int(facts["capprm"], 16) == 0
    assert facts["nonewprivs"].strip() == "1"
    assert facts["seccomp"].strip() == "2"  # filter mode: RuntimeDefault
    assert facts["readonly_root"] is True


def test_cluster_ip_service_reaches_the_pod_by_its_dns_name(
    namespace: str, deployed: dict[str, object]
) -> None:
    service = json.loads(kubectl("-n", namespace, "get", "service", "stub", "-o", "json"))
    cluster_ip = service["spec"]["clusterIP"]
    assert in_range(cluster_ip, ENV["SERVICE_CIDR"])
    fqdn = f"stub.{namespace}.svc.cluster.local"
    out = exec_py(
        namespace,
        "client",
        "import json, socket, urllib.request\n"
        f"resolved = socket.gethostbyname('{fqdn}')\n"
        "short = socket.gethostbyname('stub')\n"
        "body = urllib.request.urlopen('http://stub/healthz', timeout=5).read().decode()\n"
        "print(json.dumps({'resolved': resolved, 'short': short, 'status': 'ok', 'body': body}))\n"
        "print(open('/etc/resolv.conf').read())",
    )
    first, _, resolv = out.partition("\n")
    facts = json.loads(first)
    assert facts["resolved"] == cluster_ip
    assert facts["short"] == cluster_ip  # the search path of the Pod's namespace
    assert facts["body"]
    # Only CoreDNS's Service in the Pod's resolver: nothing of the host's.
    nameservers = [line.split()[1] for line in resolv.splitlines() if line.startswith("nameserver")]
    assert nameservers == [ENV["CLUSTER_DNS_IP"]]


def test_names_outside_the_cluster_do_not_resolve(
    namespace: str, deployed: dict[str, object]
) -> None:
    # CoreDNS has no `forward`: an outside name gets an answer from it (NXDOMAIN or refused),
    # never from an upstream resolver.
    out = exec_py(
        namespace,
        "client",
        "import socket\n"
        "try:\n"
        "    print(socket.gethostbyname('example.com'))\n"
        "except OSError as exc:\n"
        "    print('error', exc)",
    )
    assert out.startswith("error"), out
