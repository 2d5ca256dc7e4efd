package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// installedName is the file name --copy-to gives the binary: the plugin's
// name, which is also the default command `vault plugin register` runs.
const installedName = "vault-plugin-secrets-manus"

// copySelf copies the running binary into dir as installedName, mode 0755,
// through a temporary file and a rename, so Vault never sees half a binary,
// and reports the copy's SHA-256 (what `vault plugin register -sha256`
// wants). It lets the container image, which holds nothing but this
// binary, install it as a Kubernetes init container:
// `vault-plugin-secrets-manus --copy-to /usr/local/libexec/vault`.
func copySelf(dir string, report io.Writer) error {
	src, err := os.Executable()
	if err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(dir, "."+installedName+"-*")
	if err != nil {
		return fmt.Errorf("--copy-to %s: %w", dir, err)
	}
	defer os.Remove(tmp.Name()) // a no-op after the rename
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(tmp, h), in); err != nil {
		return errors.Join(err, tmp.Close())
	}
	if err := errors.Join(tmp.Chmod(0o755), tmp.Sync(), tmp.Close()); err != nil {
		return err
	}
	dst := filepath.Join(dir, installedName)
	// The directory is the operator's own argument, taken as given.
	if err := os.Rename(tmp.Name(), dst); err != nil { //nolint:gosec // G703: see above
		return err
	}
	_, err = fmt.Fprintf(report, "copied %s to %s: sha256 %s\n", src, dst, hex.EncodeToString(h.Sum(nil)))
	return err
}
