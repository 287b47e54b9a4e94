"""``make new-consumer`` in a copy of the workspace: the generated consumer's own test passes
against the real broker, the chart (and its tests) deploy it, the images and the stack of
``make up`` include it, and no other file changed than the generator's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parent.parent
NAME = "audit-consumer"
GROUP = f"{NAME}-group"
EVENTS = "payment.success,payment.failed"
# What the generator may change besides the new service: the registry, the chart's entry and
# golden renders, the lock file.
DERIVED = {
    "libs/events/src/ticketing_events/topics.py",
    "charts/ticketing/values.yaml",
    "uv.lock",
}


def run(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, f"{' '.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def workspace_env() -> dict[str, str]:
    """This environment without this workspace's virtualenv: uv uses the copy's own."""
    return {
        k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")
    }


def git(cwd: Path, *args: str) -> str:
    return run(cwd, "git", "-c", "user.name=t", "-c", "user.email=t@t", *args)


@pytest.fixture(scope="module")
def uv() -> str:
    return run(ROOT, "bash", "scripts/ensure-uv.sh").strip()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, uv: str) -> Iterator[Path]:
    """A copy of the tracked (and untracked, not ignored) files, committed, then generated."""
    root = tmp_path_factory.mktemp("workspace")
    listed = git(ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "copy")
    run(
        root,
        sys.executable,
        "scripts/new_consumer.py",
        NAME,
        EVENTS,
        "--root",
        str(root),
        env={**os.environ, "UV": uv},
    )
    run(root, uv, "sync", "--all-packages", "--locked", "--quiet", env=workspace_env())
    yield root


def in_workspace(workspace: Path, uv: str, *args: str) -> str:
    return run(workspace, uv, "run", "--locked", *args, env=workspace_env())


def test_only_the_new_service_and_derived_files_changed(workspace: Path) -> None:
    status = git(workspace, "status", "--porcelain", "--untracked-files=all").splitlines()
    changed = {line[3:] for line in status}
    new = {c for c in changed if c.startswith(f"services/{NAME}/")}
    goldens = {c for c in changed if c.startswith("charts/ticketing/examples/")}
    assert changed - new - goldens == DERIVED
    assert {
        f"services/{NAME}/src/audit_consumer/app.py",
        f"services/{NAME}/tests/test_audit_consumer.py",
    } <= new
    assert "charts/ticketing/examples/default.yaml" in goldens


def test_the_generated_consumer_passes_its_test_on_the_real_broker(
    workspace: Path, uv: str, kafka_bootstrap: str, redis_url: str
) -> None:
    out = in_workspace(workspace, uv, "pytest", "-q", "-p", "no:cacheprovider", f"services/{NAME}")
    assert "1 passed" in out


def test_the_chart_deploys_it_and_its_tests_count_it(workspace: Path, uv: str) -> None:
    render = (workspace / "charts/ticketing/examples/default.yaml").read_text()
    objects = [o for o in yaml.safe_load_all(render) if o]
    (deployment,) = [
        o
        for o in objects
        if o["kind"] == "Deployment" and o["metadata"]["name"] == f"ticketing-{NAME}"
    ]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["CONSUMER_GROUP"] == GROUP
    assert container["image"] == f"localhost/ticketing/{NAME}:dev"
    assert container["args"] == ["run"]
    out = in_workspace(
        workspace, uv, "pytest", "-q", "-p", "no:cacheprovider", "charts/tests/test_chart.py"
    )
    assert " passed" in out and "failed" not in out


def test_the_stack_and_the_images_include_it(workspace: Path, uv: str) -> None:
    probe = (
        "import json, sys; from ticketing_dev.stack import Stack, infra_env;"
        "s = Stack(infra_env()); (p,) = [p for p in s.processes() if p.name == sys.argv[1]];"
        "print(json.dumps({'args': p.args, 'group': p.env['CONSUMER_GROUP'],"
        " 'installed': s.installed(p.name)}))"
    )
    process = json.loads(in_workspace(workspace, uv, "python", "-c", probe, NAME).splitlines()[-1])
    assert process == {"args": ["run"], "group": GROUP, "installed": True}
    images = run(
        workspace, "bash", "-c", f"source images/common.sh && services && dockerfile_of {NAME}"
    ).split()
    assert NAME in images
    assert images[-1] == str(workspace / "images/consumer.Dockerfile")
