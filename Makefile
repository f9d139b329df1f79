# dtebridge: `make demo` runs the bridge on local defaults, `make test` runs
# every test. Both start their own PostgreSQL and Temporal.

GO               ?= go
BIN              := $(CURDIR)/bin
TEMPORAL_VERSION := v1.5.1
# The Temporal server and its SQL schema tool, for the production topology
# (PostgreSQL persistence, one process per service) that the suite runs.
TEMPORAL_SERVER_VERSION := v1.29.1
# Prometheus 3.16 (module versions v0.3xx.y track releases 3.xx.y); it builds
# with the project's Go. The tests and demo --with-prometheus use it.
PROMETHEUS_VERSION := v0.316.0
VERSION          ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS          := -X github.com/synapsedte/dtebridge/internal/cli.version=$(VERSION)
DEMO_ARGS        ?=
TEST_ARGS        ?=
BENCH_ARGS       ?=

# Tests and the demo find the pinned tools here.
export DTEBRIDGE_TEMPORAL_CLI := $(BIN)/temporal
export DTEBRIDGE_TEMPORAL_SERVER := $(BIN)/temporal-server
export DTEBRIDGE_TEMPORAL_SQL_TOOL := $(BIN)/temporal-sql-tool
export PROMETHEUS_BIN := $(BIN)/prometheus
export PROMTOOL_BIN := $(BIN)/promtool

.DEFAULT_GOAL := help

.PHONY: help build tools chromium test demo bench lint clean FORCE

help: ## show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-zA-Z_-]*:.*## / {printf "  make %-8s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: $(BIN)/dtebridge $(BIN)/temporal ## build dtebridge and install the pinned Temporal CLI into ./bin

tools: $(BIN)/temporal $(BIN)/temporal-server $(BIN)/prometheus chromium ## install every tool the tests use: the pinned Temporal CLI, Temporal server and SQL tool, Prometheus and promtool into ./bin, and Debian's chromium when missing

$(BIN)/dtebridge: FORCE
	$(GO) build -ldflags "$(LDFLAGS)" -o $@ ./cmd/dtebridge

# The Temporal CLI is built from source once (a few minutes on 2 cores) and
# reused; the stamp file pins the version. go install runs outside the module
# so that our go.mod does not affect it.
$(BIN)/temporal: $(BIN)/.temporal-$(TEMPORAL_VERSION)
$(BIN)/.temporal-$(TEMPORAL_VERSION):
	@mkdir -p $(BIN)
	@echo "Installing Temporal CLI $(TEMPORAL_VERSION) into ./bin (first time only; takes a few minutes)"
	cd / && GOBIN=$(BIN) $(GO) install github.com/temporalio/cli/cmd/temporal@$(TEMPORAL_VERSION)
	@rm -f $(BIN)/.temporal-*
	@touch $@

# The Temporal server and temporal-sql-tool are built from the Go module
# proxy once (about two minutes on 2 cores), like the CLI. go install names
# them server and sql; they are renamed as Temporal's releases name them.
$(BIN)/temporal-server $(BIN)/temporal-sql-tool: $(BIN)/.temporal-server-$(TEMPORAL_SERVER_VERSION)
$(BIN)/.temporal-server-$(TEMPORAL_SERVER_VERSION):
	@mkdir -p $(BIN)/.temporal-server-build
	@echo "Installing Temporal server and temporal-sql-tool $(TEMPORAL_SERVER_VERSION) into ./bin (first time only; takes a few minutes)"
	cd / && GOBIN=$(BIN)/.temporal-server-build $(GO) install go.temporal.io/server/cmd/server@$(TEMPORAL_SERVER_VERSION) \
		go.temporal.io/server/cmd/tools/sql@$(TEMPORAL_SERVER_VERSION)
	mv $(BIN)/.temporal-server-build/server $(BIN)/temporal-server
	mv $(BIN)/.temporal-server-build/sql $(BIN)/temporal-sql-tool
	@rm -rf $(BIN)/.temporal-server-build $(BIN)/.temporal-server-v*
	@touch $@

# Prometheus and promtool are built from the Go module proxy once (several
# minutes on 2 cores) and reused, as the Temporal CLI is.
$(BIN)/prometheus $(BIN)/promtool: $(BIN)/.prometheus-$(PROMETHEUS_VERSION)
$(BIN)/.prometheus-$(PROMETHEUS_VERSION):
	@mkdir -p $(BIN)
	@echo "Installing Prometheus and promtool $(PROMETHEUS_VERSION) into ./bin (first time only; takes a few minutes)"
	cd / && GOBIN=$(BIN) $(GO) install github.com/prometheus/prometheus/cmd/prometheus@$(PROMETHEUS_VERSION) \
		github.com/prometheus/prometheus/cmd/promtool@$(PROMETHEUS_VERSION)
	@rm -f $(BIN)/.prometheus-*
	@touch $@

# The console's browser tests drive Debian's chromium (chromedp); it is
# installed from Debian's packages when missing, as root or with sudo.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "Installing Debian's chromium for the console's browser tests (first time only)"; \
		sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
		$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends chromium; }

test: build tools ## run all tests against local PostgreSQL, Temporal and Prometheus that the tests start
	$(GO) test -count=1 -timeout 80m $(TEST_ARGS) ./...

demo: build $(if $(findstring --with-prometheus,$(DEMO_ARGS)),$(BIN)/prometheus) ## run the whole bridge on local defaults (DEMO_ARGS="--keep-running" to stay up)
	$(BIN)/dtebridge demo $(DEMO_ARGS)

bench: build ## run the benchmarks and print one table of figures against same-run baselines
	$(GO) run ./cmd/dtebench $(BENCH_ARGS)

lint: ## check formatting (gofmt) and run go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

clean: ## remove build output (keeps the pinned tools)
	rm -f $(BIN)/dtebridge
