//go:build e2e

// Package e2e runs the plugin the way operators do: built as a binary,
// registered by sha256 and version in a real `vault server`, driven through
// the real vault CLI and HTTP API, and consumed by a real Vault Agent. Manus
// is played by the strict stand-in on loopback.
//
// Run with `make test`, or `go test -tags e2e ./e2e/` with VAULT_BIN set (or
// scripts/ensure-vault.sh able to find or build Vault). With the build tag
// openbao as well (`make test-openbao`), the server, CLI and Agent are the
// OpenBao binary in BAO_BIN, and the OpenBao cluster tests are built in.
package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/manus-community/vault-plugin-secrets-manus/internal/standin"
)

const (
	pluginName   = "vault-plugin-secrets-manus"
	rootToken    = "root"
	testClientID = "tm_e2eClient_AFhru6AnZJ8W"
	// A distinctive secret, so a leak is unmistakable in any log.
	testClientSecret = "e2e5ecret0f7h3c4nary9b1e2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2"
)

var (
	vaultBin      string // the vault (or bao) binary: server, CLI and Agent
	pluginDir     string // holds the freshly built plugin binary
	pluginSHA256  string
	pluginVersion string // as stamped into the binary, e.g. v0.1.0
	repoRoot      string
)

func TestMain(m *testing.M) {
	code, err := setUp(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e setup failed:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

// liveGroups holds the process groups of every Vault server and Agent still
// running, so an interrupted run (Ctrl-C, SIGTERM) can kill them and their
// plugin processes before exiting; t.Cleanup does not run then.
var liveGroups sync.Map

func killLiveGroupsOnSignal() {
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-signals
		liveGroups.Range(func(pgid, _ any) bool {
			_ = syscall.Kill(-pgid.(int), syscall.SIGKILL)
			return true
		})
		os.Exit(130)
	}()
}

// processAttrs starts a child in its own process group (so stop reaches its
// plugin processes) that the kernel kills if this test process dies.
func processAttrs() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

func setUp(m *testing.M) (int, error) {
	killLiveGroupsOnSignal()
	wd, err := os.Getwd()
	if err != nil {
		return 0, err
	}
	repoRoot = filepath.Dir(wd)
	if vaultBin, err = findServer(); err != nil {
		return 0, err
	}
	release, err := serverVersion()
	if err != nil {
		return 0, err
	}
	if requiredServer != nil && !release.atLeast(*requiredServer) {
		return 0, fmt.Errorf("%s is %s %d.%d.%d; this suite needs %s %d.%d or newer", vaultBin,
			release.product, release.version[0], release.version[1], release.version[2],
			requiredServer.product, requiredServer.version[0], requiredServer.version[1])
	}
	dir, err := os.MkdirTemp("", "manus-e2e-plugins-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	pluginDir = dir
	if err := buildPlugin(); err != nil {
		return 0, err
	}
	return m.Run(), nil
}

// findServer finds the server binary under test, and requiredServer, if
// set, is the least release it must be: findVault and any Vault, unless the
// build tag openbao replaced them (harness_openbao_test.go).
var (
	findServer     = findVault
	requiredServer *serverRelease
)

// findVault takes $VAULT_BIN, else asks the repo's script, which finds or
// builds one. A missing Vault fails the suite; it never skips it.
func findVault() (string, error) {
	if bin := os.Getenv("VAULT_BIN"); bin != "" {
		return bin, nil
	}
	cmd := exec.Command(filepath.Join(repoRoot, "scripts", "ensure-vault.sh"))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("scripts/ensure-vault.sh: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

func buildPlugin() error {
	version, err := os.ReadFile(filepath.Join(repoRoot, "VERSION"))
	if err != nil {
		return err
	}
	pluginVersion = "v" + strings.TrimSpace(string(version))
	pluginSHA256, err = buildPluginBinary(filepath.Join(pluginDir, pluginName), pluginVersion)
	return err
}

// buildPluginBinary builds the plugin stamped with version into bin, with
// the recipe every build uses (scripts/build-plugin.sh), and returns its
// sha256, as `vault plugin register` wants it.
func buildPluginBinary(bin, version string) (string, error) {
	cmd := exec.Command(filepath.Join(repoRoot, "scripts", "build-plugin.sh"), bin, version)
	cmd.Dir = repoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the plugin %s: %w\n%s", version, err, out)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), nil
}

// vaultServer is one `vault server` process with its own port, directory,
// log and CLI home.
type vaultServer struct {
	t         *testing.T
	addr      string // http://127.0.0.1:port
	port      int
	dir       string
	logPath   string
	args      []string // `vault server` arguments, reused by restart
	token     string   // root token
	unsealKey string   // for servers that are not in dev mode

	cmd  *exec.Cmd
	done chan struct{}
}

// startVault starts a dev server with the plugin directory configured but
// the plugin not yet registered. It is stopped, with every plugin process
// it started, when the test ends.
func startVault(t *testing.T) *vaultServer {
	t.Helper()
	return startVaultWithPlugins(t, pluginDir)
}

// startVaultWithPlugins is startVault with another plugin directory.
func startVaultWithPlugins(t *testing.T, dir string) *vaultServer {
	t.Helper()
	for attempt := 1; ; attempt++ {
		// Dev mode also listens on the API port + 1 for cluster traffic.
		v := newDevVault(t, freePortPair(t), dir)
		v.start()
		if !v.lostPortRace() || attempt == 3 {
			v.waitHealth(http.StatusOK)
			return v
		}
		t.Logf("vault could not bind %s (taken meanwhile); retrying on other ports", v.addr)
	}
}

// newDevVault prepares, without starting it, a dev server on port with the
// plugin directory dir and the root token rootToken.
func newDevVault(t *testing.T, port int, dir string) *vaultServer {
	t.Helper()
	v := newVaultServer(t, port)
	configPath := filepath.Join(v.dir, "extra.hcl")
	writeFile(t, configPath, fmt.Sprintf("plugin_directory = %q\n", dir))
	v.token = rootToken
	v.args = []string{"server", "-dev",
		"-dev-root-token-id=" + rootToken,
		"-dev-listen-address=" + strings.TrimPrefix(v.addr, "http://"),
		"-dev-no-store-token",
		"-config=" + configPath,
		"-log-level=trace",
	}
	return v
}

// lostPortRace waits until the server answers or exits, and reports
// whether it exited because its address was taken since freePort chose it
// (by another test process: every suite's dev servers take the root token
// "root", and what answers on a lost port is one of them, which health
// does not count).
func (v *vaultServer) lostPortRace() bool {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-v.done:
			return strings.Contains(v.log(), "address already in use")
		default:
		}
		if v.health() != 0 {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

func newVaultServer(t *testing.T, port int) *vaultServer {
	dir := t.TempDir()
	v := &vaultServer{
		t:       t,
		addr:    fmt.Sprintf("http://127.0.0.1:%d", port),
		port:    port,
		dir:     dir,
		logPath: filepath.Join(dir, "vault.log"),
	}
	t.Cleanup(v.stop)
	return v
}

// start launches the server process in its own process group, so stop
// reaches the plugin processes too. Output is appended to the log.
func (v *vaultServer) start() {
	v.t.Helper()
	logFile, err := os.OpenFile(v.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		v.t.Fatal(err)
	}
	v.cmd = exec.Command(vaultBin, v.args...)
	v.cmd.Env = v.env()
	v.cmd.Stdout, v.cmd.Stderr = logFile, logFile
	v.cmd.SysProcAttr = processAttrs()
	if err := v.cmd.Start(); err != nil {
		v.t.Fatal(err)
	}
	liveGroups.Store(v.cmd.Process.Pid, struct{}{})
	done := make(chan struct{})
	v.done = done
	cmd := v.cmd
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(done)
	}()
}

// env is the environment of the server, its CLI and its Agent. The bao CLI
// reads VAULT_ADDR and VAULT_TOKEN too, but prefers BAO_ADDR and BAO_TOKEN,
// so those are set as well, lest the caller's own win. The caller's Agent
// address would take the CLI's requests elsewhere, and a proxy setting the
// plugin inherits from the server would stand in for the env of its
// registration: both are left out (OpenBao puts the server's environment
// after the catalog's, so even an empty one would win).
func (v *vaultServer) env() []string {
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		name, _, _ := strings.Cut(kv, "=")
		return slices.Contains(unsetForServers, name)
	})
	return append(env,
		"VAULT_ADDR="+v.addr, "BAO_ADDR="+v.addr,
		"VAULT_TOKEN="+v.token, "BAO_TOKEN="+v.token,
		"HOME="+v.dir, // keep the CLI's token helper out of the real home
		"VAULT_FORMAT=", "BAO_FORMAT=",
		"VAULT_CLI_NO_COLOR=1", "BAO_CLI_NO_COLOR=1",
	)
}

var unsetForServers = []string{
	"VAULT_AGENT_ADDR", "BAO_AGENT_ADDR",
	"VAULT_HTTP_PROXY", "VAULT_PROXY_ADDR", "BAO_HTTP_PROXY", "BAO_PROXY_ADDR",
	"HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy",
}

// health is the status of sys/health: 200 active, 429 standby, 501 not
// initialised, 503 sealed; 0 when nothing answers, or when what answers is
// not this server's process (it exited, or has not bound its port yet, and
// another server holds it).
func (v *vaultServer) health() int {
	if !listensOn(v.cmd.Process.Pid, v.port) {
		return 0
	}
	resp, err := http.Get(v.addr + "/v1/sys/health")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// waitHealth waits until sys/health answers one of the given statuses
// (any status when none is given).
func (v *vaultServer) waitHealth(want ...int) int {
	v.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-v.done:
			v.t.Fatalf("vault server exited:\n%s", v.logTail())
		default:
		}
		status := v.health()
		if status != 0 && (len(want) == 0 || slices.Contains(want, status)) {
			return status
		}
		time.Sleep(100 * time.Millisecond)
	}
	v.t.Fatalf("vault server at %s never reached health %v:\n%s", v.addr, want, v.logTail())
	return 0
}

// terminateGroup sends SIGTERM to the process group led by pid and waits
// for done (closed when the leader has exited); if that takes over 15 s it
// sends SIGKILL and waits again.
func terminateGroup(pid int, done <-chan struct{}) {
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-done
	}
}

