"""The local system as supervised processes, with logs and pid files under ``.demo/``.

    python -m ticketing_dev.stack up|down|status|logs [--db sqlite|postgres] [--dir .demo]

payment-api (its outbox relay and queue activator run as threads inside it), the consumers
of the topic registry and the stand-in data platform, each started from its console
script in ``.venv/bin``; a service not installed yet is skipped with a warning. ``up`` waits
for every health endpoint and does not start what already runs; ``down`` sends SIGTERM, then
SIGKILL after a grace period, and does nothing when nothing runs.

The database is the embedded SQLite file ``.demo/payment.db``, or PostgreSQL (``DATABASE_URL``
of infra/env.sh) in the schema ``demo`` with ``--db postgres`` / ``DEMO_DB=postgres``. Redis
keys get the prefix ``demo:``, so the stack never meets the tests' data.

The end-to-end tests start the same stack::

    stack = Stack(infra_env(), ROOT)
    stack.prepare()  # topics and migrations
    stack.up()
    ...
    stack.down()
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from ticketing_events.topics import CONSUMER_GROUPS

if TYPE_CHECKING:
    from sqlalchemy import Engine

# The repository: this package is the workspace's own (libs/dev/src/ticketing_dev).
ROOT = Path(__file__).resolve().parents[4]
DATABASES = ("sqlite", "postgres")
# The registry's consumers in its order, one health port each from the first one.
CONSUMERS = tuple(g.service for g in CONSUMER_GROUPS.values())


class StackError(RuntimeError):
    """A process did not come up (the message carries the tail of its log)."""


@dataclass(frozen=True)
class Process:
    name: str
    args: tuple[str, ...]  # arguments of the console script ``name``
    health_url: str
    env: Mapping[str, str]


@dataclass(frozen=True)
class Status:
    name: str
    state: str  # running, stopped or not installed
    pid: int | None
    ready: bool
    log: Path


def infra_env(root: Path = ROOT) -> dict[str, str]:
    """This environment plus infra/env.sh's addresses (which keep values set here)."""
    script = 'source "$0" && env -0'
    out = subprocess.run(
        ["bash", "-c", script, str(root / "infra" / "env.sh")], capture_output=True, check=True
    ).stdout.decode()
    return dict(item.split("=", 1) for item in out.split("\0") if "=" in item)


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


