package main

import "testing"

// TestRunsFrom: a path counts only the processes started from it, so a
// benchmark does not add another Vault on the host to its figures; a bare
// name counts every process of that file name.
func TestRunsFrom(t *testing.T) {
	for _, c := range []struct {
		argv0, name string
		want        bool
	}{
		{"/work/.dev/bench/plugins/vault-plugin-secrets-manus", "/work/.dev/bench/plugins/vault-plugin-secrets-manus", true},
		{"/other/checkout/.dev/plugins/vault-plugin-secrets-manus", "/work/.dev/bench/plugins/vault-plugin-secrets-manus", false},
		{"/usr/bin/vault", "/cache/vault-1.21.0/vault", false},
		{"/usr/bin/vault", "vault", true},
		{"vault", "vault", true},
		{"/usr/bin/bao", "vault", false},
	} {
		if got := runsFrom(c.argv0, c.name); got != c.want {
			t.Errorf("runsFrom(%q, %q) = %t, want %t", c.argv0, c.name, got, c.want)
		}
	}
}
