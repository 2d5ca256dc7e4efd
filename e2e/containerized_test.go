//go:build e2e && containerized

package e2e

// The release image as Kubernetes operators and Vault's containerized
// plugins use it. Run by `make test-containerized` (scripts/
// test-containerized.sh), which builds the release, installs Docker, gVisor
// runsc and skopeo, starts dockerd with the runsc runtime if it is not
// running, and stops everything it started afterwards; not part of
// `make test`, since it needs root.

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/manus-community/vault-plugin-secrets-manus/internal/ociimage"
	"github.com/manus-community/vault-plugin-secrets-manus/internal/standin"
)

// release is what `make release` wrote into dist/.
type release struct {
	version string            // 0.1.0
	archive string            // the image archive
	sums    map[string]string // file name → SHA-256, from SHA256SUMS
}

func loadRelease(t *testing.T) release {
	t.Helper()
	dist := filepath.Join(repoRoot, "dist")
	version := strings.TrimPrefix(pluginVersion, "v")
	r := release{
		version: version,
		archive: filepath.Join(dist, fmt.Sprintf("%s_%s_oci-image.tar", pluginName, version)),
		sums:    map[string]string{},
	}
	f, err := os.Open(filepath.Join(dist, "SHA256SUMS"))
	if err != nil {
		t.Fatalf("no release to test (run make release first): %v", err)
	}
	defer f.Close()
	lines := bufio.NewScanner(f)
	for lines.Scan() {
		sum, file, ok := strings.Cut(lines.Text(), "  ")
		if ok {
			r.sums[file] = sum
		}
	}
	if r.sums[filepath.Base(r.archive)] == "" {
		t.Fatalf("SHA256SUMS does not list %s", filepath.Base(r.archive))
	}
	return r
}

// binarySum is the SHA-256 SHA256SUMS lists for a platform's binary.
func (r release) binarySum(t *testing.T, platform string) string {
	t.Helper()
	sum := r.sums[fmt.Sprintf("%s_%s_%s", pluginName, r.version, strings.ReplaceAll(platform, "/", "_"))]
	if sum == "" {
		t.Fatalf("SHA256SUMS lists no %s binary", platform)
	}
	return sum
}

