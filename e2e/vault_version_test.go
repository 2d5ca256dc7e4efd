//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"sync"
	"testing"
)

// serverRelease is the server under test: its product ("Vault" or
// "OpenBao", as its `version` command names it) and release.
type serverRelease struct {
	product string
	version [3]int // major, minor, patch
}

// serverVersion is the release of the server under test, asked once from
// `vault version` (or `bao version`), so tests check the behaviour of the
// server `make test-compat` or `make test-openbao` runs them against
// instead of skipping.
var serverVersion = sync.OnceValues(func() (serverRelease, error) {
	out, err := exec.Command(vaultBin, "version").Output()
	if err != nil {
		return serverRelease{}, fmt.Errorf("%s version: %w", vaultBin, err)
	}
	m := regexp.MustCompile(`^(Vault|OpenBao) v(\d+)\.(\d+)\.(\d+)`).FindSubmatch(out)
	if m == nil {
		return serverRelease{}, fmt.Errorf("%s version printed %q, not Vault vX.Y.Z or OpenBao vX.Y.Z", vaultBin, out)
	}
	r := serverRelease{product: string(m[1])}
	for i := range r.version {
		r.version[i], _ = strconv.Atoi(string(m[i+2]))
	}
	fmt.Fprintf(os.Stderr, "e2e: testing against %s %d.%d.%d (%s)\n", r.product, r.version[0], r.version[1], r.version[2], vaultBin)
	return r, nil
})

// atLeast reports whether r is least's product at its major.minor or newer.
func (r serverRelease) atLeast(least serverRelease) bool {
	v, m := r.version, least.version
	return r.product == least.product && (v[0] > m[0] || v[0] == m[0] && v[1] >= m[1])
}

// serverIsOpenBao reports whether the server under test is OpenBao; setUp
// has read its version already, so it cannot fail here.
func serverIsOpenBao() bool {
	r, err := serverVersion()
	if err != nil {
		panic(err)
	}
	return r.product == "OpenBao"
}

// vaultAtLeast reports whether the Vault under test is major.minor or newer.
// It fails the test on another product: its callers check behaviour that
// depends on Vault's release numbers.
func vaultAtLeast(t *testing.T, major, minor int) bool {
	t.Helper()
	r, err := serverVersion()
	if err != nil {
		t.Fatal(err)
	}
	if r.product != "Vault" {
		t.Fatalf("this test checks behaviour that depends on the Vault release; the server under test is %s", r.product)
	}
	return r.atLeast(serverRelease{product: "Vault", version: [3]int{major, minor}})
}
