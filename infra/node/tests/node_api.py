"""What both node test modules use: infra/node/env.sh's values, kubectl on the node's
kubeconfig, and the check that the node is up and Ready."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
NODE_SH = REPO / "infra" / "node" / "node.sh"
HINT = "start the real node with `make cluster-up` (as root)"


def shell_env(script: str, names: str) -> dict[str, str]:
    """The variables ``names`` after running ``script`` in bash from the repository."""
    out = subprocess.run(
        ["bash", "-c", f'{script} >/dev/null && for n in {names}; do echo "$n=${{!n}}"; done'],
        check=True,
        capture_output=True,
        text=True,
        cwd=REPO,
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines())


ENV = shell_env(
    f"source {REPO}/infra/node/env.sh",
    "KUBECTL_BIN NODE_KUBECONFIG NODE_NAME SERVICE_CIDR POD_CIDR CLUSTER_DNS_IP",
)


def run(*cmd: str, stdin: str | None = None, check: bool = True, timeout: float = 600) -> str:
    proc = subprocess.run(
        list(cmd), input=stdin, capture_output=True, text=True, timeout=timeout, cwd=REPO
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd[:4])}... failed: {proc.stderr.strip()[-2000:]}")
    return proc.stdout


def kubectl(*args: str, stdin: str | None = None, check: bool = True, timeout: float = 300) -> str:
    kube = ("--kubeconfig", ENV["NODE_KUBECONFIG"])
    return run(ENV["KUBECTL_BIN"], *kube, *args, stdin=stdin, check=check, timeout=timeout)


def ready_node() -> str:
    """The node's name once it answers Ready; the test fails with how to start it otherwise."""
    if not Path(ENV["NODE_KUBECONFIG"]).exists() or not Path(ENV["KUBECTL_BIN"]).exists():
        pytest.fail(f"no kubeconfig at {ENV['NODE_KUBECONFIG']}; {HINT}")
    try:
        status = json.loads(kubectl("get", "node", ENV["NODE_NAME"], "-o", "json"))
    except AssertionError as exc:
        pytest.fail(f"the node does not answer ({exc}); {HINT}")
    ready = [c for c in status["status"]["conditions"] if c["type"] == "Ready"]
    assert ready and ready[0]["status"] == "True", ready
    return ENV["NODE_NAME"]
