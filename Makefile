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
# The Go toolchain every target builds, tests, lints and releases with is
# pinned by go.mod's toolchain line, and exported: a machine that runs with
# GOTOOLCHAIN=local ignores that line and would use its own Go, whose
# standard library may have known vulnerabilities. The go command fetches
# the pinned toolchain from the Go module proxy once (about 10 s). The Vault
# and Prometheus servers the tests run are built with the machine's own Go
# (scripts/ensure-vault.sh says why). `make pincheck` checks all of it.
GO_TOOLCHAIN   := $(shell sed -n 's/^toolchain[[:space:]]*//p' go.mod)
export GOTOOLCHAIN := $(GO_TOOLCHAIN)
# Tools are built from the Go module proxy into a cache outside the clone,
# pinned, so every machine lints with the same version; each with the
# pinned toolchain, whose standard library those that read Go code load.
TOOLS_DIR      ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/vault-plugin-secrets-manus/tools
TOOLS_BIN      := $(TOOLS_DIR)/$(GO_TOOLCHAIN)
GOLANGCI_LINT_VERSION := v2.15.0
GOLANGCI_LINT  := $(TOOLS_BIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)/golangci-lint
CYCLONEDX_GOMOD_VERSION := v1.10.0
CYCLONEDX_GOMOD := $(TOOLS_BIN)/cyclonedx-gomod-$(CYCLONEDX_GOMOD_VERSION)/cyclonedx-gomod
# govulncheck and the Go vulnerability database it checks against, pinned
# here and nowhere else. The database is built offline from the
# golang.org/x/vulndb module at VULNDB_VERSION (scripts/ensure-vulndb.sh)
# into the tools cache; `make vulncheck VULN_DB=https://vuln.go.dev` checks
# against the live one where it can be reached. CONTRIBUTING.md says how to
# move the pins. (govulncheck v1.10.0 cannot load go1.27.3's standard
# library: its type checker takes it for go1.26 code.)
GOVULNCHECK_VERSION := v1.9.0
VULNDB_VERSION := v0.0.0-20261105234957-e22db6528018
GOVULNCHECK    := $(TOOLS_BIN)/govulncheck-$(GOVULNCHECK_VERSION)/govulncheck
VULNDB_DIR     := $(TOOLS_DIR)/vulndb-$(VULNDB_VERSION)
VULN_DB        ?= file://$(VULNDB_DIR)
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
test: pincheck fmtcheck vet lint tidycheck vulncheck test-unit test-rules release-check test-e2e ## Run every check and test suite (what CI runs)

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

.PHONY: pincheck
pincheck: ## Fail unless make runs go.mod's pinned Go toolchain and the docs name it (and SECURITY.md the release key's fingerprint)
	@GO=$(GO) scripts/check-pins.sh

