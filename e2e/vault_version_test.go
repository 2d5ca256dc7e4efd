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

// vaultVersion is the release of the Vault under test (major, minor, patch),
// asked once from `vault version`, so tests check the behaviour of the
// version `make test-compat` runs them against instead of skipping.
var vaultVersion = sync.OnceValues(func() ([3]int, error) {
	out, err := exec.Command(vaultBin, "version").Output()
	if err != nil {
		return [3]int{}, fmt.Errorf("vault version: %w", err)
	}
	m := regexp.MustCompile(`^Vault v(\d+)\.(\d+)\.(\d+)`).FindSubmatch(out)
	if m == nil {
		return [3]int{}, fmt.Errorf("vault version printed %q, not Vault vX.Y.Z", out)
	}
	var v [3]int
	for i := range v {
		v[i], _ = strconv.Atoi(string(m[i+1]))
	}
	fmt.Fprintf(os.Stderr, "e2e: testing against Vault %d.%d.%d (%s)\n", v[0], v[1], v[2], vaultBin)
	return v, nil
})

// vaultAtLeast reports whether the Vault under test is major.minor or newer.
func vaultAtLeast(t *testing.T, major, minor int) bool {
	t.Helper()
	v, err := vaultVersion()
	if err != nil {
		t.Fatal(err)
	}
	return v[0] > major || v[0] == major && v[1] >= minor
}
