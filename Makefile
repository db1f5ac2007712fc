# signalstage: the two commands are `make run` and `make test`; everything else is a step of theirs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

GO        ?= go
BIN       ?= bin
SERVICES  := testenv/services.sh
# Packages whose code runs goroutines concurrently: tested with the race detector.
RACE_PKGS := ./ingest/... ./processor/... ./sink/...
FUZZTIME  ?= 10s
# The cluster suites: tests named TestCluster* in any package, selected by SIGNALSTAGE_CLUSTER=1 (without it they
# skip, so `make test` leaves them out). One package at a time: they take shared cluster nodes down.
CLUSTER_RUN  ?= ^TestCluster
CLUSTER_PKGS ?= ./...

.PHONY: help build test test-unit test-integration test-cluster test-registry fuzz chdb-check deploy-check run up down status \
	up-cluster down-cluster bench bench-pipeline lint clean clients chaos

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

build: ## build the three binaries into ./bin
	$(GO) build -o $(BIN)/ ./ingest/cmd/ingest ./processor/cmd/processor ./sink/cmd/sink

up: ## start the local Kafka broker and ClickHouse server (idempotent; installs them when missing)
	bash $(SERVICES) up

down: ## stop the services `make up` started (caches are kept)
	bash $(SERVICES) down

status: ## show the services, their addresses and log files
	bash $(SERVICES) status

up-cluster: ## start the local Kafka cluster (3 controllers, 3 brokers) and ClickHouse cluster (ZooKeeper, 2 shards x 2 replicas)
	bash $(SERVICES) up clusters

down-cluster: ## stop both clusters (their data is kept)
	bash $(SERVICES) down clusters

# make test-cluster: the single services too (cluster suites compare with single-node answers), then both clusters.
test-cluster: up up-cluster ## the cluster suites (TestCluster*; CLUSTER_RUN, CLUSTER_PKGS narrow them) against both clusters
	@eval "$$(bash $(SERVICES) env)" && export SIGNALSTAGE_CLUSTER=1 && \
	$(GO) test -count=1 -p 1 -timeout 30m -v -run '$(CLUSTER_RUN)' $(CLUSTER_PKGS) 2>&1 | \
		grep -vE '^(=== (RUN|PAUSE|CONT|NAME) |(ok|\?) .*\[no test(s to run| files)\]$$|testing: warning: no tests to run|PASS$$)'; \
	exit $${PIPESTATUS[0]}

# make test-registry: the Schema Registry suites (tests named TestRegistry*, selected by SIGNALSTAGE_REGISTRY=1;
# without it they skip) against the real registry, which services.sh builds from Maven Central jars on first use:
# minutes on a clean machine, hence not part of `make test`.
REGISTRY_PKGS ?= ./schemas/ ./sink/console/ ./testenv/
test-registry: up ## the Schema Registry suites (TestRegistry*) against a real registry (built on first use, minutes)
	bash $(SERVICES) up registry
	@eval "$$(bash $(SERVICES) env)" && export SIGNALSTAGE_REGISTRY=1 && \
	$(GO) test -count=1 -timeout 20m -run '^TestRegistry' $(REGISTRY_PKGS)

# make test: starts the real services itself, exports their addresses, then runs every test against them.
test: up clients lint chdb-check deploy-check ## unit and integration tests against the real Kafka and ClickHouse (starts them)
	@eval "$$(bash $(SERVICES) env)" && set -o pipefail && \
	echo "== services under test" && \
	$(GO) test -count=1 -v -run 'TestServicesAreReal' ./testenv/ 2>&1 | grep -E 'services_test|^(ok|FAIL|---)' && \
	echo "== unit and integration tests (race detector on the concurrent packages)" && \
	$(GO) test -count=1 -timeout 20m ./schemas/... ./testenv/... && \
	$(GO) test -count=1 -race -timeout 20m $(RACE_PKGS)
	@$(MAKE) --no-print-directory fuzz

# make chaos: only the chaos test (make test runs it too, with the rest of ./testenv/). It starts a private broker
# and a private ClickHouse server of its own; `up` installs what they are started from.
chaos: up ## the whole pipeline under load while each stage, the broker and ClickHouse are killed or stopped; then exactly once (TestChaos*)
	@eval "$$(bash $(SERVICES) env)" && $(GO) test -count=1 -v -timeout 10m -run '^TestChaos' ./testenv/

# The event contract's targets: the splitter against encoding/json, the canonicalizer against go-json-experiment,
# the legacy id against the old processor's code, the URL shortcut against net/url, and whatever the edge accepts
# going through the processor (FuzzEdgeToProcessor).
FUZZ_TARGETS := ./schemas/:FuzzDecode ./schemas/contract/:FuzzSplitBody ./schemas/contract/:FuzzCanonical \
	./schemas/contract/:FuzzLegacySignalID ./schemas/contract/:FuzzSimplePath ./processor/:FuzzEdgeToProcessor

clients: ## install Segment's client libraries (npm, PyPI) under .cache/clients and Debian's chromium (idempotent)
	bash testenv/clients/install.sh

fuzz: ## run the fuzz targets for a short budget (FUZZTIME, default 10s each)
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "== $${t#*:} ($${t%%:*})"; \
		$(GO) test -run='^$$' -fuzz="^$${t#*:}\$$" -fuzztime=$(FUZZTIME) "$${t%%:*}"; done

chdb-check: ## apply every migration and run every analyst query on the current ClickHouse engine (chdb)
	@if [ -f sink/chdbcheck/run.sh ]; then bash sink/chdbcheck/run.sh; else echo "chdb-check: sink/chdbcheck/run.sh missing" >&2; exit 1; fi

deploy-check: ## validate deploy/ offline: compose schema, k8s schemas, CRDs, promtool rules and tests, build context (installs the validators once)
	bash deploy/check/install.sh
	bash deploy/check/run.sh

run: ## start the services and the three stages; prints where to send events (Ctrl-C stops the stages)
	bash testenv/run.sh

bench: ## benchmarks (numbers go to BENCHMARKS.md)
	$(GO) test -run='^$$' -bench=. -benchmem ./...

# The whole pipeline under load: testenv's BenchmarkPipeline (private broker and server, the binaries built from this
# tree, testenv/cmd/loadgen's segment mix). EVENTS per run, RUNS on one state directory; BENCH_ARGS passes more
# -pipeline.* flags (go test -run '^$$' -bench Pipeline ./testenv/ -args -h lists them).
EVENTS ?= 1000000
RUNS   ?= 2
bench-pipeline: up ## the whole pipeline under the load generator: end-to-end events/s, CPU µs/event of every process, RSS (EVENTS, RUNS, BENCH_ARGS)
	SIGNALSTAGE_BENCH_PIPELINE=1 $(GO) test -count=1 -run '^$$' -bench '^BenchmarkPipeline$$' -benchtime 1x -timeout 60m \
		./testenv/ -args -pipeline.events=$(EVENTS) -pipeline.runs=$(RUNS) $(BENCH_ARGS)

lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

clean: ## remove build output (not the service caches: `make down` and rm -rf .cache for that)
	rm -rf $(BIN)