.PHONY: vulncheck
vulncheck: $(GOVULNCHECK) $(if $(filter file://$(VULNDB_DIR),$(VULN_DB)),$(VULNDB_DIR)/index/db.json) ## govulncheck of every package against the pinned Go vulnerability database (built offline; VULN_DB overrides), and its canary
	GO=$(GO) scripts/vulncheck.sh $(GOVULNCHECK) $(VULN_DB)

$(GOVULNCHECK):
	@echo "installing govulncheck $(GOVULNCHECK_VERSION) from the Go module proxy into $(dir $@)"
	GOBIN="$(dir $@)" $(GO) install golang.org/x/vuln/cmd/govulncheck@$(GOVULNCHECK_VERSION)

$(VULNDB_DIR)/index/db.json:
	@GO=$(GO) scripts/ensure-vulndb.sh $(VULNDB_VERSION) $(VULNDB_DIR) >/dev/null

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

# The release is reproducible: the same commit gives the same dist/, byte
# for byte, in any clone, at any time (`make release-check` rebuilds it in a
# fresh clone to prove it). The binaries are -trimpath builds with the
# pinned toolchain; each SBOM leaves out the time it was written and takes
# as serial number a UUID derived from its binary's SHA-256 (releasetool
# serial), where cyclonedx-gomod would draw a random one; the image's times
# are the commit's; SHA256SUMS lists files in byte order whatever the
# locale. The image's digests (index, and per platform manifest and
# config) go in a file of their own, listed in SHA256SUMS like every file,
# so the signature covers what a registry serves too.
#
# Signing: with RELEASE_SIGNING_KEY (a key in gpg's keyring, GNUPGHOME
# honoured) SHA256SUMS gets a detached GPG signature, SHA256SUMS.sig,
# checked against RELEASE_PUBLIC_KEY (the published key, release-key.asc);
# without it the release is unsigned and says so (scripts/sign-release.sh).
IMAGE_DIGESTS     = $(IMAGE:.tar=.digests)
RELEASE_PUBLIC_KEY ?= release-key.asc

.PHONY: release
release: $(CYCLONEDX_GOMOD) ## Static binaries for linux and darwin (amd64, arm64), their SBOMs, the linux image archive and its digests, licenses, notes and SHA256SUMS in dist/, reproducibly; SHA256SUMS.sig if RELEASE_SIGNING_KEY is set
	rm -rf $(DIST) && mkdir -p $(DIST)
	@set -e; for platform in $(PLATFORMS); do \
		os=$${platform%/*}; arch=$${platform#*/}; \
		out=$(DIST)/$(PLUGIN_NAME)_$(VERSION)_$${os}_$${arch}; \
		echo "building $$out"; \
		GO=$(GO) GOOS=$$os GOARCH=$$arch scripts/build-plugin.sh --release $$out $(PLUGIN_VERSION); \
		echo "writing $$out.sbom.json with cyclonedx-gomod $(CYCLONEDX_GOMOD_VERSION)"; \
		serial=$$($(GO) run ./internal/releasetool serial $$out); \
		log=$$(GOOS=$$os GOARCH=$$arch $(CYCLONEDX_GOMOD) bin -json -licenses -notimestamp -serial $$serial \
			-version $(PLUGIN_VERSION) -output $$out.sbom.json $$out 2>&1) || { echo "$$log" >&2; exit 1; }; \
	done
	$(GO) run ./internal/releasetool licenses -o $(DIST)/THIRD_PARTY_LICENSES.md $(DIST)/*.sbom.json
	@echo "writing $(IMAGE) ($(IMAGE_PLATFORMS))"
	$(GO) run ./internal/releasetool image -o $(IMAGE) -name $(PLUGIN_NAME) -version $(PLUGIN_VERSION) \
		-revision "$(REVISION)" -source "https://$(MODULE)" -created "$(SOURCE_DATE_EPOCH)" \
		$(foreach p,$(IMAGE_PLATFORMS),$(p)=$(DIST)/$(PLUGIN_NAME)_$(VERSION)_$(subst /,_,$(p)))
	$(GO) run ./internal/releasetool digests -o $(IMAGE_DIGESTS) $(IMAGE)
	cd $(DIST) && LC_ALL=C sha256sum $$(LC_ALL=C ls $(PLUGIN_NAME)_* THIRD_PARTY_LICENSES.md) > SHA256SUMS
	$(GO) run ./internal/releasetool notes -version $(VERSION) -changelog CHANGELOG.md \
		-sums $(DIST)/SHA256SUMS -goversion "$$($(GO) env GOVERSION)" -commit "$(COMMIT)" \
		-image $(IMAGE) -o $(DIST)/RELEASE_NOTES.md
	@cat $(DIST)/SHA256SUMS
	@RELEASE_PUBLIC_KEY=$(RELEASE_PUBLIC_KEY) scripts/sign-release.sh $(DIST)

$(CYCLONEDX_GOMOD):
	@echo "installing cyclonedx-gomod $(CYCLONEDX_GOMOD_VERSION) from the Go module proxy into $(dir $@)"
	GOBIN="$(dir $@)" $(GO) install github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod@$(CYCLONEDX_GOMOD_VERSION)

# release-check signs with a key made for the run (scripts/with-throwaway-key.sh
# exports it as RELEASE_SIGNING_KEY, its public half as RELEASE_PUBLIC_KEY),
# then checks the release with that public key in place of the published
# one.
.PHONY: release-check
release-check: ## Build the release signed with a throwaway key, then release-verify it
	scripts/with-throwaway-key.sh $(MAKE) --no-print-directory release release-verify

# The checks of release-check on an existing dist/, against RELEASE_PUBLIC_KEY.
.PHONY: release-verify
release-verify: ## Check dist/: names, checksums, toolchain, stamps, SBOMs, image and digests, licenses, notes; the signature against RELEASE_PUBLIC_KEY (default release-key.asc) and refused bad ones; a byte-identical rebuild in a fresh clone
	SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) scripts/check-release.sh $(DIST) $(PLUGIN_NAME) $(VERSION) "$(PLATFORMS)"
	scripts/check-signature.sh $(DIST) $(RELEASE_PUBLIC_KEY)
	scripts/check-reproducible.sh $(DIST)

.PHONY: fmtcheck
fmtcheck: ## Fail if any Go file needs gofmt (the pinned toolchain's)
	@files="$$("$$($(GO) env GOROOT)/bin/gofmt" -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	if [ -n "$$files" ]; then echo "gofmt needed:"; echo "$$files"; exit 1; fi

.PHONY: fmt
fmt: ## Format the Go sources
	"$$($(GO) env GOROOT)/bin/gofmt" -w $$(git ls-files '*.go')

.PHONY: vault
vault: ## Find or build the Vault binary the tests use and print its path
	@scripts/ensure-vault.sh

.PHONY: prometheus
prometheus: ## Find or build the Prometheus server and promtool the tests use and print the server's path
	@scripts/ensure-prometheus.sh

.PHONY: clean
clean: ## Remove build output
	rm -rf bin .dev $(DIST)
