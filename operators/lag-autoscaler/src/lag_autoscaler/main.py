"""``lag-autoscaler run`` and ``release``: the composition root and the process entrypoint."""

from __future__ import annotations

import argparse
import random

import kopf
from kubernetes import client
from prometheus_client import start_http_server
from ticketing_events import metrics
from ticketing_events.logs import configure_logging
from ticketing_events.settings import KafkaSettings

from lag_autoscaler.config import Settings
from lag_autoscaler.handlers import Adapters, Health, operator_memo, registry
from lag_autoscaler.kafka_lag import KafkaLagReader
from lag_autoscaler.kube import DeploymentScaleTarget, api_client
from lag_autoscaler.release import release


def build_adapters(settings: Settings, kafka: KafkaSettings) -> Adapters:
    return Adapters(
        lag_source=KafkaLagReader(
            kafka.bootstrap_servers, timeout_s=settings.autoscaler_kafka_timeout_s
        ),
        target=DeploymentScaleTarget(api_client()),
        health=Health(),
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lag-autoscaler", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="watch ConsumerLagAutoscalers and scale their targets")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=[], help="repeatable")
    scope.add_argument("-A", "--all-namespaces", action="store_true")
    peering = run.add_mutually_exclusive_group()
    peering.add_argument(
        "--peering",
        default="lag-autoscaler",
        help="KopfPeering (namespaced) or ClusterKopfPeering (-A) name for leader election",
    )
    peering.add_argument("--standalone", action="store_true", help="no leader election")
    run.add_argument("--liveness", default=None, help="e.g. http://0.0.0.0:8080/healthz")
    # kopf pauses every operator that sees a live peer of the same or a higher priority, so
    # replicas of one Deployment need distinct priorities: a random one unless given.
    run.add_argument(
        "--priority",
        type=int,
        default=None,
        help="peering priority; the highest live one works (default: random)",
    )
    rel = sub.add_parser(
        "release",
        help="delete every ConsumerLagAutoscaler in the namespace, taking kopf's finalizer off",
    )
    rel.add_argument("-n", "--namespace", required=True)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    settings = Settings()
    configure_logging("lag-autoscaler", settings.log_level)
    if args.command == "release":
        release(client.CustomObjectsApi(api_client()), args.namespace)
        return
    metrics.configure_metrics("lag-autoscaler")
    if settings.autoscaler_metrics_port:
        start_http_server(settings.autoscaler_metrics_port, registry=metrics.REGISTRY)
    kopf.run(
        registry=registry,
        memo=operator_memo(build_adapters(settings, KafkaSettings())),
        clusterwide=args.all_namespaces,
        namespaces=args.namespace,
        standalone=args.standalone,
        peering_name=None if args.standalone else args.peering,
        priority=args.priority if args.priority is not None else random.randrange(1, 2**31),
        liveness_endpoint=args.liveness,
    )


if __name__ == "__main__":
    main()
