"""The fault schedule of bench/chaos.py: what it kills, cuts and degrades, and when."""

from __future__ import annotations

import contextlib
import logging
import random
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

ROOT = Path(__file__).resolve().parent.parent
from dataplatform_stub.control import StubControl  # noqa: E402
from ticketing_dev.stack import CONSUMERS, Process, Stack  # noqa: E402
from ticketing_events.testing import KafkaServer, TcpProxy  # noqa: E402

log = logging.getLogger("chaos")


@dataclass(frozen=True)
class Plan:
    """How much load and which faults; times in seconds."""

    payments: int = 5000  # payment attempts wanted (each fan pays at most once)
    rate: float = 20.0  # fans arriving per second
    round_fans: int = 1000  # fans per round (a fresh catalogue each)
    poor_share: float = 0.1
    patience: float = 20.0
    concurrency: int = 16
    kill_every: tuple[float, float] = (3.0, 6.0)
    restart_after: tuple[float, float] = (1.0, 5.0)
    instance_every: tuple[float, float] = (5.0, 12.0)
    outage_s: float = 10.0  # Redis, then PostgreSQL
    broker_down_s: float = 3.0
    api_down_s: float = 2.0
    stub_fault_s: float = 60.0
    stub_error_rate: float = 0.2
    stub_hang_rate: float = 0.05
    drain_timeout_s: float = 900.0
    session_timeout_ms: int = 10_000  # a SIGKILLed member's partitions move after this
    seed: int | None = None

    @property
    def rush_s(self) -> float:
        """The rush's expected length; the one-off faults are placed on it."""
        return self.payments / self.rate


# -- what can be restarted -------------------------------------------------------------


class Broker(Protocol):
    """One Kafka broker that the schedule SIGKILLs and starts again."""

    name: str

    def kill(self) -> str: ...

    def start(self) -> None: ...


class PrivateBroker:
    """Node ``node`` of a ``KafkaServer`` of this run (one node or a cluster's); a restart
    keeps its data."""

    def __init__(self, server: KafkaServer, node: int = 1) -> None:
        self.server = server
        self.node = node
        self.name = f"kafka node {node}"

    def kill(self) -> str:
        pid = self.server.processes[self.node].pid
        self.server.kill(self.node)
        return f"pid {pid}"

    def start(self) -> None:
        self.server.start_node(self.node)


class InfraBroker:
    """Node ``node`` of infra/infra.sh's Kafka (the broker, or kafka-N of a cluster), killed
    and started by ``infra.sh kafka-kill|kafka-start N``."""

    def __init__(self, root: Path, env: Mapping[str, str], node: int = 1) -> None:
        self._script = str(root / "infra" / "infra.sh")
        self._env = dict(env)
        self.node = node
        self.name = f"kafka node {node}"

    def _run(self, command: str) -> None:
        subprocess.run(["bash", self._script, command, str(self.node)], env=self._env, check=True)

    def kill(self) -> str:
        self._run("kafka-kill")
        return "infra.sh kafka-kill"

    def start(self) -> None:
        self._run("kafka-start")  # returns once the broker answers


# -- the fault log ---------------------------------------------------------------------


@dataclass
class Fault:
    kind: str
    target: str
    start_s: float
    end_s: float | None = None
    detail: str = ""


class FaultLog:
    def __init__(self, t0: float) -> None:
        self.t0 = t0
        self.faults: list[Fault] = []
        self._lock = threading.Lock()

    def now(self) -> float:
        return round(time.monotonic() - self.t0, 2)

    def begin(self, kind: str, target: str, detail: str = "") -> Fault:
        fault = Fault(kind, target, self.now(), detail=detail)
        with self._lock:
            self.faults.append(fault)
        log.info("fault %s %s at %.1f s %s", kind, target, fault.start_s, detail)
        return fault

    def end(self, fault: Fault, detail: str = "") -> None:
        fault.end_s = self.now()
        if detail:
            fault.detail = f"{fault.detail}; {detail}".strip("; ")
        log.info("fault %s %s over at %.1f s %s", fault.kind, fault.target, fault.end_s, detail)

    def last_end(self) -> float:
        return max((f.end_s or f.start_s for f in self.faults), default=0.0)


# -- the stand-in's admin, in one place ------------------------------------------------


def stub_admin(stack: Stack) -> StubControl:
    """The stand-in data platform's admin endpoints (knobs, records)."""
    return StubControl(stack.stub_url, stack.stub_admin_url)


# -- the fault schedule ----------------------------------------------------------------


