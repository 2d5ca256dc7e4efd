//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/manus-community/vault-plugin-secrets-manus/internal/standin"
)

// nextVersion is the plugin version one patch above pluginVersion.
func nextVersion(t *testing.T) string {
	t.Helper()
	parts := strings.Split(strings.TrimPrefix(pluginVersion, "v"), ".")
	if len(parts) != 3 {
		t.Fatalf("VERSION %q is not MAJOR.MINOR.PATCH", pluginVersion)
	}
	patch, err := strconv.Atoi(parts[2])
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("v%s.%s.%d", parts[0], parts[1], patch+1)
}

// buildNext builds the plugin stamped with version under another file name
// in the plugin directory, as an operator installs a new release beside the
// running one, and returns its file name and sha256.
func buildNext(t *testing.T, version string) (string, string) {
	t.Helper()
	name := pluginName + "-" + version
	sha, err := buildPluginBinary(filepath.Join(pluginDir, name), version)
	if err != nil {
		t.Fatal(err)
	}
	return name, sha
}

// TestUpgradeToNextVersion follows docs/upgrading.md's steps: register the
// next version beside the current one, tune the mount to it, reload. The
// token read keeps working (with the persisted token), the config survives,
// and rolling back works the same way.
func TestUpgradeToNextVersion(t *testing.T) {
	t.Parallel()
	next := nextVersion(t)
	nextCommand, nextSHA := buildNext(t, next)

	v := startVault(t)
	manus := startManus(t)
	v.registerPlugin()
	v.mustVault("plugin", "register", "-sha256="+nextSHA, "-version="+next, "-command="+nextCommand, "secret", pluginName)
	// With two versions registered, enable picks the highest unless pinned.
	v.mustVault("secrets", "enable", "-path=manus", "-plugin-version="+pluginVersion, pluginName)
	v.configure("manus", manus)
	configBefore := v.mustVault("read", "-format=json", "-field=data", "manus/config")
	token := v.mustReadToken("manus").Data["access_token"]
	v.expectRunning(t, "manus/", pluginVersion, pluginSHA256)

	v.mustVault("secrets", "tune", "-plugin-version="+next, "manus/")
	v.reloadPlugin()
	v.expectRunning(t, "manus/", next, nextSHA)
	if got := v.mustReadToken("manus").Data["access_token"]; got != token || manus.Mints() != 1 {
		t.Fatalf("after the upgrade: same token %v, mints %d; want the persisted token", got == token, manus.Mints())
	}
	if after := v.mustVault("read", "-format=json", "-field=data", "manus/config"); after != configBefore {
		t.Fatalf("the config changed across the upgrade:\n%s\n%s", configBefore, after)
	}
	var info struct {
		Version string `json:"version"`
	}
	v.vaultJSON(&info, "plugin info", "-version="+next, "secret", pluginName)
	if info.Version != next {
		t.Fatalf("plugin info reports %q", info.Version)
	}

	// Roll back the same way.
	v.mustVault("secrets", "tune", "-plugin-version="+pluginVersion, "manus/")
	v.reloadPlugin()
	v.expectRunning(t, "manus/", pluginVersion, pluginSHA256)
	if v.mustReadToken("manus").Data["access_token"] != token {
		t.Fatal("after rolling back the token read changed")
	}
}

// expectRunning checks the version and checksum a mount runs.
func (v *vaultServer) expectRunning(t *testing.T, mount, version, sha string) {
	t.Helper()
	var mounts map[string]struct {
		RunningPluginVersion string `json:"running_plugin_version"`
		RunningSha256        string `json:"running_sha256"`
	}
	v.vaultJSON(&mounts, "secrets list", "-detailed")
	got := mounts[mount]
	if got.RunningPluginVersion != version || got.RunningSha256 != sha {
		t.Fatalf("%s runs %s (sha256 %.12s), want %s (sha256 %.12s)", mount, got.RunningPluginVersion, got.RunningSha256, version, sha)
	}
}

