# vault-plugin-secrets-manus
#
# `make dev` runs the plugin in a dev Vault against a local Manus stand-in;
# `make test` runs every test suite. `make help` lists all targets.

PLUGIN_NAME    := vault-plugin-secrets-manus
VERSION        := $(shell tr -d '[:space:]' < VERSION)
PLUGIN_VERSION := v$(VERSION)
GO             ?= go
DIST           := dist
PLATFORMS      := linux/amd64 linux/arm64 darwin/amd64 darwin/arm64
# Tools are built from the Go module proxy into a cache outside the clone,
# pinned, so every machine lints with the same version.
TOOLS_DIR      ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/vault-plugin-secrets-manus/tools
GOLANGCI_LINT_VERSION := v2.15.0
GOLANGCI_LINT  := $(TOOLS_DIR)/golangci-lint-$(GOLANGCI_LINT_VERSION)/golangci-lint
CYCLONEDX_GOMOD_VERSION := v1.10.0
CYCLONEDX_GOMOD := $(TOOLS_DIR)/cyclonedx-gomod-$(CYCLONEDX_GOMOD_VERSION)/cyclonedx-gomod
SOAK_DURATION  ?= 60s
FUZZTIME       ?= 60s
SIM_TIME       ?= 10m
BENCH_COUNT    ?= 6
# The Vault versions `make test-compat` proves, oldest first; the
# compatibility table in docs/upgrading.md records the last run of each.
VAULT_VERSIONS ?= 1.16.3 1.19.0 1.21.0

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build the plugin into bin/ with the version stamped
	GO=$(GO) scripts/build-plugin.sh bin/$(PLUGIN_NAME) $(PLUGIN_VERSION)
	@echo "bin/$(PLUGIN_NAME) $(PLUGIN_VERSION) sha256 $$(sha256sum bin/$(PLUGIN_NAME) | cut -d' ' -f1)"

.PHONY: dev
dev: ## Run a dev Vault with the plugin mounted at manus/, against a local Manus stand-in
	scripts/dev.sh

.PHONY: test
test: fmtcheck vet lint tidycheck test-unit test-rules release-check test-e2e ## Run every check and test suite (what CI runs)

.PHONY: racecheck
racecheck:
	@[ "$$($(GO) env CGO_ENABLED)" = 1 ] || { \
		echo "make test runs the race detector, which needs cgo and a C compiler: install gcc (apt-get install gcc) and retry" >&2; exit 1; }

.PHONY: test-unit
test-unit: racecheck ## Unit tests with the race detector, and every benchmark run once
	$(GO) test -race -count=1 ./...
	$(GO) test -run '^$$' -bench . -benchtime=1x -count=1 .

.PHONY: test-e2e
test-e2e: racecheck ## End-to-end tests in a real Vault server, CLI, Agent and Prometheus (finds or builds them)
	VAULT_BIN="$$(scripts/ensure-vault.sh)" && export VAULT_BIN && \
		PROMETHEUS_BIN="$$(scripts/ensure-prometheus.sh)" && export PROMETHEUS_BIN && \
		$(GO) test -race -tags e2e -count=1 -timeout 30m ./e2e/

.PHONY: test-rules
test-rules: ## promtool check and unit tests of the example alert rules in docs/prometheus (finds or builds Prometheus)
	PROMETHEUS_BIN="$$(scripts/ensure-prometheus.sh)" && PROMTOOL="$$(dirname "$$PROMETHEUS_BIN")/promtool" && \
		"$$PROMTOOL" check rules docs/prometheus/alerts.yml && \
		"$$PROMTOOL" test rules docs/prometheus/alerts_test.yml

.PHONY: test-compat
test-compat: racecheck ## End-to-end suite against every Vault in VAULT_VERSIONS (builds each once; for releases)
	scripts/test-compat.sh $(VAULT_VERSIONS)

.PHONY: test-openbao
test-openbao: racecheck ## OpenBao cluster tests and the end-to-end checks that apply to OpenBao (server from BAO_BIN, >= 2.5)
	scripts/test-openbao.sh

.PHONY: test-containerized
test-containerized: racecheck release ## The release image in Docker: a Vault containerized plugin under gVisor runsc, the Helm init container, OpenBao's pull (root; installs docker.io, runsc, iptables, skopeo; not in make test)
	scripts/test-containerized.sh

.PHONY: bench
bench: ## Go benchmarks: read cost and upstream economy (figures in BENCHMARKS.md)
	$(GO) test -run '^$$' -bench . -benchmem -count=$(BENCH_COUNT) .

.PHONY: bench-vault
bench-vault: ## Load test through a real Vault on Raft storage: leased and non-leased token reads vs KV v2 and manus/config
	scripts/bench-vault.sh

.PHONY: bench-openbao
bench-openbao: ## Load test through a 3-node OpenBao Raft cluster (BAO_BIN): token reads sent to a standby vs the active node
	scripts/bench-openbao.sh

.PHONY: soak
soak: ## The end-to-end chaos run for a full minute (SOAK_DURATION overrides)
	VAULT_BIN="$$(scripts/ensure-vault.sh)" && export VAULT_BIN && \
		E2E_CHAOS_DURATION=$(SOAK_DURATION) $(GO) test -tags e2e -count=1 -v -timeout 30m -run 'TestChaos$$' ./e2e/

.PHONY: simulate
simulate: ## The cluster simulation for SIM_TIME (10m): steps/s and coverage; SIM_SEED replays one history, SIM_FROM sets the first seed, SIM_FLAGS=-race
	SIM_TIME=$(SIM_TIME) SIM_SEED=$(SIM_SEED) SIM_FROM=$(SIM_FROM) $(GO) test $(SIM_FLAGS) -run '^TestSimulation$$' -count=1 -v -timeout 0 .