class Chaos:
    """Runs the schedule in threads against a running stack; ``finish()`` ends every fault and
    brings every process of the stack back."""

    def __init__(
        self,
        stack: Stack,
        plan: Plan,
        broker: Broker,
        proxies: Mapping[str, TcpProxy],
        faults: FaultLog,
        rng: random.Random,
    ) -> None:
        self.stack = stack
        self.plan = plan
        self.broker = broker
        self.proxies = proxies
        self.log = faults
        self.rng = rng
        self.stopping = threading.Event()
        self.one_offs_done = threading.Event()
        # Stack is not thread-safe: every start, stop and kill goes through this lock.
        self._lock = threading.Lock()
        self._instances: dict[str, Process] = {}  # extra instances running, by name
        self._threads: list[threading.Thread] = []

    def _thread(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def start(self) -> None:
        self._thread(self._kills, "kills")
        self._thread(self._rebalances, "instances")
        self._thread(self._one_offs, "one-offs")

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless stopping; False when the schedule is over."""
        return not self.stopping.wait(seconds)

    # SIGKILL of a random consumer process, restarted after a random delay.
    def _kills(self) -> None:
        while self._sleep(self.rng.uniform(*self.plan.kill_every)):
            with self._lock:
                wanted = {p.name: p for p in self.stack.processes() if p.name in CONSUMERS}
                wanted.update(self._instances)
                name = self.rng.choice(sorted(wanted))
                pid = self.stack.kill(name)
            fault = self.log.begin("kill", name, f"SIGKILL pid {pid}")
            delay = self.rng.uniform(*self.plan.restart_after)
            self._thread(lambda p=wanted[name], f=fault, d=delay: self._restart(p, f, d), "restart")

    def _restart(self, process: Process, fault: Fault, delay: float) -> None:
        time.sleep(delay)
        with self._lock:
            still_wanted = process.name in CONSUMERS or process.name in self._instances
            if still_wanted:
                self.stack.start([process], ready=False)
        self.log.end(fault, "restarted" if still_wanted else "instance retired meanwhile")

    # A second and a third instance of a random consumer, started and stopped again.
    def _rebalances(self) -> None:
        while self._sleep(self.rng.uniform(*self.plan.instance_every)):
            service = self.rng.choice(CONSUMERS)
            started = []
            for n in (2, 3):
                process = self.stack.instance(service, n, free_port())
                fault = self.log.begin("instance", process.name, "start")
                with self._lock:
                    self._instances[process.name] = process
                    self.stack.start([process], ready=False)
                started.append((process, fault))
                if not self._sleep(self.rng.uniform(*self.plan.instance_every)):
                    break
            for process, fault in reversed(started):
                self._retire(process, fault)
                self._sleep(self.rng.uniform(1.0, 3.0))

    def _retire(self, process: Process, fault: Fault) -> None:
        with self._lock:
            self._instances.pop(process.name, None)
            self.stack.stop([process.name])
        self.log.end(fault, "stopped (SIGTERM)")

    # The one-off faults, at fixed points of the rush, each in a thread of its own.
    def _one_offs(self) -> None:
        span = self.plan.rush_s
        schedule = [
            (0.15, self._cut, ("redis",)),
            (0.25, self._stub_faults, ()),
            (0.40, self._broker_restart, ()),
            (0.60, self._cut, ("postgres",)),
            (0.75, self._api_restart, ()),
        ]
        threads = []
        start = time.monotonic()
        for share, action, args in schedule:
            wait = start + share * span - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            thread = threading.Thread(target=action, args=args, daemon=True)
            thread.start()
            threads.append(thread)
        for thread in threads:
            thread.join()
        self.one_offs_done.set()

    def _cut(self, name: str) -> None:
        proxy = self.proxies[name]
        fault = self.log.begin("unreachable", name, f"proxy :{proxy.port} cut")
        proxy.stop()
        time.sleep(self.plan.outage_s)
        proxy.start()
        self.log.end(fault, "proxy back")

    def _stub_faults(self) -> None:
        admin = stub_admin(self.stack)
        p = self.plan
        knobs = f"{p.stub_error_rate:.0%} 5xx, {p.stub_hang_rate:.0%} hang"
        fault = self.log.begin("stand-in", "dataplatform-stub", knobs)
        try:
            admin.knobs(error_rate=p.stub_error_rate, hang_rate=p.stub_hang_rate)
            time.sleep(p.stub_fault_s)
            admin.knobs(error_rate=0.0, hang_rate=0.0)
        finally:
            admin.close()
        self.log.end(fault, "knobs back to 0")

    def _broker_restart(self) -> None:
        fault = self.log.begin("broker", self.broker.name, "SIGKILL")
        fault.detail += f" {self.broker.kill()}"
        time.sleep(self.plan.broker_down_s)
        self.broker.start()
        self.log.end(fault, "started, answers")

    def _api_restart(self) -> None:
        with self._lock:
            pid = self.stack.kill("payment-api")
        fault = self.log.begin("kill", "payment-api", f"SIGKILL pid {pid}")
        time.sleep(self.plan.api_down_s)
        (api,) = [p for p in self.stack.processes() if p.name == "payment-api"]
        with self._lock:
            self.stack.start([api], ready=False)
        self.log.end(fault, "restarted")

    def finish(self) -> None:
        """Stop the schedule, end every fault, start whatever is down (as a supervisor would)
        and wait until every process answers ready."""
        self.stopping.set()
        for thread in self._threads:
            thread.join()
        with self._lock:
            for name in list(self._instances):
                self._instances.pop(name)
                self.stack.stop([name])
            self.stack.start(self.stack.processes())
        for fault in self.log.faults:
            if fault.end_s is None:
                self.log.end(fault, "ended with the schedule")


def free_ports_from(count: int) -> int:
    """The first of ``count`` consecutive free ports, below the ephemeral range (ports of
    outgoing connections) where nothing takes them meanwhile."""
    while True:
        base = random.randrange(20000, 30000 - count)
        with contextlib.ExitStack() as held:
            try:
                for port in range(base, base + count):
                    held.enter_context(socket.create_server(("127.0.0.1", port)))
            except OSError:
                continue
        return base


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