// TestUpgradeStepsAsDocumented runs the sh blocks of docs/upgrading.md's
// Upgrading section as written, in one shell, against a Vault whose plugin
// was installed as the README says: registered with -env HTTPS_PROXY, and
// configured for a Manus it reaches only through that proxy (an address in
// TEST-NET-1, which nothing routes; the proxy tunnels it to the stand-in).
// Between blocks it checks what the page says they do, and that every
// version the page registers sends the plugin's requests through the proxy.
// Only the paths, versions and proxy address are replaced.
func TestUpgradeStepsAsDocumented(t *testing.T) {
	t.Parallel()
	oldVersion, newVersion := pluginVersion, nextVersion(t)
	download, plugins := t.TempDir(), t.TempDir()
	newRelease := fmt.Sprintf("%s_%s_linux_amd64", pluginName, strings.TrimPrefix(newVersion, "v"))
	newSHA, err := buildPluginBinary(filepath.Join(download, newRelease), newVersion)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(download, "SHA256SUMS"), newSHA+"  "+newRelease+"\n")
	copyFile(t, filepath.Join(pluginDir, pluginName), filepath.Join(plugins, pluginName))

	manus, manusAddr, caPEM := startUnroutableManus(t)
	proxy, proxyURL := startProxy(t, manusAddr)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	writeFile(t, caFile, caPEM)

	// Installed as the README says, with the proxy setting of its step 3.
	v := startVaultWithPlugins(t, plugins)
	v.mustVault("plugin", "register", "-sha256="+pluginSHA256, "-version="+oldVersion,
		"-env", "HTTPS_PROXY="+proxyURL, "-env", "MANUS_ALLOWED_BASE_URLS="+manus.url, "secret", pluginName)
	mounts := []string{"manus", "manus-sandbox"}
	for _, m := range mounts {
		v.mount(m)
		v.mustVault("write", m+"/config", "client_id="+testClientID, "client_secret="+testClientSecret,
			"base_url="+manus.url, "ca_cert=@"+caFile)
	}
	if len(proxy.Hosts()) != len(mounts) || manus.Mints() != len(mounts) {
		t.Fatalf("before the upgrade: %d CONNECTs, %d mints; want one each per mount (the verified config writes)", len(proxy.Hosts()), manus.Mints())
	}
	token := v.mustReadToken("manus").Data["access_token"]
	v.expectBaseURLRestricted("as installed")

	blocks := upgradeBlocks(t,
		"0.1.0", strings.TrimPrefix(oldVersion, "v"),
		"0.2.0", strings.TrimPrefix(newVersion, "v"),
		"sudo ", "",
		"/etc/vault/plugins", plugins,
		"http://proxy:3128", proxyURL,
		"MANUS_ALLOWED_BASE_URLS=https://api.manus.im", "MANUS_ALLOWED_BASE_URLS="+manus.url,
	)
	var connects int
	steps := []struct {
		has   string // in the block, so that a changed page fails here
		check func(out string)
	}{
		{`NEW_SHA256=$(sha256sum`, func(out string) {
			if !strings.Contains(out, newVersion) || !strings.Contains(out, newSHA+"  "+newRelease) {
				t.Fatalf("step 1 printed neither the new version %s nor its SHA256SUMS line:\n%s", newVersion, out)
			}
		}},
		{`-command="vault-plugin-secrets-manus-v${NEW}"`, func(out string) {
			if !strings.Contains(out, oldVersion) || !strings.Contains(out, newVersion) {
				t.Fatalf("step 2 lists not both versions:\n%s", out)
			}
			v.expectRunning(t, "manus/", oldVersion, pluginSHA256) // nothing moves before the reload
			// The page: with several versions registered, enable picks the highest.
			v.mount("manus-enabled-now")
			v.expectRunning(t, "manus-enabled-now/", newVersion, newSHA)
			v.mustVault("secrets", "disable", "manus-enabled-now")
			connects = len(proxy.Hosts())
		}},
		{`vault secrets tune -plugin-version="v${NEW}"`, func(string) {
			for _, m := range mounts {
				v.expectRunning(t, m+"/", newVersion, newSHA)
			}
		}},
		{`probe=true`, func(out string) {
			if strings.Count(out, newVersion) < len(mounts) || !regexp.MustCompile(`probe_ok\s+true`).MatchString(out) {
				t.Fatalf("step 4 shows not %s on each mount and probe_ok true:\n%s", newVersion, out)
			}
			if len(proxy.Hosts()) <= connects {
				t.Fatal("after the upgrade the plugin's requests no longer go through the proxy: the new version lost the -env")
			}
			if got := v.mustReadToken("manus").Data["access_token"]; got != token || manus.Mints() != len(mounts) {
				t.Fatalf("after the upgrade: same token %t, %d mints; want the persisted token", got == token, manus.Mints())
			}
			v.expectBaseURLRestricted("after the upgrade")
		}},
		{`vault plugin deregister -version="v${OLD}"`, func(out string) {
			if strings.Contains(out, oldVersion) {
				t.Fatalf("step 5 still lists %s:\n%s", oldVersion, out)
			}
			if _, err := v.vault("plugin", "info", "-version="+oldVersion, "secret", pluginName); err == nil {
				t.Fatalf("%s is still in the catalog after step 5", oldVersion)
			}
		}},
		{`vault secrets tune -plugin-version="v${OLD}"`, func(string) {
			for _, m := range mounts {
				v.expectRunning(t, m+"/", oldVersion, pluginSHA256)
			}
			connects = len(proxy.Hosts())
			v.mustVault("read", "manus/status", "probe=true")
			if len(proxy.Hosts()) <= connects {
				t.Fatal("after the rollback the plugin's requests no longer go through the proxy: the re-registered version lost the -env")
			}
			if v.mustReadToken("manus").Data["access_token"] != token {
				t.Fatal("after the rollback the token read changed")
			}
			v.expectBaseURLRestricted("after the rollback")
		}},
	}
	if len(blocks) != len(steps) {
		t.Fatalf("docs/upgrading.md's Upgrading section has %d sh blocks, this test knows %d: update it with the page", len(blocks), len(steps))
	}
	for i, step := range steps {
		if !strings.Contains(blocks[i], step.has) {
			t.Fatalf("sh block %d of docs/upgrading.md no longer has %q: update this test with the page:\n%s", i+1, step.has, blocks[i])
		}
	}

	// The page says the rollback block stands alone, for another shell.
	blocks[len(blocks)-1] = "unset OLD NEW NEW_SHA256 mounts\n" + blocks[len(blocks)-1]

	binDir := t.TempDir() // the page's commands call `vault`
	if err := os.Symlink(vaultBin, filepath.Join(binDir, "vault")); err != nil {
		t.Fatal(err)
	}
	sh := startStepper(t, download, append(v.env(), "PATH="+binDir+string(os.PathListSeparator)+os.Getenv("PATH")), blocks)
	for i, step := range steps {
		out := sh.next()
		t.Logf("docs/upgrading.md block %d:\n%s\n%s", i+1, blocks[i], out)
		step.check(out)
	}
	sh.finish()
}

