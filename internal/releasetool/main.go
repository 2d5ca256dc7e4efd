// Command releasetool writes and checks the parts of a release beside the
// binaries: the list of third-party licenses (read from the CycloneDX SBOMs
// that cyclonedx-gomod writes for each binary), the container image archive
// (internal/ociimage) and the list of its digests, the release notes, the
// SBOMs' serial numbers, and the SBOM checks of scripts/check-release.sh.
// `make release` and the release check run it; it is never shipped.
//
//	releasetool licenses [-check] -o FILE SBOM...
//	releasetool image [-check] -o ARCHIVE -name N -version V -revision R -source URL -created EPOCH linux/ARCH=BINARY...
//	releasetool digests [-check] -o FILE ARCHIVE
//	releasetool notes -version V -changelog FILE -sums FILE -commit C -goversion G [-image ARCHIVE] -o FILE
//	releasetool serial BINARY
//	releasetool sbom -module M -version V -binary BIN -os OS -arch ARCH [-require PATH@VERSION]... SBOM
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: releasetool licenses|image|digests|notes|serial|sbom [flags] [files]")
		os.Exit(2)
	}
	commands := map[string]func([]string) error{
		"licenses": runLicenses,
		"image":    runImage,
		"digests":  runDigests,
		"notes":    runNotes,
		"serial":   runSerial,
		"sbom":     runSBOM,
	}
	run, ok := commands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "releasetool: unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
	if err := run(os.Args[2:]); err != nil {
		fmt.Fprintf(os.Stderr, "releasetool %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}
