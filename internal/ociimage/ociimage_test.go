package ociimage

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testSpec writes two stand-in binaries and returns a spec for them.
func testSpec(t *testing.T) Spec {
	t.Helper()
	dir := t.TempDir()
	binaries := map[string]string{}
	for _, platform := range []string{"linux/amd64", "linux/arm64"} {
		path := filepath.Join(dir, strings.ReplaceAll(platform, "/", "_"))
		data := make([]byte, 64<<10)
		if _, err := rand.Read(data); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o755); err != nil {
			t.Fatal(err)
		}
		binaries[platform] = path
	}
	return Spec{
		Name:     "vault-plugin-secrets-manus",
		Version:  "v1.2.3",
		Revision: "0123456789abcdef0123456789abcdef01234567",
		Source:   "https://github.com/manus-community/vault-plugin-secrets-manus",
		Licenses: "MPL-2.0",
		Created:  time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC),
		Binaries: binaries,
	}
}

func writeTestArchive(t *testing.T, s Spec) string {
	t.Helper()
	archive := filepath.Join(t.TempDir(), "image.tar")
	if err := WriteArchive(s, archive); err != nil {
		t.Fatal(err)
	}
	return archive
}

func TestArchiveChecksAndIsReproducible(t *testing.T) {
	s := testSpec(t)
	archive := writeTestArchive(t, s)
	summary, problems, err := Check(archive, s)
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) > 0 {
		t.Fatalf("the archive just written does not check:\n%s", strings.Join(problems, "\n"))
	}
	if summary.Tag != "1.2.3" || len(summary.Images) != 2 || summary.Images[0].Platform != "linux/amd64" {
		t.Fatalf("summary: %+v", summary)
	}
	sum, _, err := fileDigest(s.Binaries["linux/arm64"])
	if err != nil {
		t.Fatal(err)
	}
	if summary.Images[1].BinarySHA256 != sum {
		t.Fatalf("the arm64 image's label says %s, the binary is %s", summary.Images[1].BinarySHA256, sum)
	}

	again := writeTestArchive(t, s)
	first, _ := os.ReadFile(archive)
	second, _ := os.ReadFile(again)
	if !bytes.Equal(first, second) {
		t.Fatal("two builds from the same inputs differ")
	}
	described, err := Describe(archive)
	if err != nil {
		t.Fatal(err)
	}
	if described.Index != summary.Index || described.Images[0].Config != summary.Images[0].Config {
		t.Fatalf("Describe %+v and Check %+v disagree", described, summary)
	}
}

func TestLabelNames(t *testing.T) {
	s := testSpec(t)
	if got := s.SHA256Label(); got != "com.github.manus-community.vault-plugin-secrets-manus.binary.sha256" {
		t.Fatalf("sha256 label %q", got)
	}
	labels := s.Labels("abc")
	for key, want := range map[string]string{
		LabelVersion:  "v1.2.3",
		LabelRevision: s.Revision,
		LabelSource:   s.Source,
		LabelLicenses: "MPL-2.0",
		LabelCreated:  "2026-12-04T10:00:00Z",
	} {
		if labels[key] != want {
			t.Errorf("%s = %q, want %q", key, labels[key], want)
		}
	}
	if s.Path() != "/vault-plugin-secrets-manus" || s.Tag() != "1.2.3" {
		t.Fatalf("path %q, tag %q", s.Path(), s.Tag())
	}
}

// TestCheckFindsDifferences: an archive checked against other binaries or
// other labels than it was built from is reported, each way.
func TestCheckFindsDifferences(t *testing.T) {
	s := testSpec(t)
	archive := writeTestArchive(t, s)
	cases := []struct {
		name    string
		change  func(*Spec)
		problem string
	}{
		{"binaries swapped", func(w *Spec) {
			w.Binaries = map[string]string{"linux/amd64": s.Binaries["linux/arm64"], "linux/arm64": s.Binaries["linux/amd64"]}
		}, "linux/amd64: layer: vault-plugin-secrets-manus is 65536 bytes with SHA-256"},
		{"other version", func(w *Spec) { w.Version = "v1.2.4" }, `the layout tags the index "1.2.3", want "1.2.4"`},
		{"other revision", func(w *Spec) { w.Revision = "fedcba" }, "org.opencontainers.image.revision is"},
		{"other creation time", func(w *Spec) { w.Created = w.Created.Add(time.Second) }, "created 2026-12-04T10:00:00Z, want 2026-12-04T10:00:01Z"},
		{"platform missing", func(w *Spec) {
			w.Binaries = map[string]string{"linux/amd64": s.Binaries["linux/amd64"]}
		}, "the image has a linux/arm64 platform, which the release has no binary for"},
		{"other name", func(w *Spec) { w.Name = "other" }, `entrypoint ["/vault-plugin-secrets-manus"]`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want := s
			tc.change(&want)
			_, problems, err := Check(archive, want)
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Join(problems, "\n")
			if !strings.Contains(got, tc.problem) {
				t.Fatalf("want a problem containing %q, got:\n%s", tc.problem, got)
			}
			if !strings.Contains(got, "building it again") {
				t.Fatalf("a mismatch is not also reported as a different rebuild:\n%s", got)
			}
		})
	}
}

func TestOpenRefusesEscapingPaths(t *testing.T) {
	archive := filepath.Join(t.TempDir(), "evil.tar")
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	_ = tw.WriteHeader(&tar.Header{Name: "../escape", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1})
	_, _ = tw.Write([]byte("x"))
	_ = tw.Close()
	if err := os.WriteFile(archive, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(archive); err == nil || !strings.Contains(err.Error(), "leaves the archive") {
		t.Fatalf("got %v, want a refusal", err)
	}
}
