# Every target sets itself up: `make test` and `make demo` work on a fresh machine.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
ENV := source infra/k8s/env.sh &&
UV := $(shell scripts/ensure-uv.sh)
ifeq ($(strip $(UV)),)
$(error no uv: scripts/ensure-uv.sh could not install it (see above))
endif
PYTEST_ARGS ?=
DEMO_ARGS ?=

.PHONY: help demo up down logs install infra-install infra-up infra-down infra-status topics test test-unit lint bench-consumer bench-consumers bench-api bench-stub bench-headline bench-kafka-outage bench-e2e chaos images images-test
.PHONY: chart-check chart-golden kind-up kind-down k8s-build k8s-up k8s-down
.PHONY: cluster-build cluster-up cluster-down cluster-test

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

demo: install infra-up ## the whole system, a ticketing rush, a summary (DEMO_ARGS="--keep", DEMO_DB=postgres)
	$(ENV) $(UV) run python scripts/demo.py $(DEMO_ARGS)

up: install infra-up ## start payment-api, the consumers and the data platform stand-in (.demo/*.log)
	$(ENV) $(UV) run python -m ticketing_dev.stack up

down: ## stop what `make up` (or `make demo DEMO_ARGS=--keep`) started
	$(ENV) $(UV) run python -m ticketing_dev.stack down

logs: ## follow the logs of the running stack
	$(ENV) $(UV) run python -m ticketing_dev.stack logs

install: infra-install ## install everything: Debian packages, Kafka jars, Jaeger, Prometheus, Python deps
	$(UV) sync --all-packages --locked

infra-install:
	bash infra/install.sh

infra-up: infra-install ## start Kafka, Redis, PostgreSQL and Jaeger on loopback
	bash infra/infra.sh up

infra-down: ## stop the local infrastructure (data kept; `bash infra/infra.sh purge` drops it)
	bash infra/infra.sh down

infra-status: ## show each component's health, address, pid and log
	bash infra/infra.sh status

topics: ## create every topic, dead-letter and redrive topic of the registry
	$(ENV) $(UV) run ticketing-topics

.PHONY: new-consumer
new-consumer: install ## a new post-payment step: NAME=audit-consumer EVENTS=payment.success[,payment.failed] (scripts/new_consumer.py)
	@[[ -n "$(NAME)" && -n "$(EVENTS)" ]] || { echo "usage: make new-consumer NAME=<service> EVENTS=<topic>[,<topic>]" >&2; exit 2; }
	UV=$(UV) $(UV) run python scripts/new_consumer.py "$(NAME)" "$(EVENTS)"

.PHONY: asyncapi
asyncapi: ## docs/asyncapi.yaml from the topic registry and event models, checked by @asyncapi/parser
	$(UV) run python -m ticketing_events.asyncapi docs/asyncapi.yaml
	bash scripts/asyncapi-validate.sh docs/asyncapi.yaml

test: install infra-up k8s-up chart-check ## run the whole test suite against the real infrastructure and control plane
	$(ENV) $(UV) run pytest $(PYTEST_ARGS)

test-unit: ## tests that need no infrastructure
	$(UV) run pytest -m "not kafka and not redis and not postgres and not jaeger and not prometheus and not k8s" $(PYTEST_ARGS)

lint: ## ruff and mypy (strict on libs/events)
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run mypy libs/events/src

bench-consumer: install infra-up ## consumer runtime throughput against a bare loop and FastStream
	$(ENV) $(UV) run python bench/consumer_bench.py

bench-consumers: install infra-up ## each post-payment service's events/s on a backlog, one instance each
	$(ENV) $(UV) run python bench/consumers_bench.py $(BENCH_ARGS)

bench-api: install infra-up ## payment-api rush: open-loop payments/s, latency percentiles, outbox delay
	$(ENV) $(UV) run python bench/api_bench.py

bench-stub: install ## the stand-in data platform: requests/s and the concurrency it reaches at 50 ms
	$(ENV) $(UV) run python bench/stub_bench.py $(BENCH_ARGS)

bench-headline: install infra-up ## events vs sync post-processing: payment p99 at 50/s and 300/s, a consumer outage (BENCH_ARGS)
	$(ENV) $(UV) run python bench/headline_bench.py $(BENCH_ARGS)

bench-kafka-outage: install infra-up ## Kafka down for 30 s mid-payments: p99 before/during/after, then lost/doubled/out-of-order counts (BENCH_ARGS, e.g. --brokers 3)
	$(ENV) $(UV) run python bench/kafka_outage_bench.py $(BENCH_ARGS)

bench-e2e: install infra-up ## payment commit to each effect (ranking, stand-in, hold) p50/p95/p99 per rate step, and the highest rate with p99 <= 250 ms (BENCH_ARGS)
	$(ENV) $(UV) run python bench/e2e_bench.py $(BENCH_ARGS)

chaos: install infra-up ## many faults at once during a rush, then an exact account: bench/results/chaos.json + .png (CHAOS_ARGS)
	$(ENV) $(UV) run python bench/chaos.py $(CHAOS_ARGS)

images: ## build every service and operator image with docker or podman (CONTAINER_TOOL), sizes
	bash images/build.sh

images-test: install infra-up images ## run each image against the local infrastructure
	bash images/test.sh $(PYTEST_ARGS)

chart-check: ## Helm chart: lint, render each profile and its NOTES, diff against examples/, validate offline
	bash charts/check.sh

chart-golden: ## rewrite the chart's golden manifests (charts/ticketing/examples/) from the renders
	bash charts/check.sh --golden

k8s-build: ## build etcd, kube-apiserver, controller-manager, scheduler and kwok from the Go proxy (cached)
	bash infra/k8s/build.sh

k8s-up: k8s-build ## a real control plane on loopback for tests (kubeconfig: .infra/k8s/kubeconfig)
	bash infra/k8s/k8s.sh up

k8s-down: ## stop the control plane of `make k8s-up` (`bash infra/k8s/k8s.sh purge` drops its data)
	bash infra/k8s/k8s.sh down

kind-up: images ## kind cluster, the whole system and its load (PROFILE=kind|kind-keda|kind-operator, K8S=minikube); cannot run here
	bash charts/kind.sh up

kind-down: ## delete the kind (or minikube) cluster of `make kind-up`
	bash charts/kind.sh down

cluster-build: k8s-build ## build kubelet, kube-proxy, kubectl, CoreDNS and the pause image for the real node (cached)
	bash infra/node/build.sh

cluster-up: cluster-build ## a real single-node Kubernetes here: control plane + containerd, kubelet, kube-proxy, CoreDNS (kubeconfig: .infra/node/kubeconfig)
	bash infra/node/node.sh up

cluster-test: install images cluster-up ## the kind profiles' releases on the node of `make cluster-up`: Pods, effects, traces, scaling, upgrade, uninstall
	bash infra/node/build.sh infra-images
	$(ENV) $(UV) run pytest infra/node/tests -m k8s -s $(PYTEST_ARGS)

cluster-down: ## stop the node of `make cluster-up` and remove its Pods, mounts, cgroups, bridge, nft tables and route
	bash infra/node/node.sh down
