package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCopySelf copies the running binary (this test's) and checks the copy
// is byte-identical, executable, alone in the directory, and reported with
// its SHA-256; a second copy replaces the first.
func TestCopySelf(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(want)
	dir := t.TempDir()
	for range 2 {
		var report bytes.Buffer
		if err := copySelf(dir, &report); err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(dir, installedName)
		got, err := os.ReadFile(dst)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("the copy differs from the binary (%v)", err)
		}
		if info, _ := os.Stat(dst); info.Mode().Perm() != 0o755 {
			t.Fatalf("the copy is mode %v, want 0755", info.Mode().Perm())
		}
		if !strings.Contains(report.String(), "sha256 "+hex.EncodeToString(sum[:])) {
			t.Fatalf("report %q lacks the SHA-256", report.String())
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("%d files in the directory, want only the binary", len(entries))
	}
}

func TestCopySelfIntoAMissingDirectory(t *testing.T) {
	err := copySelf(filepath.Join(t.TempDir(), "missing"), &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "--copy-to") {
		t.Fatalf("got %v, want an error naming --copy-to", err)
	}
}