// stop ends the server and its plugin processes: SIGTERM to the group, then
// SIGKILL if it lingers. Stopping a stopped server does nothing.
func (v *vaultServer) stop() {
	if v.cmd == nil {
		return
	}
	select {
	case <-v.done:
	default:
		terminateGroup(v.cmd.Process.Pid, v.done)
	}
	// Plugin processes may outlive vault by a moment.
	_ = syscall.Kill(-v.cmd.Process.Pid, syscall.SIGKILL)
	liveGroups.Delete(v.cmd.Process.Pid)
	if v.t.Failed() {
		v.t.Logf("vault server %s log (tail):\n%s", v.addr, v.logTail())
	}
}

func (v *vaultServer) log() string {
	data, _ := os.ReadFile(v.logPath)
	return string(data)
}

func (v *vaultServer) logTail() string {
	log := v.log()
	if len(log) > 8000 {
		log = "...\n" + log[len(log)-8000:]
	}
	return log
}

// vault runs the CLI and returns its stdout; stderr is folded into the error.
func (v *vaultServer) vault(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, vaultBin, args...)
	cmd.Env = v.env()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("vault %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// vaultAs runs the CLI with another token.
func (v *vaultServer) vaultAs(token string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, vaultBin, args...)
	cmd.Env = append(v.env(), "VAULT_TOKEN="+token, "BAO_TOKEN="+token)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("vault %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// tokenWithPolicy creates a token holding only the named policy.
func (v *vaultServer) tokenWithPolicy(policy string) string {
	v.t.Helper()
	return strings.TrimSpace(v.mustVault("token", "create", "-policy="+policy, "-no-default-policy", "-field=token"))
}

// mustVault runs the CLI and fails the test on error.
func (v *vaultServer) mustVault(args ...string) string {
	v.t.Helper()
	out, err := v.vault(args...)
	if err != nil {
		v.t.Fatal(err)
	}
	return out
}

// vaultJSON runs a CLI command ("read", "plugin info", ...) with
// -format=json and decodes its output.
func (v *vaultServer) vaultJSON(out any, command string, args ...string) {
	v.t.Helper()
	args = append(append(strings.Fields(command), "-format=json"), args...)
	text := v.mustVault(args...)
	if err := json.Unmarshal([]byte(text), out); err != nil {
		v.t.Fatalf("decoding %q: %v", text, err)
	}
}

// secretResponse is the CLI's and the API's JSON for a read.
type secretResponse struct {
	LeaseID       string         `json:"lease_id"`
	LeaseDuration int            `json:"lease_duration"`
	Renewable     bool           `json:"renewable"`
	Data          map[string]any `json:"data"`
	Warnings      []string       `json:"warnings"`
}

func (v *vaultServer) readSecret(path string) secretResponse {
	v.t.Helper()
	var resp secretResponse
	v.vaultJSON(&resp, "read", path)
	return resp
}

// registerPlugin registers the freshly built binary by checksum and version,
// with env (KEY=value) for its process as the docs say: Vault's -env, or,
// for OpenBao, whose CLI has none, the catalog API's env field.
func (v *vaultServer) registerPlugin(env ...string) {
	v.t.Helper()
	if serverIsOpenBao() && len(env) > 0 {
		args := []string{"write", "sys/plugins/catalog/secret/" + pluginName, "sha256=" + pluginSHA256, "version=" + pluginVersion, "command=" + pluginName}
		for _, e := range env {
			args = append(args, "env="+e)
		}
		v.mustVault(args...)
		return
	}
	args := []string{"plugin", "register", "-sha256=" + pluginSHA256, "-version=" + pluginVersion}
	for _, e := range env {
		args = append(args, "-env", e)
	}
	v.mustVault(append(args, "secret", pluginName)...)
}

// reloadPlugin restarts the plugin's process and every mount of it, as the
// upgrade steps in docs/upgrading.md do. Vault 1.16 and later want the
// plugin type (-type=secret); OpenBao's CLI, forked from Vault before that
// flag, takes the plugin name alone.
func (v *vaultServer) reloadPlugin() {
	v.t.Helper()
	args := []string{"plugin", "reload", "-plugin=" + pluginName}
	if !serverIsOpenBao() {
		args = append(args, "-type=secret")
	}
	v.mustVault(args...)
}

// mount enables the plugin at path.
func (v *vaultServer) mount(path string) {
	v.t.Helper()
	v.mustVault("secrets", "enable", "-path="+path, pluginName)
}

// httpGet reads a path through Vault's HTTP API with the root token.
func (v *vaultServer) httpGet(path string) (int, secretResponse, error) {
	req, err := http.NewRequest(http.MethodGet, v.addr+"/v1/"+path, nil)
	if err != nil {
		return 0, secretResponse{}, err
	}
	req.Header.Set("X-Vault-Token", v.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, secretResponse{}, err
	}
	defer resp.Body.Close()
	var out secretResponse
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, &out); err != nil {
			return resp.StatusCode, out, err
		}
	} else {
		err = errors.New(string(body))
	}
	return resp.StatusCode, out, err
}