.PHONY: fuzz
fuzz: ## Fuzz the token-response parser and config writes (FUZZTIME each)
	$(GO) test -run '^$$' -fuzz '^FuzzTokenResponse$$' -fuzztime $(FUZZTIME) .
	$(GO) test -run '^$$' -fuzz '^FuzzConfigWrite$$' -fuzztime $(FUZZTIME) .

.PHONY: vet
vet: ## go vet, including the end-to-end suite and its OpenBao tests
	$(GO) vet ./...
	$(GO) vet -tags e2e ./e2e/
	$(GO) vet -tags e2e,openbao ./e2e/
	$(GO) vet -tags 'e2e containerized' ./e2e/

.PHONY: lint
lint: $(GOLANGCI_LINT) ## golangci-lint with the committed .golangci.yml (pinned version)
	$(GOLANGCI_LINT) run ./...

$(GOLANGCI_LINT):
	@echo "installing golangci-lint $(GOLANGCI_LINT_VERSION) from the Go module proxy into $(dir $@)"
	GOBIN="$(dir $@)" $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)

.PHONY: tidycheck
tidycheck: ## Fail if go.mod or go.sum is not tidy
	$(GO) mod tidy -diff

# The SBOM of each binary comes from the module list in its build
# information, so it names exactly what that binary links on its platform;
# licenses are detected in the module sources (the tool runs `go mod
# download`, which finds them in the module cache the build filled, and asks
# the proxy in vain for the main module, unpublished under its placeholder
# path). Its warnings are shown only if it fails: releasetool then reports
# any module without a license. The notes name the commit, or "unknown"
# outside git.
COMMIT = $(shell git rev-parse HEAD 2>/dev/null || echo unknown)$(shell git status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo ' (with uncommitted changes)')

# The container image: the Linux binaries, each alone in its platform's
# image, in one OCI layout archive (internal/ociimage). Its labels name the
# commit (-dirty with uncommitted changes) and its timestamps are the
# commit's time, or SOURCE_DATE_EPOCH if set, so rebuilding a commit gives
# the same archive. scripts/check-release.sh derives the same values.
IMAGE             = $(DIST)/$(PLUGIN_NAME)_$(VERSION)_oci-image.tar
IMAGE_PLATFORMS   = $(filter linux/%,$(PLATFORMS))
REVISION          = $(shell git rev-parse HEAD 2>/dev/null || echo unknown)$(shell git status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo -dirty)
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
MODULE            = $(shell GOWORK=off $(GO) list -m)

.PHONY: release
release: $(CYCLONEDX_GOMOD) ## Static binaries for linux and darwin (amd64, arm64), their SBOMs, the linux image archive, licenses, notes and SHA256SUMS in dist/
	rm -rf $(DIST) && mkdir -p $(DIST)
	@set -e; for platform in $(PLATFORMS); do \
		os=$${platform%/*}; arch=$${platform#*/}; \
		out=$(DIST)/$(PLUGIN_NAME)_$(VERSION)_$${os}_$${arch}; \
		echo "building $$out"; \
		GO=$(GO) GOOS=$$os GOARCH=$$arch scripts/build-plugin.sh --release $$out $(PLUGIN_VERSION); \
		echo "writing $$out.sbom.json with cyclonedx-gomod $(CYCLONEDX_GOMOD_VERSION)"; \
		log=$$(GOOS=$$os GOARCH=$$arch $(CYCLONEDX_GOMOD) bin -json -licenses \
			-version $(PLUGIN_VERSION) -output $$out.sbom.json $$out 2>&1) || { echo "$$log" >&2; exit 1; }; \
	done
	$(GO) run ./internal/releasetool licenses -o $(DIST)/THIRD_PARTY_LICENSES.md $(DIST)/*.sbom.json
	@echo "writing $(IMAGE) ($(IMAGE_PLATFORMS))"
	$(GO) run ./internal/releasetool image -o $(IMAGE) -name $(PLUGIN_NAME) -version $(PLUGIN_VERSION) \
		-revision "$(REVISION)" -source "https://$(MODULE)" -created "$(SOURCE_DATE_EPOCH)" \
		$(foreach p,$(IMAGE_PLATFORMS),$(p)=$(DIST)/$(PLUGIN_NAME)_$(VERSION)_$(subst /,_,$(p)))
	cd $(DIST) && sha256sum $(PLUGIN_NAME)_* THIRD_PARTY_LICENSES.md > SHA256SUMS
	$(GO) run ./internal/releasetool notes -version $(VERSION) -changelog CHANGELOG.md \
		-sums $(DIST)/SHA256SUMS -goversion "$$($(GO) env GOVERSION)" -commit "$(COMMIT)" \
		-image $(IMAGE) -o $(DIST)/RELEASE_NOTES.md
	@cat $(DIST)/SHA256SUMS

$(CYCLONEDX_GOMOD):
	@echo "installing cyclonedx-gomod $(CYCLONEDX_GOMOD_VERSION) from the Go module proxy into $(dir $@)"
	GOBIN="$(dir $@)" $(GO) install github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod@$(CYCLONEDX_GOMOD_VERSION)

.PHONY: release-check
release-check: release ## Build the release and check names, checksums, version stamps, SBOMs, image, licenses and notes
	SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) scripts/check-release.sh $(DIST) $(PLUGIN_NAME) $(VERSION) "$(PLATFORMS)"

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

.PHONY: prometheus
prometheus: ## Find or build the Prometheus server and promtool the tests use and print the server's path
	@scripts/ensure-prometheus.sh

.PHONY: clean
clean: ## Remove build output
	rm -rf bin .dev $(DIST)
