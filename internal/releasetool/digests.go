package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/manus-community/vault-plugin-secrets-manus/internal/ociimage"
)

// runDigests writes (with -check, checks) the list of the image archive's
// digests, <archive without .tar>.digests. It is a release file like any
// other, so SHA256SUMS lists it and SHA256SUMS.sig covers it: what an
// operator pulls from a registry can be checked against the signed
// release, although the registry never sees the archive's own bytes.
func runDigests(args []string) error {
	fs := flag.NewFlagSet("digests", flag.ContinueOnError)
	out := fs.String("o", "", "the digests file to write (or check)")
	check := fs.Bool("check", false, "check the existing file instead of writing it")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() != 1 {
		return errors.New("need -o and one image archive")
	}
	archive := fs.Arg(0)
	summary, err := ociimage.Describe(archive)
	if err != nil {
		return err
	}
	want := imageDigests(filepath.Base(archive), summary)
	if !*check {
		return os.WriteFile(*out, []byte(want), 0o644) //nolint:gosec // a public release file
	}
	got, err := os.ReadFile(*out)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, []byte(want)) {
		return fmt.Errorf("%s does not list the digests of %s; want:\n%s", *out, archive, want)
	}
	fmt.Printf("%s: the digests of %s's index and its %d images\n", *out, archive, len(summary.Images))
	return nil
}

// imageDigests renders the digests file: a comment naming the archive and
// tag, then one "<digest>  <what>" line for the index and for each
// platform's manifest and config, in the layout of SHA256SUMS.
func imageDigests(archive string, s *ociimage.Summary) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# OCI image digests of %s, tag %s; this file is listed in SHA256SUMS\n", archive, s.Tag)
	fmt.Fprintf(&b, "%s  index\n", s.Index)
	for _, img := range s.Images {
		fmt.Fprintf(&b, "%s  %s manifest\n", img.Manifest, img.Platform)
		fmt.Fprintf(&b, "%s  %s config\n", img.Config, img.Platform)
	}
	return b.String()
}