class Stack:
    def __init__(
        self,
        env: Mapping[str, str],
        root: Path = ROOT,
        *,
        db: str = "sqlite",
        state_dir: Path | None = None,
        api_port: int = 8000,
        health_port: int = 8181,
        stub_port: int = 8190,
        stub_admin_port: int = 8191,
        schema: str = "demo",
        redis_prefix: str = "demo:",
        group_prefix: str = "",
        extra_env: Mapping[str, str] | None = None,
        ready_timeout: float = 90.0,
        stop_timeout: float = 15.0,
        say: Callable[[str], None] = print,
    ) -> None:
        if db not in DATABASES:
            raise ValueError(f"db must be one of {DATABASES}, not {db!r}")
        self.env = dict(env)
        self.root = root
        self.db = db
        self.state_dir = state_dir or root / ".demo"
        self.bin_dir = root / ".venv" / "bin"
        self.api_port = api_port
        self.health_port = health_port
        self.stub_port = stub_port
        self.stub_admin_port = stub_admin_port
        self.schema = schema
        self.redis_prefix = redis_prefix
        # Tests run the consumers in groups of their own: ``<group_prefix><registry group>``.
        self.group_prefix = group_prefix
        self.extra_env = dict(extra_env or {})
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.say = say
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    # -- what runs, and with which settings ----------------------------------------------

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def stub_url(self) -> str:
        """The stand-in data platform; the consumer POSTs to ``/payments``."""
        return f"http://127.0.0.1:{self.stub_port}"

    @property
    def stub_admin_url(self) -> str:
        """The stand-in's ``/admin/*`` (counters, knobs, reset), on a port of its own."""
        return f"http://127.0.0.1:{self.stub_admin_port}"

    @property
    def sqlite_path(self) -> Path:
        return self.state_dir / "payment.db"

    def database_env(self) -> dict[str, str]:
        """``DATABASE_URL`` (and ``DATABASE_SCHEMA``) of every process."""
        if self.db == "sqlite":
            return {"DATABASE_URL": f"sqlite:///{self.sqlite_path}"}
        return {"DATABASE_URL": self.env["DATABASE_URL"], "DATABASE_SCHEMA": self.schema}

    def common_env(self) -> dict[str, str]:
        # payment-api verifies JWTs with the development key (AUTH_JWT_SECRET, else the
        # documented development default) that mint_dev_token uses in this environment too.
        from payment_api.auth import dev_auth_env

        return {
            **self.env,
            **dev_auth_env(self.env),
            **self.database_env(),
            "REDIS_KEY_PREFIX": self.redis_prefix,
            "DATAPLATFORM_URL": f"{self.stub_url}/payments",
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }

    def group_of(self, service: str) -> str:
        """The consumer group ``service`` runs in."""
        from ticketing_events.topics import CONSUMER_GROUPS

        (group,) = [g.name for g in CONSUMER_GROUPS.values() if g.service == service]
        return f"{self.group_prefix}{group}"

    def processes(self) -> list[Process]:
        common = self.common_env()

        def process(name: str, args: tuple[str, ...], health: str, **env: str) -> Process:
            return Process(name, args, health, {**common, "OTEL_SERVICE_NAME": name, **env})

        api = process(
            "payment-api",
            ("serve",),
            f"{self.api_url}/readyz",
            API_HOST="127.0.0.1",
            API_PORT=str(self.api_port),
        )
        consumers = [
            process(
                name,
                ("run",),
                f"http://127.0.0.1:{self.health_port + i}/readyz",
                CONSUMER_HEALTH_HOST="127.0.0.1",
                CONSUMER_HEALTH_PORT=str(self.health_port + i),
                CONSUMER_GROUP=self.group_of(name),
            )
            for i, name in enumerate(CONSUMERS)
        ]
        stub = process(
            "dataplatform-stub",
            ("serve",),
            f"{self.stub_url}/healthz",
            DATAPLATFORM_STUB_HOST="127.0.0.1",
            DATAPLATFORM_STUB_PORT=str(self.stub_port),
            DATAPLATFORM_STUB_ADMIN_PORT=str(self.stub_admin_port),
        )
        return [api, stub, *consumers]

    def installed(self, name: str) -> bool:
        return self.script(name).is_file()

    def script(self, name: str) -> Path:
        """The console script of process ``name``; instance ``<name>@<n>`` runs ``name``'s."""
        return self.bin_dir / name.split("@", 1)[0]

    def instance(self, name: str, n: int, health_port: int) -> Process:
        """Instance ``n`` (2, 3, ...) of consumer ``name``: the same group, its own health port
        and its own pid and log files (``<name>@<n>``); start it with ``start``."""
        (first,) = [p for p in self.processes() if p.name == name]
        env = {**first.env, "CONSUMER_HEALTH_PORT": str(health_port)}
        return Process(f"{name}@{n}", first.args, f"http://127.0.0.1:{health_port}/readyz", env)

    def log_path(self, name: str) -> Path:
        return self.state_dir / f"{name}.log"

    def _pid_path(self, name: str) -> Path:
        return self.state_dir / f"{name}.pid"

    def pid(self, name: str) -> int | None:
        """The pid of the running process ``name``; a stale pid file is removed.

        The command line must name the console script, so a recycled pid is not taken for
        ours; a zombie has an empty command line and counts as gone.
        """
        path = self._pid_path(name)
        try:
            pid = int(path.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (FileNotFoundError, ValueError):
            path.unlink(missing_ok=True)
            return None
        if str(self.script(name)).encode() not in cmdline:
            path.unlink(missing_ok=True)
            return None
        return pid

    # -- preparing the data ----------------------------------------------------------------

    def run_tool(self, *args: str) -> str:
        """Run ``payment-api <args>`` (migrate, seed) with the stack's database; its output."""
        result = subprocess.run(
            [str(self.bin_dir / "payment-api"), *args],
            env={**self.common_env(), "LOG_LEVEL": "WARNING"},
            cwd=self.root,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise StackError(
                f"payment-api {' '.join(args)} failed:\n{result.stdout}{result.stderr}"
            )
        return result.stdout.strip()

    def prepare(self) -> None:
        """Create the registry's topics and apply the migrations (both idempotent)."""
        from ticketing_events.topics import ensure_topics

        ensure_topics(self.env["KAFKA_BOOTSTRAP_SERVERS"])
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.run_tool("migrate")

    def engine(self) -> Engine:
        from payment_api.adapters.database import create_db_engine
        from payment_api.config import Settings

        db = self.database_env()
        return create_db_engine(
            Settings(database_url=db["DATABASE_URL"], database_schema=db.get("DATABASE_SCHEMA"))
        )

    def reset(self) -> None:
        """Drop the stack's database and Redis keys (the stack must be down)."""
        import redis
        from sqlalchemy import text

        if running := [p.name for p in self.processes() if self.pid(p.name)]:
            raise StackError(f"cannot reset while running: {', '.join(running)}")
        if self.db == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.sqlite_path}{suffix}").unlink(missing_ok=True)
        else:
            engine = self.engine()
            with engine.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
            engine.dispose()
        client = redis.Redis.from_url(self.env["REDIS_URL"])
        try:
            keys = list(client.scan_iter(match=f"{self.redis_prefix}*", count=1000))
            for i in range(0, len(keys), 500):
                client.delete(*keys[i : i + 500])
        finally:
            client.close()

    # -- starting and stopping -------------------------------------------------------------

    def up(self) -> list[str]:
        """Start what is installed and not running; wait until everything answers ready.

        Returns the names started. If one does not come up, what this call started is
        stopped and ``StackError`` tells which one, with its log tail.
        """
        self.state_dir.mkdir(parents=True, exist_ok=True)
        started: list[Process] = []
        waiting: list[Process] = []
        for process in self.processes():
            if not self.installed(process.name):
                self.say(
                    f"warning: {process.name} skipped: no {self.bin_dir / process.name} "
                    "(not installed yet; `uv sync --all-packages` once it exists)"
                )
                continue
            if self.pid(process.name) is None:
                self._start(process)
                started.append(process)
            else:
                self.say(f"{process.name} is already running")
            waiting.append(process)
        try:
            self._wait_ready(waiting)
        except BaseException:
            self._stop([p.name for p in started])
            raise
        return [p.name for p in started]

    def _start(self, process: Process, *, append: bool = False) -> None:
        with self.log_path(process.name).open("ab" if append else "wb") as log:
            child = subprocess.Popen(
                [str(self.script(process.name)), *process.args],
                env=dict(process.env),
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: Ctrl-C reaches only us
            )
        self._children[process.name] = child
        self._pid_path(process.name).write_text(f"{child.pid}\n")
        self.say(f"started {process.name} (pid {child.pid}, log {self.log_path(process.name)})")

    def _wait_ready(self, processes: Sequence[Process]) -> None:
        pending = list(processes)
        deadline = time.monotonic() + self.ready_timeout
        with httpx.Client(timeout=2) as client:
            while pending:
                for process in list(pending):
                    if self.pid(process.name) is None:
                        raise StackError(self._failure(process, "exited"))
                    try:
                        if client.get(process.health_url).status_code == 200:
                            pending.remove(process)
                    except httpx.HTTPError:
                        pass
                if pending and time.monotonic() > deadline:
                    raise StackError(
                        self._failure(pending[0], f"not ready after {self.ready_timeout:.0f}s")
                    )
                if pending:
                    time.sleep(0.2)

    def _failure(self, process: Process, what: str) -> str:
        log = self.log_path(process.name)
        return f"{process.name} {what} ({process.health_url}); end of {log}:\n{log_tail(log)}"

    def down(self) -> list[str]:
        """Stop every process of the stack, extra instances too; returns the names that were
        running."""
        instances = sorted(p.stem for p in self.state_dir.glob("*@*.pid"))
        return self._stop([p.name for p in self.processes()] + instances)

    def start(self, processes: Sequence[Process], *, ready: bool = True) -> None:
        """Start these processes (of ``processes()`` or ``instance()``) where not running, as a
        supervisor restarts them; with ``ready``, wait until they answer ready."""
        for process in processes:
            if self.pid(process.name) is None:
                self._start(process, append=True)  # after the log of the one that died
        if ready:
            self._wait_ready(processes)

    def stop(self, names: Sequence[str]) -> list[str]:
        """SIGTERM these processes (SIGKILL after the grace period); the names that ran."""
        return self._stop(names)

    def kill(self, name: str) -> int | None:
        """SIGKILL process ``name`` (a crash: no shutdown of any kind); its pid, or None when
        it was not running."""
        pid = self.pid(name)
        if pid is None:
            return None
        self._signal(pid, signal.SIGKILL)
        while self.pid(name) is not None:  # reaped, or a zombie of another parent
            self._reap()
            time.sleep(0.05)
        self._pid_path(name).unlink(missing_ok=True)
        return pid

    def _stop(self, names: Sequence[str]) -> list[str]:
        pids = {name: pid for name in names if (pid := self.pid(name)) is not None}
        for pid in pids.values():
            self._signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        while any(self.pid(n) for n in pids) and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.1)
        for name, pid in pids.items():
            if self.pid(name) is not None:
                self.say(f"{name} did not stop within {self.stop_timeout:.0f}s: SIGKILL")
                self._signal(pid, signal.SIGKILL)
            self._pid_path(name).unlink(missing_ok=True)
        self._reap()
        for name in pids:
            self.say(f"stopped {name}")
        return list(pids)

    @staticmethod
    def _signal(pid: int, sig: signal.Signals) -> None:
        """Signal the process group the process leads (uvicorn workers included)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)

    def _reap(self) -> None:
        """Collect the exit status of children started by this process (no zombies)."""
        for name, child in list(self._children.items()):
            if child.poll() is not None:
                del self._children[name]

    def status(self) -> list[Status]:
        result = []
        with httpx.Client(timeout=1) as client:
            for process in self.processes():
                pid = self.pid(process.name)
                ready = False
                if pid is not None:
                    with contextlib.suppress(httpx.HTTPError):
                        ready = client.get(process.health_url).status_code == 200
                state = "running" if pid else "stopped"
                if not self.installed(process.name):
                    state = "not installed"
                result.append(Status(process.name, state, pid, ready, self.log_path(process.name)))
        return result


def seed_if_empty(stack: Stack) -> None:
    """``payment-api seed`` (its defaults) when the database holds no concert yet."""
    from sqlalchemy import text

    engine = stack.engine()
    try:
        with engine.connect() as conn:
            empty = conn.execute(text("SELECT count(*) FROM concerts")).scalar_one() == 0
    finally:
        engine.dispose()
    if empty:
        stack.say(stack.run_tool("seed"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=("up", "down", "status", "logs"))
    parser.add_argument("--db", choices=DATABASES, default=os.environ.get("DEMO_DB", "sqlite"))
    parser.add_argument("--dir", type=Path, default=None, help="logs, pid files, SQLite file")
    parser.add_argument("--api-port", type=int, default=8000)
    parser.add_argument("--health-port", type=int, default=8181, help="first consumer's")
    parser.add_argument("--stub-port", type=int, default=8190)
    parser.add_argument("--stub-admin-port", type=int, default=8191)
    args = parser.parse_args(argv)
    stack = Stack(
        infra_env(),
        db=args.db,
        state_dir=args.dir,
        api_port=args.api_port,
        health_port=args.health_port,
        stub_port=args.stub_port,
        stub_admin_port=args.stub_admin_port,
    )
    match args.command:
        case "up":
            stack.prepare()
            seed_if_empty(stack)
            try:
                stack.up()
            except StackError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
            print(f"payment-api: {stack.api_url}/docs   logs: make logs   stop: make down")
        case "down":
            if not stack.down():
                print("nothing running")
        case "status":
            for s in stack.status():
                health = "ready" if s.ready else "-"
                pid = s.pid or "-"
                print(f"{s.name:22} {s.state:14} pid {pid!s:8} {health:6} {s.log}")
        case "logs":
            logs = [str(stack.log_path(p.name)) for p in stack.processes()]
            logs = [p for p in logs if Path(p).exists()]
            if not logs:
                print(f"no logs in {stack.state_dir}", file=sys.stderr)
                return 1
            os.execvp("tail", ["tail", "-n", "20", "-F", *logs])
    return 0


if __name__ == "__main__":
    sys.exit(main())
