//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The servers a run starts are the only ones it talks to. Every dev Vault
// takes the root token "root" (`make dev` promises it, and this suite's
// own servers use it), so a script or harness that took whichever server
// answered on its port would register its plugin in another developer's
// Vault: that Vault's mounts then fail with "checksums did not match".

// TestDevRefusesTakenPorts runs scripts/dev.sh (`make dev`) on ports that
// are taken: it refuses to start, naming the port and the variable that
// moves it, and sends nothing to what listens there.
func TestDevRefusesTakenPorts(t *testing.T) {
	t.Parallel()

	t.Run("VAULT_PORT held by another dev Vault", func(t *testing.T) {
		t.Parallel()
		other, manus := startOtherCheckoutVault(t)
		entry, running := other.catalogEntry(), other.runningSHA256("manus/")

		out, err := runDevScript(t, other.port, freePort(t))
		if err == nil {
			t.Fatalf("scripts/dev.sh on a taken VAULT_PORT succeeded:\n%s", out)
		}
		for _, want := range []string{
			fmt.Sprintf("port %d on 127.0.0.1 (Vault API) is already in use", other.port),
			fmt.Sprintf("port %d on 127.0.0.1 (Vault cluster port, API port + 1) is already in use", other.port+1),
			"set VAULT_PORT to move the port",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("scripts/dev.sh does not say %q:\n%s", want, out)
			}
		}
		if got := other.catalogEntry(); got != entry {
			t.Fatalf("scripts/dev.sh changed the other Vault's catalog entry:\nbefore %s\nafter  %s", entry, got)
		}
		// The other Vault's mount still runs its own build, after a reload too.
		other.reloadPlugin()
		if got := other.runningSHA256("manus/"); got != running {
			t.Fatalf("the other Vault's manus/ runs sha256 %.12s after a reload, want %.12s", got, running)
		}
		if _, err := other.readToken("manus"); err != nil || manus.Mints() != 1 {
			t.Fatalf("the other Vault's manus/token after the refusal: %v (mints %d)", err, manus.Mints())
		}
	})

	t.Run("STANDIN_PORT held by another server", func(t *testing.T) {
		t.Parallel()
		var requests atomic.Int64
		squatter := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			requests.Add(1)
			http.Error(w, "not the stand-in", http.StatusTeapot)
		}))
		t.Cleanup(squatter.Close)
		standinPort := portOf(t, squatter.URL)
		vaultPort := freePortPair(t)

		out, err := runDevScript(t, vaultPort, standinPort)
		if err == nil {
			t.Fatalf("scripts/dev.sh on a taken STANDIN_PORT succeeded:\n%s", out)
		}
		want := fmt.Sprintf("port %d on 127.0.0.1 (Manus stand-in) is already in use", standinPort)
		if !strings.Contains(out, want) || !strings.Contains(out, "set STANDIN_PORT") {
			t.Errorf("scripts/dev.sh does not say %q and name STANDIN_PORT:\n%s", want, out)
		}
		// The client secret would have gone there with the config write.
		if n := requests.Load(); n != 0 {
			t.Fatalf("the server on STANDIN_PORT got %d requests from scripts/dev.sh", n)
		}
		if portTaken(vaultPort) {
			t.Fatalf("something listens on VAULT_PORT %d after scripts/dev.sh refused to start", vaultPort)
		}
	})

	// A port taken after the check (between claim_ports and the server's
	// bind): the Vault the script started exits, and the script must not
	// take the one answering there for it.
	t.Run("VAULT_PORT taken after the check", func(t *testing.T) {
		t.Parallel()
		other := startVault(t)
		work := t.TempDir()
		if err := os.Mkdir(filepath.Join(work, "plugins"), 0o755); err != nil {
			t.Fatal(err)
		}
		script := `set -euo pipefail
source scripts/lib.sh
work_dir=$1 vault_bin=$2 VAULT_PORT=$3
start_dev_vault
echo "start_dev_vault returned: $VAULT_ADDR counts as this run's Vault"`
		out, err := runScript(t, []string{"-c", script, "lib", work, vaultBin, strconv.Itoa(other.port)}, nil)
		if err == nil || strings.Contains(out, "start_dev_vault returned") {
			t.Fatalf("start_dev_vault on a port another Vault holds returned:\n%s", out)
		}
		want := fmt.Sprintf("exited instead of listening on 127.0.0.1:%d", other.port)
		if !strings.Contains(out, want) || !strings.Contains(out, "address already in use") {
			t.Fatalf("start_dev_vault does not say %q and show the bind error:\n%s", want, out)
		}
	})
}

