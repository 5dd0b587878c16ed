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

.PHONY: test
test: ## unit and end-to-end tests with the race detector (needs docker-registry and skopeo)
	$(GO) test -race -count=1 -timeout 30m ./...
	$(MAKE) fuzz FUZZTIME=5s

.PHONY: test-unit
test-unit: ## unit tests only (-short skips the end-to-end tests)
	$(GO) test -race -short -count=1 ./...

.PHONY: conformance
conformance: ## the OCI distribution-spec conformance suite against ferry serve (needs docker-registry and skopeo)
	$(GO) test -count=1 -run 'TestServe/conformance' -v ./pkg/internal/e2e/

.PHONY: fuzz
fuzz: ## a short run of every fuzz target (FUZZTIME=10s each; longer runs: docs/reliability.md)
	@for dir in $$(grep -rl --include='*_test.go' '^func Fuzz' pkg | xargs -n1 dirname | sort -u); do \
	  for f in $$(grep -h '^func Fuzz' $$dir/*_test.go | sed 's/^func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
	    echo "fuzz ./$$dir $$f"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) ./$$dir || exit 1; \
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
