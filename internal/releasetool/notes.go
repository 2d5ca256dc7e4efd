package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/manus-community/vault-plugin-secrets-manus/internal/ociimage"
)

// runNotes writes the release notes: what changed (from the CHANGELOG), and
// the provenance an operator can check offline: the commit, the Go version
// and the checksums of every file in the release.
func runNotes(args []string) error {
	fs := flag.NewFlagSet("notes", flag.ContinueOnError)
	version := fs.String("version", "", "release version, without the leading v (as in VERSION)")
	changelog := fs.String("changelog", "CHANGELOG.md", "the changelog to take the notes from")
	sums := fs.String("sums", "", "the release's SHA256SUMS")
	commit := fs.String("commit", "unknown", "the commit the release was built from")
	goVersion := fs.String("goversion", "", "the Go toolchain that built it (go env GOVERSION)")
	image := fs.String("image", "", "the release's container image archive, if any")
	out := fs.String("o", "", "the notes to write")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *version == "" || *sums == "" || *goVersion == "" || *out == "" {
		return errors.New("need -version, -sums, -goversion and -o")
	}
	log, err := os.ReadFile(*changelog)
	if err != nil {
		return err
	}
	checksums, err := os.ReadFile(*sums)
	if err != nil {
		return err
	}
	var img *imageNotes
	if *image != "" {
		summary, err := ociimage.Describe(*image)
		if err != nil {
			return err
		}
		img = &imageNotes{archive: filepath.Base(*image), summary: summary}
	}
	notes := releaseNotes(*version, string(log), string(checksums), *commit, *goVersion, img)
	return os.WriteFile(*out, []byte(notes), 0o644) //nolint:gosec // a public release file
}

// imageNotes is what the notes say of the container image archive.
type imageNotes struct {
	archive string
	summary *ociimage.Summary
}

// releaseNotes renders the notes. The changes are the CHANGELOG section of
// the version; entries still under [Unreleased] are built into this binary
// too (VERSION was not bumped), so they are included and said to be. Without
// a section for the version, the notes are the [Unreleased] entries, marked
// as such.
func releaseNotes(version, changelog, checksums, commit, goVersion string, image *imageNotes) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# vault-plugin-secrets-manus v%s\n\n", version)
	fmt.Fprintf(&b, "Built from commit %s with %s: static binaries (CGO_ENABLED=0, -trimpath)\n", commit, goVersion)
	b.WriteString("for Linux and macOS on amd64 and arm64.\n\n")

	released, hasRelease := changelogSection(changelog, version)
	unreleased, _ := changelogSection(changelog, "Unreleased")
	switch {
	case hasRelease:
		fmt.Fprintf(&b, "## Changes in %s\n\n%s\n\n", version, released)
		if unreleased != "" {
			fmt.Fprintf(&b, "## Also in this build: changes not yet released under a version\n\n"+
				"The CHANGELOG lists these under [Unreleased]; the binaries contain them\n"+
				"although VERSION still says %s.\n\n%s\n\n", version, unreleased)
		}
	case unreleased != "":
		fmt.Fprintf(&b, "## Changes (the CHANGELOG's [Unreleased] section: it has no %s section yet)\n\n%s\n\n", version, unreleased)
	default:
		fmt.Fprintf(&b, "## Changes\n\nThe CHANGELOG has no entries for %s.\n\n", version)
	}

	b.WriteString("## Verify before registering\n\n" +
		"Each binary `vault-plugin-secrets-manus_<version>_<os>_<arch>` has a CycloneDX\n" +
		"SBOM beside it (`<binary>.sbom.json`: the modules it links, the Go version,\n" +
		"the binary's SHA-256); `THIRD_PARTY_LICENSES.md` lists the linked modules'\n" +
		"licenses and `<image archive>.digests` the container image's digests.\n" +
		"`SHA256SUMS` (these checksums) covers them all, and `SHA256SUMS.sig` is its\n" +
		"detached GPG signature by the maintainers' release key (docs/releases.md says\n" +
		"where its fingerprint is published). Check the signature, then the files,\n" +
		"then register the binary with its SHA-256:\n\n" +
		"```sh\ngpg --verify SHA256SUMS.sig SHA256SUMS\nsha256sum --check --ignore-missing SHA256SUMS\n```\n\n")
	fmt.Fprintf(&b, "```\n%s```\n", checksums)
	if image != nil {
		writeImageNotes(&b, image)
	}
	return b.String()
}

// writeImageNotes lists the image's digests: the index to pin a pull to,
// and per platform the binary's SHA-256 (what `vault plugin register
// -sha256` and OpenBao's sha256sum want) and the config digest (the image
// ID Docker's classic image store reports, which Vault's containerized
// plugins compare with -sha256).
func writeImageNotes(b *strings.Builder, image *imageNotes) {
	s := image.summary
	fmt.Fprintf(b, "\n## Container image\n\n"+
		"`%s` is an OCI image layout tagged `%s`: one image per\n"+
		"Linux platform, each holding only the static plugin binary, at\n"+
		"`/vault-plugin-secrets-manus`, which is also its entrypoint. Push it to a\n"+
		"registry with\n\n"+
		"```sh\nskopeo copy --multi-arch all oci-archive:%s:%s \\\n    docker://REGISTRY/vault-plugin-secrets-manus:%s\n```\n\n"+
		"(docs/kubernetes.md has the install recipes). Multi-platform index:\n`%s`.\n"+
		"The binary's SHA-256 is what `vault plugin register -sha256` and OpenBao's\n"+
		"`sha256sum` want; the config digest is the image ID Docker's classic image\n"+
		"store shows, which a containerized plugin is registered with.\n\n",
		image.archive, s.Tag, image.archive, s.Tag, s.Tag, s.Index)
	b.WriteString("| Platform | Binary SHA-256 | Image manifest | Image config |\n|---|---|---|---|\n")
	for _, img := range s.Images {
		fmt.Fprintf(b, "| %s | `%s` | `%s` | `%s` |\n", img.Platform, img.BinarySHA256, img.Manifest, img.Config)
	}
}

// changelogSection returns the body of the `## [name]` section, trimmed, and
// whether the heading exists.
func changelogSection(changelog, name string) (string, bool) {
	heading := "## [" + name + "]"
	var body []string
	in, found := false, false
	for _, line := range strings.Split(changelog, "\n") {
		if strings.HasPrefix(line, "## ") {
			if in {
				break
			}
			if strings.HasPrefix(line, heading) {
				in, found = true, true
				continue
			}
		}
		if in {
			body = append(body, line)
		}
	}
	return strings.TrimSpace(strings.Join(body, "\n")), found
}