// TestDevRunsAndStops runs scripts/dev.sh on free ports to its "ready"
// message and holds what it and the README promise: the ports it names,
// manus/token read with the root token "root", and Ctrl-C (SIGINT to its
// process group, as a terminal sends it) leaving nothing listening.
func TestDevRunsAndStops(t *testing.T) {
	t.Parallel()
	vaultPort, standinPort := freePortPair(t), freePort(t)
	addr := fmt.Sprintf("http://127.0.0.1:%d", vaultPort)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join("scripts", "dev.sh"))
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "VAULT_BIN="+vaultBin, "DEV_DIR="+filepath.Join(t.TempDir(), "dev"),
		"VAULT_PORT="+strconv.Itoa(vaultPort), "STANDIN_PORT="+strconv.Itoa(standinPort))
	out, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = processAttrs()
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	liveGroups.Store(cmd.Process.Pid, struct{}{})
	defer liveGroups.Delete(cmd.Process.Pid)
	exited := make(chan error, 1)
	text := &lockedText{}
	ready := make(chan bool, 1)
	go func() {
		lines := bufio.NewScanner(out)
		for lines.Scan() {
			text.add(lines.Text())
			if strings.HasPrefix(lines.Text(), "==> ready") {
				ready <- true
			}
		}
		exited <- cmd.Wait()
	}()
	select {
	case <-ready:
	case err := <-exited:
		t.Fatalf("scripts/dev.sh exited before it was ready: %v\n%s", err, text.String())
	}
	time.Sleep(200 * time.Millisecond) // the rest of the message
	for _, want := range []string{
		fmt.Sprintf("127.0.0.1:%d: Vault API (VAULT_PORT)", vaultPort),
		fmt.Sprintf("127.0.0.1:%d: Manus stand-in (STANDIN_PORT)", standinPort),
		fmt.Sprintf("export VAULT_ADDR='%s' VAULT_TOKEN='root'", addr),
	} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("scripts/dev.sh does not say %q", want)
		}
	}
	read := exec.Command(vaultBin, "read", "-field=access_token", "manus/token")
	read.Env = append(os.Environ(), "VAULT_ADDR="+addr, "BAO_ADDR="+addr, "VAULT_TOKEN=root", "BAO_TOKEN=root",
		"VAULT_AGENT_ADDR=", "BAO_AGENT_ADDR=", "HOME="+t.TempDir())
	token, err := read.CombinedOutput()
	if err != nil || !strings.HasPrefix(string(token), "standin_") {
		t.Fatalf("vault read manus/token with the root token root: %v %s\n%s", err, token, text.String())
	}

	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGINT) // Ctrl-C
	select {
	case <-exited:
	case <-time.After(time.Minute):
		t.Fatalf("scripts/dev.sh did not stop after SIGINT:\n%s", text.String())
	}
	for _, port := range []int{vaultPort, vaultPort + 1, standinPort} {
		if portTaken(port) {
			t.Errorf("port %d is still taken after scripts/dev.sh stopped", port)
		}
	}
}

// lockedText collects lines one goroutine reads while another looks.
type lockedText struct {
	mu   sync.Mutex
	text strings.Builder
}