// fakeManus is the stand-in on loopback.
type fakeManus struct {
	*standin.Server
	url string
}

func startManus(t *testing.T) *fakeManus {
	t.Helper()
	s := standin.New()
	s.AddClient(testClientID, testClientSecret)
	server := httptest.NewServer(s)
	t.Cleanup(func() {
		server.Close()
		if v := s.Violations(); len(v) > 0 {
			t.Errorf("the plugin broke the Manus token endpoint contract: %q", v)
		}
	})
	return &fakeManus{Server: s, url: server.URL}
}

// mountConfigured registers the plugin, mounts it at manus/ and configures
// it against manus through the CLI: the set-up most tests start from.
func (v *vaultServer) mountConfigured(manus *fakeManus, extra ...string) {
	v.t.Helper()
	v.registerPlugin()
	v.mount("manus")
	v.configure("manus", manus, extra...)
}

// configure writes the mount's config through the CLI.
func (v *vaultServer) configure(mount string, manus *fakeManus, extra ...string) {
	v.t.Helper()
	args := append([]string{"write", mount + "/config",
		"client_id=" + testClientID,
		"client_secret=" + testClientSecret,
		"base_url=" + manus.url,
	}, extra...)
	v.mustVault(args...)
}

// pluginProcesses counts running processes of the plugin binary under this
// server's process group.
func (v *vaultServer) pluginProcesses() int {
	return len(v.pluginPIDs())
}