// expectBaseURLRestricted checks that the running version has the
// registration's MANUS_ALLOWED_BASE_URLS: a config write with another
// base_url answers 400 naming it.
func (v *vaultServer) expectBaseURLRestricted(when string) {
	v.t.Helper()
	_, err := v.vault("write", "manus-sandbox/config", "client_id="+testClientID, "client_secret="+testClientSecret,
		"base_url=https://manus.example", "ca_cert=")
	if err == nil || !strings.Contains(err.Error(), "MANUS_ALLOWED_BASE_URLS") {
		v.t.Fatalf("%s, a config write with a base_url outside MANUS_ALLOWED_BASE_URLS was not refused for it: %v", when, err)
	}
}

// upgradeBlocks returns the sh blocks of docs/upgrading.md's Upgrading
// section (up to the next level-2 heading), unindented, with the old, new
// string pairs replaced in one pass; an old string the section lacks fails
// the test.
func upgradeBlocks(t *testing.T, oldnew ...string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "docs", "upgrading.md"))
	if err != nil {
		t.Fatal(err)
	}
	section, ok := strings.CutPrefix(string(data)[strings.Index(string(data), "\n## Upgrading\n")+1:], "## Upgrading\n")
	if !ok {
		t.Fatal("docs/upgrading.md has no ## Upgrading section")
	}
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	for i := 0; i < len(oldnew); i += 2 {
		if !strings.Contains(section, oldnew[i]) {
			t.Fatalf("docs/upgrading.md's Upgrading section no longer has %q: update this test with the page", oldnew[i])
		}
	}
	section = strings.NewReplacer(oldnew...).Replace(section)
	var blocks []string
	fence := regexp.MustCompile("(?ms)^( *)```sh\n(.*?)^ *```$")
	for _, m := range fence.FindAllStringSubmatch(section, -1) {
		var lines []string
		for _, line := range strings.Split(strings.TrimSuffix(m[2], "\n"), "\n") {
			lines = append(lines, strings.TrimPrefix(line, m[1]))
		}
		blocks = append(blocks, strings.Join(lines, "\n"))
	}
	return blocks
}

