"""``make new-consumer NAME=audit-consumer EVENTS=payment.success[,payment.failed]``.

A new post-payment step: ``services/<NAME>`` from ``scripts/consumer-template`` (copier; an app,
a handler, a test against the real broker, a README), its group in the topic registry, its
chart entry, the lock file and the chart's golden renders. Everything else that names the
groups (the stack of ``make up``, the images, the chart tests, the end-to-end checks) reads
the registry. Then write the step in ``handlers.py`` and ``app.py``.

    python scripts/new_consumer.py NAME EVENTS [--group GROUP] [--root DIR] [--no-golden]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

from copier import run_copy
from ticketing_events import topics
from ticketing_events.topics import CONSUMER_GROUPS, TOPIC_EVENTS

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "scripts" / "consumer-template"
NAME = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
REGISTRY = Path("libs/events/src/ticketing_events/topics.py")
VALUES = Path("charts/ticketing/values.yaml")
# Where the registry's tuple of groups and the chart's consumer entries end.
REGISTRY_END = "\n    )\n}\n"
VALUES_MARK = "  # make new-consumer adds its entries above this line.\n"
# The topic constants of topics.py, by topic.
TOPIC_NAMES = {v: k for k, v in vars(topics).items() if isinstance(v, str) and v in TOPIC_EVENTS}


class Refused(Exception):
    """The name or the events cannot make a new consumer."""


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def check(root: Path, name: str, events: list[str], group: str) -> None:
    if not NAME.fullmatch(name):
        raise Refused(f"{name!r}: lower-case words joined by '-', e.g. audit-consumer")
    if (root / "services" / name).exists():
        raise Refused(f"services/{name} exists")
    taken = {g.service for g in CONSUMER_GROUPS.values()} | set(CONSUMER_GROUPS)
    if name in taken or group in taken:
        raise Refused(f"{name} or {group} is in the topic registry already")
    unknown = [e for e in events if e not in TOPIC_EVENTS]
    if not events or unknown:
        raise Refused(f"events must be among {sorted(TOPIC_EVENTS)}; not {unknown or events}")


def insert(path: Path, before: str, text: str) -> None:
    """``text`` before the first ``before`` in ``path``."""
    content = path.read_text()
    if before not in content:
        raise Refused(f"{path}: the place for the new entry ({before.strip()!r}) is gone")
    path.write_text(content.replace(before, text + before, 1))


def generate(root: Path, name: str, events: list[str], group: str) -> None:
    package = name.replace("-", "_")
    answers = {
        "service": name,
        "package": package,
        "group": group,
        "events": [
            {
                "topic": e,
                "model": TOPIC_EVENTS[e].__name__,
                "factory": snake(TOPIC_EVENTS[e].__name__),
            }
            for e in events
        ],
    }
    run_copy(str(TEMPLATE), root / "services" / name, answers, defaults=True, quiet=True)
    names = [TOPIC_NAMES[e] for e in events]
    constants = ", ".join(names) + ("," if len(names) == 1 else "")
    insert(
        root / REGISTRY,
        REGISTRY_END,
        f'\n        ConsumerGroup("{group}", "{name}", ({constants})),',
    )
    insert(
        root / VALUES,
        VALUES_MARK,
        f"  {name}:\n    needs: [kafka, redis, otlp]\n    consumer:\n"
        f"      group: {group}\n      topics: [{', '.join(events)}]\n\n",
    )


def derive(root: Path, name: str, golden: bool) -> None:
    """The registry and the new package formatted, the lock file with the new workspace
    member, the chart's golden renders."""
    ruff = [sys.executable, "-m", "ruff"]
    paths = [str(REGISTRY), f"services/{name}"]
    subprocess.run(
        [*ruff, "check", "--quiet", "--fix", "--select", "I", *paths], cwd=root, check=True
    )
    subprocess.run([*ruff, "format", "--quiet", *paths], cwd=root, check=True)
    uv = os.environ.get("UV", "uv")
    subprocess.run([uv, "lock"], cwd=root, check=True)
    if golden:
        subprocess.run(["bash", "charts/check.sh", "--golden"], cwd=root, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="the service, e.g. audit-consumer")
    parser.add_argument("events", help="comma-separated topics, e.g. payment.success")
    parser.add_argument("--group", help="its consumer group (default: <name>-group)")
    parser.add_argument("--root", type=Path, default=ROOT, help="the workspace (default: this)")
    parser.add_argument(
        "--no-golden", action="store_true", help="leave the chart's golden renders as they are"
    )
    args = parser.parse_args(argv)
    events = [e.strip() for e in args.events.split(",") if e.strip()]
    group = args.group or f"{args.name}-group"
    try:
        check(args.root, args.name, events, group)
        generate(args.root, args.name, events, group)
    except Refused as exc:
        print(f"new-consumer: {exc}", file=sys.stderr)
        return 2
    derive(args.root, args.name, golden=not args.no_golden)
    print(
        f"new-consumer: services/{args.name} in {group} on {', '.join(events)}; "
        f"write its step in services/{args.name}/src/{args.name.replace('-', '_')}/"
        "handlers.py and app.py, then `make test`"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
