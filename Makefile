# vault-plugin-secrets-manus
#
# `make dev` runs the plugin in a dev Vault against a local Manus stand-in;
# `make test` runs every test suite. `make help` lists all targets.

PLUGIN_NAME    := vault-plugin-secrets-manus
MODULE         := github.com/manus-community/vault-plugin-secrets-manus
VERSION        := $(shell tr -d '[:space:]' < VERSION)
PLUGIN_VERSION := v$(VERSION)
LDFLAGS        := -X $(MODULE).Version=$(PLUGIN_VERSION)
GO             ?= go
SOAK_DURATION  ?= 60s
FUZZTIME       ?= 60s
BENCH_COUNT    ?= 6

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build the plugin into bin/ with the version stamped
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/$(PLUGIN_NAME) ./cmd/$(PLUGIN_NAME)
	@echo "bin/$(PLUGIN_NAME) $(PLUGIN_VERSION) sha256 $$(sha256sum bin/$(PLUGIN_NAME) | cut -d' ' -f1)"

.PHONY: dev
dev: ## Run a dev Vault with the plugin mounted at manus/, against a local Manus stand-in
	scripts/dev.sh

.PHONY: test
test: fmtcheck vet test-unit test-e2e ## Run every check and test suite (what CI runs)

.PHONY: test-unit
test-unit: ## Unit tests with the race detector, and every benchmark run once
	$(GO) test -race -count=1 ./...
	$(GO) test -run '^$$' -bench . -benchtime=1x -count=1 .

.PHONY: test-e2e
test-e2e: ## End-to-end tests in a real Vault server, CLI and Agent (finds or builds Vault)
	VAULT_BIN="$$(scripts/ensure-vault.sh)" && export VAULT_BIN && \
		$(GO) test -race -tags e2e -count=1 -timeout 30m ./e2e/

.PHONY: bench
bench: ## Go benchmarks: read cost and upstream economy (figures in BENCHMARKS.md)
	$(GO) test -run '^$$' -bench . -benchmem -count=$(BENCH_COUNT) .

.PHONY: bench-vault
bench-vault: ## Load test through a real Vault: manus/token vs KV v2 and manus/config
	scripts/bench-vault.sh

.PHONY: soak
soak: ## The end-to-end chaos run for a full minute (SOAK_DURATION overrides)
	VAULT_BIN="$$(scripts/ensure-vault.sh)" && export VAULT_BIN && \
		E2E_CHAOS_DURATION=$(SOAK_DURATION) $(GO) test -tags e2e -count=1 -v -timeout 30m -run 'TestChaos$$' ./e2e/

.PHONY: fuzz
fuzz: ## Fuzz the token-response parser and config writes (FUZZTIME each)
	$(GO) test -run '^$$' -fuzz '^FuzzTokenResponse$$' -fuzztime $(FUZZTIME) .
	$(GO) test -run '^$$' -fuzz '^FuzzConfigWrite$$' -fuzztime $(FUZZTIME) .

.PHONY: vet
vet: ## go vet, including the end-to-end suite
	$(GO) vet ./...
	$(GO) vet -tags e2e ./e2e/

.PHONY: fmtcheck
fmtcheck: ## Fail if any Go file needs gofmt
	@files="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	if [ -n "$$files" ]; then echo "gofmt needed:"; echo "$$files"; exit 1; fi

.PHONY: fmt
fmt: ## Format the Go sources
	gofmt -w $$(git ls-files '*.go')

.PHONY: vault
vault: ## Find or build the Vault binary the tests use and print its path
	@scripts/ensure-vault.sh

.PHONY: clean
clean: ## Remove build output
	rm -rf bin .dev
