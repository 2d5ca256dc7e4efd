package main

import (
	"crypto/x509"
	"os"
	"os/exec"
	"testing"
)

// TestPublicRootsOnAHostWithout: where the host has no CA bundle (the
// release image holds only the binary), the plugin still has the public
// roots to verify https://api.manus.im with. The check runs in a child
// process whose SSL_CERT_FILE and SSL_CERT_DIR point at nothing, as on a
// scratch image; the roots are loaded once per process.
func TestPublicRootsOnAHostWithout(t *testing.T) {
	if os.Getenv("MANUS_TEST_ROOTS_CHILD") == "1" {
		pool, err := x509.SystemCertPool()
		if err != nil || pool.Equal(x509.NewCertPool()) {
			t.Fatalf("no roots on a host without a CA bundle: %v", err)
		}
		return
	}
	empty := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestPublicRootsOnAHostWithout$", "-test.count=1")
	cmd.Env = append(os.Environ(), "MANUS_TEST_ROOTS_CHILD=1", "SSL_CERT_FILE="+empty+"/none.pem", "SSL_CERT_DIR="+empty)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}