func (v *vaultServer) pluginPIDs() []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid := atoi(e.Name())
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if pid <= 0 || err != nil || !bytes.HasPrefix(cmdline, []byte(filepath.Join(pluginDir, pluginName))) {
			continue
		}
		if pgid, err := syscall.Getpgid(pid); err == nil && pgid == v.cmd.Process.Pid {
			pids = append(pids, pid)
		}
	}
	return pids
}

// pluginPID is the process ID of the server's plugin process; it fails the
// test unless exactly one runs.
func (v *vaultServer) pluginPID() int {
	v.t.Helper()
	pids := v.pluginPIDs()
	if len(pids) != 1 {
		v.t.Fatalf("%d plugin processes, want 1", len(pids))
	}
	return pids[0]
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// listensOn reports whether process pid itself holds a socket listening on
// TCP port, so that what answers at 127.0.0.1:port is that process: the
// socket's inode, from /proc/net/tcp and tcp6, among pid's descriptors.
func listensOn(pid, port int) bool {
	inodes := map[string]bool{}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(table)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			// sl local_address rem_address st ... inode; st 0A is LISTEN.
			f := strings.Fields(line)
			if len(f) < 10 || f[3] != "0A" {
				continue
			}
			i := strings.LastIndexByte(f[1], ':')
			if p, err := strconv.ParseUint(f[1][i+1:], 16, 16); err == nil && int(p) == port {
				inodes["socket:["+f[9]+"]"] = true
			}
		}
	}
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	for _, fd := range fds {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && inodes[link] {
			return true
		}
	}
	return false
}

