package main

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/manus-community/vault-plugin-secrets-manus/internal/ociimage"
)

// runImage writes the release's container image archive (with -check,
// checks the archive already written): one image per Linux platform
// holding only that platform's release binary, in one multi-platform
// index, as an OCI image layout in a tar file.
func runImage(args []string) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	out := fs.String("o", "", "the image archive to write (or check)")
	check := fs.Bool("check", false, "check the existing archive instead of writing it")
	name := fs.String("name", "", "the binary's name in the image (it sits at /NAME)")
	version := fs.String("version", "", "release version, with the leading v")
	revision := fs.String("revision", "", "the commit the release was built from")
	source := fs.String("source", "", "the repository URL")
	licenses := fs.String("licenses", "MPL-2.0", "SPDX license expression")
	created := fs.String("created", "", "creation time, Unix seconds (SOURCE_DATE_EPOCH)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || *name == "" || *version == "" || *revision == "" || *source == "" || *created == "" || fs.NArg() == 0 {
		return errors.New("need -o, -name, -version, -revision, -source, -created and at least one OS/ARCH=BINARY")
	}
	epoch, err := strconv.ParseInt(*created, 10, 64)
	if err != nil {
		return fmt.Errorf("-created %q is not Unix seconds: %w", *created, err)
	}
	spec := ociimage.Spec{
		Name: *name, Version: *version, Revision: *revision, Source: *source, Licenses: *licenses,
		Created:  time.Unix(epoch, 0).UTC(),
		Binaries: map[string]string{},
	}
	for _, arg := range fs.Args() {
		platform, binary, ok := strings.Cut(arg, "=")
		if !ok || !strings.HasPrefix(platform, "linux/") {
			return fmt.Errorf("%q is not linux/ARCH=BINARY", arg)
		}
		spec.Binaries[platform] = binary
	}
	if !*check {
		return ociimage.WriteArchive(spec, *out)
	}
	summary, problems, err := ociimage.Check(*out, spec)
	if err != nil {
		return err
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s:\n  %s", *out, strings.Join(problems, "\n  "))
	}
	fmt.Printf("%s: %s:%s, index %s, %d platforms, each holding only its release binary at %s, labels in order, reproducible\n",
		*out, *name, summary.Tag, summary.Index, len(summary.Images), spec.Path())
	return nil
}
