#!/usr/bin/env bash
# `make test-openbao`: the end-to-end suite against OpenBao. The server, the
# CLI and the Agent are the OpenBao binary in BAO_BIN (2.5 or newer; nothing
# is downloaded or built, and the suite takes it from nowhere else). The
# build tags e2e and openbao add the cluster tests (TestOpenBaoCluster*, in
# e2e/openbao_cluster_test.go: a 3-node OpenBao Raft cluster whose standbys
# serve reads themselves). Two runs, one per row of the compatibility table
# in docs/upgrading.md: the cluster tests, one at a time, then the
# single-node tests of the suite that apply to OpenBao, in parallel. Both
# always run; the exit status is non-zero if either failed.
#
# Every test in e2e/ is a cluster test, in `single_node` or in
# `not_applicable` with the reason; the script fails if one is in none of
# them, or if a listed test no longer exists, so a new test gets a decision.
set -euo pipefail

cd "$(dirname "$0")/.."
go=${GO:-go}
log() { printf '==> test-openbao: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 2; }

[ -n "${BAO_BIN:-}" ] || die "BAO_BIN is not set: set it to an OpenBao 2.5 or newer server binary (BAO_BIN=/path/to/bao make test-openbao)"
[ -f "$BAO_BIN" ] && [ -x "$BAO_BIN" ] || die "BAO_BIN=$BAO_BIN is not an executable file"
bao_version=$("$BAO_BIN" version 2>/dev/null | sed -n 's/^OpenBao v\([0-9][0-9.]*\).*/\1/p' | head -n1)
[ -n "$bao_version" ] || die "BAO_BIN=$BAO_BIN does not print 'OpenBao vX.Y.Z' for 'version'"

# The single-node tests that hold for OpenBao as they are: registration by
# sha256 and version, mounts, config, both read modes, leases, policies,
# status and probe, outage, chaos, reload, restart on file storage, upgrade
# and rollback, a real `bao agent` rendering the token, config writes that
# would move the secret, and the token refresh.
single_node=(
	TestRegisterVersionAndMultiplexedMounts
	TestConfigAndTokenThroughCLI
	TestUnconfiguredMountSaysWhatToDo
	TestConcurrentReadsMintOnce
	TestLeaseRevokeAndDisable
	TestConfigChangeThroughCLI
	TestPathHelpAndOpenAPI
	TestPoliciesFromTheDocs
	TestStatusAndProbeThroughCLI
	TestStatusShowsTheLeaseOfATunedMount
	TestNonLeasedReadsRegisterNoLease
	TestVaultAgentKeepsRenderedTokenValid
	TestOutageServesCachedTokenThenRecovers
	TestPluginReloadReusesToken
	TestVaultRestartReusesToken
	TestChaos
	TestUpgradeToNextVersion
	TestDestinationChangeNeedsTheSecretThroughCLI
	TestRefreshDuringBackoffMintsAtOnce
	TestConcurrentRefreshesAndReadsMintOnce
	TestRevokedTokensAreReplacedAfterTheProbe
	TestSameConfigWrittenTwiceMintsNothing
	TestRefreshBelongsToTheOperatorPolicy
	TestKubernetesConsumersSeeOneSecretPerToken
	TestHarnessCountsOnlyItsOwnServer
	TestPlantedBaseURLCannotCaptureARotationThroughCLI
	TestPlantedCACertCannotCaptureARotationThroughCLI
	TestRegistrationRestrictsBaseURLThroughCLI
	TestRefreshLoopMintsOnce
)
# The cluster tests: the OpenBao ones, and the suite's Raft failover test,
# whose read through a standby is, on OpenBao, a leased read that the
# standby must forward.
cluster_prefix=TestOpenBaoCluster
cluster=(TestRaftFailoverReusesToken)
# name: why it does not apply to OpenBao.
not_applicable=(
	"TestNoSecretsInLogsOrAudit: enables a file audit device through the API (sys/audit); OpenBao declares audit devices only in the server configuration"
	"TestVaultAgentNonLeasedMode: counts the Agent's reads in a file audit device enabled through the API, which OpenBao refuses"
	"TestVaultAgentLeaseRenewalThreshold: checks the Agent behaviour of a Vault release number (1.16 vs 1.17, GH-25212); OpenBao's releases are numbered apart"
	"TestVaultAgentTemplateRestartBackOff: checks the Agent behaviour of a Vault release number (1.16 vs 1.17, GH-25497); OpenBao's releases are numbered apart"
	"TestContainerizedPlugin: Vault's containerized plugins under Docker (build tag containerized, make test-containerized, which also checks the extraction OpenBao's declarative plugins do); OpenBao runs no plugin containers"
	"TestDevRefusesTakenPorts: about scripts/dev.sh (make dev), which runs Vault; the port checks in scripts/lib.sh it holds are the same for bench-openbao"
	"TestDevRunsAndStops: about scripts/dev.sh (make dev) and the README's quickstart, which run Vault"
	"TestUpgradeStepsAsDocumented: runs docs/upgrading.md's vault commands as written, whose reload takes Vault's -type (the page gives OpenBao's form); TestUpgradeToNextVersion runs the upgrade on OpenBao"
	"TestMetricsScrapedByPrometheus: about Prometheus (a scrape through the server and the example alert rules); the plugin's side is the same, and the cluster tests read the metrics path through OpenBao"
)
defined=$(sed -n 's/^func \(Test[A-Za-z0-9_]*\)(t \*testing\.T).*/\1/p' e2e/*_test.go | sort)
listed=$(printf '%s\n' "${single_node[@]}" "${cluster[@]}" "${not_applicable[@]%%:*}" | sort)
missing=$(comm -23 <(grep -v "^$cluster_prefix" <<<"$defined") <(printf '%s\n' "$listed") | tr '\n' ' ')
gone=$(comm -13 <(printf '%s\n' "$defined") <(printf '%s\n' "$listed") | tr '\n' ' ')
[ -z "$missing" ] || die "decide whether these tests apply to OpenBao and list them in scripts/test-openbao.sh: $missing"
[ -z "$gone" ] || die "scripts/test-openbao.sh lists tests that no longer exist: $gone"
grep -q "^$cluster_prefix" <<<"$defined" || die "no $cluster_prefix* tests in e2e/"

log "OpenBao $bao_version ($BAO_BIN); not applicable to OpenBao:"
printf '      %s\n' "${not_applicable[@]}" >&2

plugin_version="v$(tr -d '[:space:]' < VERSION)"
results=()
failed=0
# suite NAME RUN-REGEXP runs one part and records its result.
suite() {
	local start=$SECONDS result=passed
	log "$1: go test -run '$2'"
	"$go" test -race -tags e2e,openbao -count=1 -timeout 30m -run "$2" ./e2e/ || { result=FAILED; failed=1; }
	log "$1: $result in $(((SECONDS - start) / 60))m$(((SECONDS - start) % 60))s"
	results+=("$1 | $bao_version | $result | $(date -u +%Y-%m-%d) | $plugin_version")
}
suite cluster "^(${cluster_prefix}.*|$(IFS='|'; echo "${cluster[*]}"))\$"
suite "single node" "^($(IFS='|'; echo "${single_node[*]}"))\$"

log "summary (OpenBao | version | result | date | plugin version):"
printf '  %s\n' "${results[@]}" >&2
exit "$failed"