// handedOut remembers every port given to a test, so parallel tests never
// get the same one even after its probe listener is closed.
var handedOut sync.Map

func freePort(t *testing.T) int {
	t.Helper()
	return freePorts(t, 1)
}

// freePortPair returns p such that p and p+1 are free.
func freePortPair(t *testing.T) int {
	t.Helper()
	return freePorts(t, 2)
}

func freePorts(t *testing.T, n int) int {
	t.Helper()
	for range 100 {
		first, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := first.Addr().(*net.TCPAddr).Port
		held := []net.Listener{first}
		ok := true
		for i := 0; i < n && ok; i++ {
			if _, taken := handedOut.Load(port + i); taken {
				ok = false
			} else if i > 0 {
				l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+i))
				ok = err == nil
				if ok {
					held = append(held, l)
				}
			}
		}
		for _, l := range held {
			l.Close()
		}
		if ok {
			for i := range n {
				handedOut.Store(port+i, struct{}{})
			}
			return port
		}
	}
	t.Fatalf("no %d consecutive free ports found", n)
	return 0
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// parallelReads runs n concurrent reads of path through the HTTP API.
func (v *vaultServer) parallelReads(path string, n int) ([]secretResponse, []error) {
	out := make([]secretResponse, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, resp, err := v.httpGet(path)
			if err == nil && status != http.StatusOK {
				err = fmt.Errorf("HTTP %d", status)
			}
			out[i], errs[i] = resp, err
		}()
	}
	wg.Wait()
	return out, errs
}