func (l *lockedText) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.text.WriteString(line + "\n")
}

func (l *lockedText) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.text.String()
}

// TestHarnessCountsOnlyItsOwnServer starts a dev server on the port of
// another: the harness must see it lose the port, not take the other for it.
func TestHarnessCountsOnlyItsOwnServer(t *testing.T) {
	t.Parallel()
	other := startVault(t)
	v := newDevVault(t, other.port, pluginDir)
	v.start()
	if status := v.health(); status != 0 {
		t.Fatalf("health of a server that has not bound its port is %d (the other server's), want 0", status)
	}
	if !v.lostPortRace() {
		t.Fatal("the harness took the server holding the port for the one it started")
	}
	if other.health() != http.StatusOK {
		t.Fatal("the server holding the port is no longer counted as answering")
	}
}

// startOtherCheckoutVault starts a dev Vault as another checkout's
// `make dev` leaves it: root token "root", the plugin registered at this
// suite's version but from another build (so another sha256), mounted at
// manus/ and configured; its first token minted.
func startOtherCheckoutVault(t *testing.T) (*vaultServer, *fakeManus) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(pluginDir, pluginName))
	if err != nil {
		t.Fatal(err)
	}
	// Bytes after the ELF image change the checksum, not the program.
	data = append(data, []byte("\nanother checkout's build\n")...)
	command := pluginName + "-other-checkout"
	if err := os.WriteFile(filepath.Join(pluginDir, command), data, 0o755); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)

	v := startVault(t)
	manus := startManus(t)
	v.mustVault("plugin", "register", "-sha256="+hex.EncodeToString(sum[:]), "-version="+pluginVersion,
		"-command="+command, "secret", pluginName)
	v.mount("manus")
	v.configure("manus", manus)
	v.mustReadToken("manus")
	return v, manus
}

// catalogEntry is the plugin's catalog entry at this suite's version, as
// JSON.
func (v *vaultServer) catalogEntry() string {
	v.t.Helper()
	return v.mustVault("plugin", "info", "-format=json", "-version="+pluginVersion, "secret", pluginName)
}

// runningSHA256 is the checksum of the binary a mount runs.
func (v *vaultServer) runningSHA256(mount string) string {
	v.t.Helper()
	var mounts map[string]struct {
		RunningSha256 string `json:"running_sha256"`
	}
	v.vaultJSON(&mounts, "secrets list", "-detailed")
	return mounts[mount].RunningSha256
}

// runDevScript runs scripts/dev.sh with the suite's server binary on the
// given ports and returns its output.
func runDevScript(t *testing.T, vaultPort, standinPort int) (string, error) {
	t.Helper()
	return runScript(t, []string{filepath.Join("scripts", "dev.sh")}, []string{
		"VAULT_BIN=" + vaultBin,
		"VAULT_PORT=" + strconv.Itoa(vaultPort),
		"STANDIN_PORT=" + strconv.Itoa(standinPort),
	})
}

// runScript runs bash with args in the repository root, with env added to
// the test's environment, in its own process group, which is killed if it
// is still running after two minutes (a script that does not refuse would
// run until stopped). It returns stdout and stderr together.
func runScript(t *testing.T, args, env []string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", args...)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = processAttrs()
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	liveGroups.Store(cmd.Process.Pid, struct{}{})
	err := cmd.Wait()
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // anything it left running
	liveGroups.Delete(cmd.Process.Pid)
	return out.String(), err
}

// portOf is the port of an http://host:port URL.
func portOf(t *testing.T, url string) int {
	t.Helper()
	port, err := strconv.Atoi(url[strings.LastIndexByte(url, ':')+1:])
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// portTaken reports whether something accepts connections on
// 127.0.0.1:port.
func portTaken(port int) bool {
	conn, err := (&net.Dialer{Timeout: time.Second}).Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err == nil {
		conn.Close()
	}
	return err == nil
}
