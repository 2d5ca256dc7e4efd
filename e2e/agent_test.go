//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestVaultAgentKeepsRenderedTokenValid runs a real Vault Agent whose
// template renders manus/token into a file, with Manus issuing 20-second
// tokens. For over a minute the file must move on to new tokens, and at no
// instant may it hold a token Manus considers expired.
func TestVaultAgentKeepsRenderedTokenValid(t *testing.T) {
	t.Parallel()
	const lifetime = 20 * time.Second
	const watchFor = 65 * time.Second

	v := startVault(t)
	manus := startManus(t)
	manus.SetLifetime(lifetime)
	v.mountConfigured(manus)

	rendered := filepath.Join(v.dir, "manus-token")
	startAgent(t, v, rendered)

	order, seen := watchRenderedToken(t, rendered, manus, watchFor, false)

	if len(order) < 3 {
		t.Fatalf("the rendered file showed %d distinct tokens in %s of %s tokens; want at least 3", len(order), watchFor, lifetime)
	}
	for i, tok := range order {
		t.Logf("token %d rendered at +%s, expires at +%s", i, seen[tok].Sub(seen[order[0]]).Round(time.Millisecond), manus.ExpiresAt(tok).Sub(seen[order[0]]).Round(time.Millisecond))
	}
	// One mint per rendered token at most (plus config verification): the
	// Agent's re-reads are what drive minting, nothing else.
	if mints := manus.Mints(); mints > len(order)+2 {
		t.Fatalf("%d mints for %d rendered tokens", mints, len(order))
	}
}

// watchRenderedToken polls the Agent's rendered file every 50 ms for
// watchFor and fails the test the moment it holds a token Manus does not
// accept. It returns the distinct tokens in the order they appeared and when
// each was first seen. With requireContent a missing or empty file fails the
// test too; without it, a read that finds no file or no bytes is skipped.
func watchRenderedToken(t *testing.T, rendered string, manus *fakeManus, watchFor time.Duration, requireContent bool) ([]string, map[string]time.Time) {
	t.Helper()
	seen := map[string]time.Time{} // token -> first seen
	var order []string
	for deadline := time.Now().Add(watchFor); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		data, err := os.ReadFile(rendered)
		now := time.Now()
		tok := strings.TrimSpace(string(data))
		switch {
		case requireContent && (err != nil || tok == ""):
			t.Fatalf("the rendered file is missing or empty at %s (%v)", now.Format(time.StampMilli), err)
		case err != nil || len(data) == 0:
			continue
		}
		if _, ok := seen[tok]; !ok {
			seen[tok] = now
			order = append(order, tok)
		}
		if !manus.IsValid(tok) {
			t.Fatalf("at %s the rendered file holds a token Manus does not accept (issued: %v, expired at %s)",
				now.Format(time.StampMilli), manus.ClientOf(tok) != "", manus.ExpiresAt(tok).Format(time.StampMilli))
		}
	}
	return order, seen
}

// startAgent runs `vault agent` with token-file auto-auth, one template and
// any extra configuration blocks, and waits for its first render; it is
// stopped when the test ends.
func startAgent(t *testing.T, v *vaultServer, destination string, extraConfig ...string) {
	t.Helper()
	exited, _ := launchAgent(t, v, agentConfig(t, v, "", destination)+strings.Join(extraConfig, "\n"))

	// Wait for the first render, or fail early if the agent died.
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if data, err := os.ReadFile(destination); err == nil && len(data) > 0 {
			return
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("vault agent exited before rendering: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatal("vault agent rendered nothing within 30s")
}

// agentConfig is an Agent configuration with token-file auto-auth (the
// server's root token) and one template rendering manus/token into
// destination; vaultExtra goes inside the vault block.
func agentConfig(t *testing.T, v *vaultServer, vaultExtra, destination string) string {
	t.Helper()
	tokenFile := filepath.Join(v.dir, "agent-token")
	writeFile(t, tokenFile, v.token)
	return fmt.Sprintf(`
vault {
  address = %q
%s}

auto_auth {
  method "token_file" {
    config = {
      token_file_path = %q
    }
  }
}

template {
  contents    = "{{ with secret \"manus/token\" }}{{ .Data.access_token }}{{ end }}"
  destination = %q
  perms       = "0600"
}
`, v.addr, vaultExtra, tokenFile, destination)
}

// launchAgent starts `vault agent` with config and returns a channel that
// receives its exit and the path of its log; the Agent is stopped when the
// test ends, and its log shown if the test failed.
func launchAgent(t *testing.T, v *vaultServer, config string) (chan error, string) {
	t.Helper()
	configPath := filepath.Join(v.dir, "agent.hcl")
	writeFile(t, configPath, config)

	logPath := filepath.Join(v.dir, "agent.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, vaultBin, "agent", "-config="+configPath, "-log-level=debug")
	cmd.Env = v.env()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = processAttrs()
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	liveGroups.Store(cmd.Process.Pid, struct{}{})
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cancel()
		<-exited
		liveGroups.Delete(cmd.Process.Pid)
		logFile.Close()
		if t.Failed() {
			data, _ := os.ReadFile(logPath)
			t.Logf("vault agent log:\n%s", data)
		}
	})
	return exited, logPath
}
