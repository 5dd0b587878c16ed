# ferry: move container images across an air gap without changing a digest.
GO        ?= go
BIN       ?= bin/ferry
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X github.com/ferry-dev/ferry/pkg/cli.Version=$(VERSION)
STATICCHECK_VERSION ?= v0.8.2
GORELEASER_VERSION  ?= v2.12.7
FUZZTIME  ?= 10s

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## build bin/ferry
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/ferry

# The race detector needs cgo and a C compiler; without them the tests run
# without it, and make test says so.
RACE      ?= $(shell test "$$($(GO) env CGO_ENABLED)" = 1 && command -v "$$($(GO) env CC)" >/dev/null 2>&1 && echo -race)
UNIT_PKGS ?= ./...
# Tests on real registries whose code under test runs in the test process
# (testutil's fault proxy, pkg/source's fetches): with -race.
REG_PKGS  ?= ./pkg/internal/testutil ./pkg/source
# End-to-end packages: they run the ferry binary (not race-built) against
# registries and spend their time in those processes, so make test runs
# them without -race (their unit tests ran with it, under -short). The
# longest comes last, so that the others' lines print as they finish.
E2E_PKGS  ?= ./cmd/ferry ./pkg/bundle ./pkg/transfer ./pkg/internal/e2e
# Tests behind a real kube-apiserver (TestCluster*): make test-cluster runs
# them, make test skips them (their binaries take ~20 minutes to build).
CLUSTER_PKGS ?= ./pkg/internal/e2e
CLUSTER_RUN  := ^TestCluster
# Every package appends its line of prerequisites skipped here.
SKIPLOG   := $(CURDIR)/bin/test-skips.log

.PHONY: test-tools
test-tools: ## build the test registry (distribution v3) once into the user cache; the first build needs the Go module proxy
	@echo "== test tools (built once into the user cache; the first build needs the Go module proxy)"
	@$(GO) run ./pkg/internal/testutil/testtools

.PHONY: test
test: test-tools ## unit tests (-race) then end-to-end tests on real registries
	@mkdir -p bin && : > $(SKIPLOG)
	@rc=0; \
	echo "== unit tests: go test $(or $(RACE),(no -race: it needs cgo and a C compiler)) -short $(UNIT_PKGS)"; \
	FERRY_TEST_SKIPLOG=$(SKIPLOG) $(GO) test $(RACE) -short -count=1 -timeout 20m $(UNIT_PKGS) || rc=1; \
	echo "== tests on real registries: go test $(RACE) $(REG_PKGS)"; \
	FERRY_TEST_SKIPLOG=$(SKIPLOG) $(GO) test $(RACE) -count=1 -timeout 20m $(REG_PKGS) || rc=1; \
	echo "== end-to-end tests: go test (no -race) $(E2E_PKGS)"; \
	FERRY_TEST_SKIPLOG=$(SKIPLOG) $(GO) test -count=1 -timeout 20m -skip '$(CLUSTER_RUN)' $(E2E_PKGS) || rc=1; \
	echo "== prerequisites"; \
	if [ -s $(SKIPLOG) ]; then \
	  sort -u $(SKIPLOG) | awk '{p=$$3; sub(/^SKIPPED in [^ ]* /, ""); if (p in a) a[p] = a[p] "; " $$0; else a[p] = $$0} END {for (p in a) print "SKIPPED in " p " " a[p]}' | sort; \
	else echo "nothing skipped for want of a prerequisite"; fi; \
	exit $$rc

.PHONY: test-cluster
test-cluster: ## the webhook behind a real kube-apiserver, judged by kubectl (builds kube-apiserver, kubectl, etcd once into the user cache: ~20 min the first time)
	@echo "== cluster binaries: kube-apiserver, kubectl, etcd (built once into the user cache; the first build takes about 20 minutes on 2 cores)"
	@$(GO) run ./pkg/internal/testutil/testtools -cluster
	@echo "== cluster tests: go test -run '$(CLUSTER_RUN)' $(CLUSTER_PKGS)"
	@$(GO) test -count=1 -timeout 20m -run '$(CLUSTER_RUN)' $(CLUSTER_PKGS)

.PHONY: test-unit
test-unit: ## the quick loop: unit tests only (-short skips the end-to-end tests)
	$(GO) test $(RACE) -short -count=1 ./...

.PHONY: conformance
conformance: ## the OCI distribution-spec conformance suite against ferry serve (needs docker-registry and skopeo)
	$(GO) test -count=1 -run 'TestServe/conformance' -v ./pkg/internal/e2e/

.PHONY: fuzz
fuzz: ## a short run of every fuzz target (FUZZTIME=10s each; longer runs: docs/reliability.md)
	@for dir in $$(grep -rl --include='*_test.go' '^func Fuzz' pkg | xargs -n1 dirname | sort -u); do \
	  for f in $$(grep -h '^func Fuzz' $$dir/*_test.go | sed 's/^func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
	    echo "fuzz ./$$dir $$f"; \
	    GO=$(GO) testdata/fuzzrun $$dir $$f $(FUZZTIME) || exit 1; \
	  done; \
	done

.PHONY: mutants
mutants: ## break each promise of docs/reliability.md once (testdata/mutants/*.patch) and expect red; MUTANT=word picks some
	testdata/mutants/run $(MUTANT)

.PHONY: lint
lint: ## gofmt, go vet, staticcheck
	@test -z "$$(gofmt -l .)" || (gofmt -l . && echo "gofmt: run 'gofmt -w .'" && exit 1)
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

.PHONY: docs
docs: ## regenerate docs/cli from the commands
	$(GO) run ./cmd/ferry-docs docs/cli

.PHONY: demo
demo: ## the whole job end to end on local registries it starts itself (no network)
	$(GO) run ./cmd/ferry-demo

.PHONY: bench
bench: ## side-by-side benchmark against crane and skopeo (writes docs/performance.md)
	$(GO) run ./bench $(BENCHFLAGS)

.PHONY: snapshot
snapshot: ## a local release build with goreleaser
	$(GO) run github.com/goreleaser/goreleaser/v2@$(GORELEASER_VERSION) release --snapshot --clean

.PHONY: clean
clean: ## remove build outputs
	rm -rf bin dist