// stepper is one bash running blocks of commands in turn, stopping after
// each until told to go on, so that a test can look between them.
type stepper struct {
	t      *testing.T
	cmd    *exec.Cmd
	lines  *bufio.Scanner
	goOn   *os.File
	step   int
	cancel context.CancelFunc
}

// startStepper starts bash in dir with env, running blocks under set -eu
// -o pipefail, one at a time: after block i it prints a marker line and
// waits for a line on its file descriptor 3.
func startStepper(t *testing.T, dir string, env, blocks []string) *stepper {
	t.Helper()
	var script strings.Builder
	script.WriteString("set -euo pipefail\n")
	for i, block := range blocks {
		fmt.Fprintf(&script, "%s\nprintf '\\n@@ block %d done\\n'\nread -r _ <&3\n", block, i+1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	out, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	goOnR, goOn, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, "bash", "-c", script.String())
	cmd.Dir, cmd.Env = dir, env
	cmd.Stdout, cmd.Stderr = outW, outW
	cmd.ExtraFiles = []*os.File{goOnR}
	cmd.SysProcAttr = processAttrs()
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	outW.Close()
	goOnR.Close()
	s := &stepper{t: t, cmd: cmd, lines: bufio.NewScanner(out), goOn: goOn, cancel: cancel}
	t.Cleanup(func() {
		goOn.Close()
		cancel()
		_ = cmd.Wait()
		out.Close()
	})
	return s
}

// next lets the previous block's shell go on (unless it is the first) and
// returns the output of the next block; the test fails if bash stops
// before the block's end.
func (s *stepper) next() string {
	s.t.Helper()
	if s.step > 0 {
		if _, err := io.WriteString(s.goOn, "\n"); err != nil {
			s.t.Fatal(err)
		}
	}
	s.step++
	marker := fmt.Sprintf("@@ block %d done", s.step)
	var out strings.Builder
	for s.lines.Scan() {
		if s.lines.Text() == marker {
			return out.String()
		}
		out.WriteString(s.lines.Text() + "\n")
	}
	err := s.cmd.Wait()
	s.t.Fatalf("block %d failed (%v):\n%s", s.step, err, out.String())
	return ""
}

// finish lets the last block's shell end and fails the test unless it
// ends well.
func (s *stepper) finish() {
	s.t.Helper()
	if _, err := io.WriteString(s.goOn, "\n"); err != nil {
		s.t.Fatal(err)
	}
	s.goOn.Close()
	if err := s.cmd.Wait(); err != nil {
		s.t.Fatalf("bash after the last block: %v", err)
	}
}

// startUnroutableManus runs the stand-in over TLS on loopback with a
// certificate for 192.0.2.1 (TEST-NET-1, which nothing routes), from a CA
// made for the test. It returns the stand-in, whose url is
// https://192.0.2.1 (reachable only through the proxy), the
// address it really listens on, and the CA's PEM for ca_cert.
func startUnroutableManus(t *testing.T) (*fakeManus, string, string) {
	t.Helper()
	const ip = "192.0.2.1"
	ca, err := standin.NewTestCA("manus e2e proxy test CA")
	if err != nil {
		t.Fatal(err)
	}
	tlsConfig, err := ca.ServerConfig(ip)
	if err != nil {
		t.Fatal(err)
	}
	s := standin.New()
	s.AddClient(testClientID, testClientSecret)
	server := httptest.NewUnstartedServer(s)
	server.TLS = tlsConfig
	server.StartTLS()
	t.Cleanup(func() {
		server.Close()
		if v := s.Violations(); len(v) > 0 {
			t.Errorf("the plugin broke the Manus token endpoint contract: %q", v)
		}
	})
	return &fakeManus{Server: s, url: "https://" + ip}, server.Listener.Addr().String(), ca.PEM
}

// copyFile copies an executable.
func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o755); err != nil {
		t.Fatal(err)
	}
}