// TestContainerizedPlugin pushes the release image to a registry on
// loopback with skopeo (as docs/kubernetes.md says), then uses it each way
// the docs describe: OpenBao's extraction of the binary, the Helm init
// container's --copy-to, and Vault's containerized plugins under gVisor
// runsc, through which it runs the core checks against a Manus stand-in
// reached over TLS from the container.
func TestContainerizedPlugin(t *testing.T) {
	rel := loadRelease(t)
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(reg.Close)
	host := strings.TrimPrefix(reg.URL, "http://")
	repo := host + "/" + pluginName

	for _, tag := range []string{rel.version, "v" + rel.version} {
		command(t, "skopeo", "copy", "--quiet", "--multi-arch", "all", "--dest-tls-verify=false",
			fmt.Sprintf("oci-archive:%s:%s", rel.archive, rel.version), fmt.Sprintf("docker://%s:%s", repo, tag))
	}
	summary, err := ociimage.Describe(rel.archive)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("OpenBao extraction", func(t *testing.T) {
		// What OpenBao's declarative plugins do with image, version,
		// binary_name and sha256sum: pull image:version for the platform,
		// take binary_name from the root of the image's file system, check
		// its SHA-256.
		for _, platform := range []string{"linux/amd64", "linux/arm64"} {
			got := extractFromRegistry(t, repo+":v"+rel.version, platform, pluginName)
			if got != rel.binarySum(t, platform) {
				t.Errorf("%s: the binary pulled from the registry has SHA-256 %s, SHA256SUMS says %s", platform, got, rel.binarySum(t, platform))
			}
		}
		ref, err := name.ParseReference(repo+":"+rel.version, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		desc, err := remote.Head(ref)
		if err != nil {
			t.Fatal(err)
		}
		if desc.Digest != summary.Index {
			t.Errorf("the registry serves index %s, the release notes name %s", desc.Digest, summary.Index)
		}
	})

	platform := "linux/" + runtime.GOARCH
	pulled := repo + ":" + rel.version
	command(t, "docker", "pull", "--quiet", pulled)
	local := pluginName + ":" + rel.version // Vault refuses an -oci_image with a ':' (the registry's port)
	command(t, "docker", "tag", pulled, local)
	t.Cleanup(func() { _, _ = run("docker", "rmi", pulled, local) })
	imageID := strings.TrimSpace(command(t, "docker", "image", "inspect", "--format", "{{.Id}}", local))
	var configDigest string
	for _, img := range summary.Images {
		if img.Platform == platform {
			configDigest = img.Config.String()
		}
	}
	if imageID != configDigest {
		t.Fatalf("docker pulled image ID %s, the release notes give %s as the %s config digest", imageID, configDigest, platform)
	}
	t.Cleanup(func() { removeContainersOf(imageID) })

	t.Run("Helm init container", func(t *testing.T) {
		// The init container's command, as the chart's vault user, into an
		// empty directory as an emptyDir volume is.
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		out := command(t, "docker", "run", "--rm", "--user", "100:1000", "-v", dir+":/usr/local/libexec/vault",
			local, "--copy-to", "/usr/local/libexec/vault")
		want := rel.binarySum(t, platform)
		data, err := os.ReadFile(filepath.Join(dir, pluginName))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		if got := hex.EncodeToString(sum[:]); got != want || !strings.Contains(out, "sha256 "+want) {
			t.Fatalf("--copy-to wrote a binary with SHA-256 %s and said %q; SHA256SUMS says %s", got, out, want)
		}
	})

	t.Run("Vault containerized plugin", func(t *testing.T) {
		testContainerizedVault(t, local, imageID)
	})
}

// testContainerizedVault registers the image as a containerized plugin
// under runsc and runs the core checks through it.
func testContainerizedVault(t *testing.T, image, imageID string) {
	bridge := dockerBridgeIP(t)
	manus, caPEM := startTLSManus(t, bridge)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	writeFile(t, caFile, string(caPEM))

	v := startVault(t)
	imageName, tag, _ := strings.Cut(image, ":")
	v.mustVault("plugin", "runtime", "register", "-type=container", "-oci_runtime=runsc", "runsc")
	v.mustVault("plugin", "register", "-oci_image="+imageName, "-runtime=runsc",
		"-sha256="+strings.TrimPrefix(imageID, "sha256:"), "-version=v"+tag, "secret", pluginName)
	v.mount("manus")
	// A verified write: the plugin in the container mints over TLS, trusting
	// the stand-in's CA through ca_cert (the image has no CA bundle; the
	// binary's fallback public roots do not include it).
	v.mustVault("write", "manus/config", "client_id="+testClientID, "client_secret="+testClientSecret,
		"base_url="+manus.url, "ca_cert=@"+caFile)
	if manus.Mints() != 1 {
		t.Fatalf("the verified config write minted %d times, want 1", manus.Mints())
	}
	running := strings.Fields(command(t, "docker", "ps", "--quiet", "--filter", "ancestor="+imageID))
	if len(running) != 1 {
		t.Fatalf("%d containers run the plugin image, want 1", len(running))
	}
	if rt := strings.TrimSpace(command(t, "docker", "inspect", "--format", "{{.HostConfig.Runtime}}", running[0])); rt != "runsc" {
		t.Fatalf("the plugin's container runs under %q, want runsc", rt)
	}
	var info struct {
		OCIImage string `json:"oci_image"`
		Runtime  string `json:"runtime"`
		Version  string `json:"version"`
	}
	v.vaultJSON(&info, "plugin info", "-version=v"+tag, "secret", pluginName)
	if info.OCIImage != imageName || info.Runtime != "runsc" || info.Version != "v"+tag {
		t.Fatalf("vault plugin info: %+v", info)
	}
	if n := v.pluginProcesses(); n != 0 {
		t.Fatalf("%d plugin processes run on the host; the plugin should run only in its container", n)
	}

	first := v.readSecret("manus/token")
	second := v.readSecret("manus/token")
	issued := manus.Issued()
	if first.LeaseID == "" || first.Renewable || first.LeaseDuration < 3500 ||
		first.Data["access_token"] != issued[0] || second.Data["access_token"] != issued[0] || manus.Mints() != 1 {
		t.Fatalf("leased reads: lease %q renewable %t for %ds, same token %t, %d mints; want two non-renewable leases on the one token",
			first.LeaseID, first.Renewable, first.LeaseDuration, first.Data["access_token"] == second.Data["access_token"], manus.Mints())
	}
	if n := v.leaseCount("manus/token/"); n != 2 {
		t.Fatalf("%d leases after two reads, want 2", n)
	}
	v.mustVault("lease", "revoke", first.LeaseID)
	if n := v.leaseCount("manus/token/"); n != 1 {
		t.Fatalf("%d leases after revoking one of two, want 1", n)
	}

	v.mustVault("write", "manus/config", "leased_reads=false")
	plain := v.readSecret("manus/token")
	if plain.LeaseID != "" || plain.Data["access_token"] != issued[0] || plain.Data["ttl"] == nil || manus.Mints() != 1 {
		t.Fatalf("non-leased read: lease %q, same token %t, ttl %v, %d mints", plain.LeaseID, plain.Data["access_token"] == issued[0], plain.Data["ttl"], manus.Mints())
	}
	if strings.Contains(v.log(), testClientSecret) {
		t.Fatal("the client secret is in the Vault log")
	}
}

// extractFromRegistry pulls ref for platform and returns the SHA-256 of the
// regular file at the root of the image's file system named binaryName.
func extractFromRegistry(t *testing.T, ref, platform, binaryName string) string {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	p, err := v1.ParsePlatform(platform)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r, remote.WithPlatform(*p))
	if err != nil {
		t.Fatal(err)
	}
	fsTar := mutate.Extract(img)
	defer fsTar.Close()
	tr := tar.NewReader(fsTar)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			t.Fatalf("%s (%s) has no %s at its root", ref, platform, binaryName)
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimPrefix(hdr.Name, "/") == binaryName && hdr.Typeflag == tar.TypeReg {
			h := sha256.New()
			if _, err := io.Copy(h, tr); err != nil {
				t.Fatal(err)
			}
			return hex.EncodeToString(h.Sum(nil))
		}
	}
}

