//go:build e2e

package e2e

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
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
