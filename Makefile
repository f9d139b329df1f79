# dtebridge: `make demo` runs the bridge on local defaults, `make test` runs
# every test. Both start their own PostgreSQL and Temporal.

GO               ?= go
BIN              := $(CURDIR)/bin
TEMPORAL_VERSION := v1.5.1
VERSION          ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS          := -X github.com/synapsedte/dtebridge/internal/cli.version=$(VERSION)
DEMO_ARGS        ?=
TEST_ARGS        ?=
BENCH_ARGS       ?=

# Tests and the demo find the pinned Temporal CLI here.
export DTEBRIDGE_TEMPORAL_CLI := $(BIN)/temporal

.DEFAULT_GOAL := help

.PHONY: help build test demo bench lint clean FORCE

help: ## show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-zA-Z_-]*:.*## / {printf "  make %-8s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: $(BIN)/dtebridge $(BIN)/temporal ## build dtebridge and install the pinned Temporal CLI into ./bin

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

test: build ## run all tests against local PostgreSQL and Temporal that the tests start
	$(GO) test -count=1 -timeout 80m $(TEST_ARGS) ./...

demo: build ## run the whole bridge on local defaults (DEMO_ARGS="--keep-running" to stay up)
	$(BIN)/dtebridge demo $(DEMO_ARGS)

bench: build ## run the benchmarks and print one table of figures against same-run baselines
	$(GO) run ./cmd/dtebench $(BENCH_ARGS)

lint: ## check formatting (gofmt) and run go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

clean: ## remove build output (keeps the Temporal CLI)
	rm -f $(BIN)/dtebridge