// dockerBridgeIP is the host's address on Docker's default bridge, which
// the plugin's container reaches the host by.
func dockerBridgeIP(t *testing.T) net.IP {
	t.Helper()
	iface, err := net.InterfaceByName("docker0")
	if err != nil {
		t.Fatalf("no docker0 bridge: %v", err)
	}
	addrs, err := iface.Addrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if ipnet, ok := a.(*net.IPNet); ok && ipnet.IP.To4() != nil {
			return ipnet.IP
		}
	}
	t.Fatal("docker0 has no IPv4 address")
	return nil
}

// startTLSManus runs the stand-in over TLS on ip, with a certificate from
// a CA made for this test, and returns it with the CA's PEM.
func startTLSManus(t *testing.T, ip net.IP) (*fakeManus, []byte) {
	t.Helper()
	ca, err := standin.NewTestCA("manus e2e test CA")
	if err != nil {
		t.Fatal(err)
	}
	tlsConfig, err := ca.ServerConfig(ip.String())
	if err != nil {
		t.Fatal(err)
	}
	s := standin.New()
	s.AddClient(testClientID, testClientSecret)
	server := httptest.NewUnstartedServer(s)
	server.Listener.Close()
	if server.Listener, err = net.Listen("tcp", net.JoinHostPort(ip.String(), "0")); err != nil {
		t.Fatal(err)
	}
	server.TLS = tlsConfig
	server.StartTLS()
	t.Cleanup(func() {
		server.Close()
		if v := s.Violations(); len(v) > 0 {
			t.Errorf("the plugin broke the Manus token endpoint contract: %q", v)
		}
	})
	return &fakeManus{Server: s, url: server.URL}, []byte(ca.PEM)
}

// removeContainersOf removes, by ID, any container of the image left
// behind (Vault removes its plugin containers when it stops cleanly).
func removeContainersOf(imageID string) {
	out, _ := run("docker", "ps", "--all", "--quiet", "--filter", "ancestor="+imageID)
	for _, id := range strings.Fields(out) {
		_, _ = run("docker", "rm", "--force", id)
	}
}

// command runs a command and fails the test if it fails.
func command(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := run(name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func run(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			stderr = string(exit.Stderr)
		}
		return string(out), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, stderr)
	}
	return string(out), nil
}
