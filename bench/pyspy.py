"""Sample a running Python process tree with py-spy and say where its CPU went, by package.

``profiled(pid, out)`` records while its block runs (py-spy ``--subprocesses``, so uvicorn's
workers count; ``--gil``: only the thread holding the GIL is sampled, so the samples are
Python's CPU, not a thread waiting in a C call such as psycopg's socket wait). ``shares``
reads the folded stacks back: the share of samples whose innermost frame is in each package
(self), and the share whose stack passes through it (inclusive).
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PY_SPY = Path(sys.executable).parent / "py-spy"
# A frame is "function (path/to/file.py:123)".
_FRAME_FILE = re.compile(r"\(([^()]*?\.py)(?::\d+)?\)$")


@contextmanager
def profiled(pid: int, out: Path, rate: int = 200) -> Iterator[None]:
    command = [str(PY_SPY), "record", "--pid", str(pid), "--subprocesses", "--nonblocking"]
    command += ["--gil"]
    command += ["--rate", str(rate), "--format", "raw", "--output", str(out)]
    recorder = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1)  # attached before the block starts
    try:
        yield
    finally:
        recorder.send_signal(signal.SIGINT)
        _, err = recorder.communicate(timeout=60)
        if not out.exists():
            raise RuntimeError(f"py-spy wrote no profile: {err.decode()[-2000:]}")


def package(frame: str) -> str:
    """The top-level package of a frame's file (py-spy names it from its import root:
    "sqlalchemy/engine/base.py", "threading.py")."""
    match = _FRAME_FILE.search(frame)
    if match is None:
        return "(unknown)"
    path = match.group(1).rsplit("site-packages/", 1)[-1].lstrip("/")
    return path.split("/", 1)[0].removesuffix(".py")


def shares(folded: Path, roles: dict[str, str] | None = None) -> dict[str, dict[str, float]]:
    """{"self": {package: share}, "inclusive": {package: share}, "roles": {role: share}}, most
    first. A stack's role is the first of ``roles`` (marker -> role) whose marker it contains."""
    own: Counter[str] = Counter()
    through: Counter[str] = Counter()
    by_role: Counter[str] = Counter()
    total = 0
    for line in folded.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [f for f in stack.split(";") if _FRAME_FILE.search(f)]
        if not frames:
            continue
        total += n
        own[package(frames[-1])] += n
        for name in {package(f) for f in frames}:
            through[name] += n
        role = next((r for marker, r in (roles or {}).items() if marker in stack), "other")
        by_role[role] += n
    return {
        kind: {k: round(v / total, 3) for k, v in counter.most_common()}
        for kind, counter in (("self", own), ("inclusive", through), ("roles", by_role))
    }
