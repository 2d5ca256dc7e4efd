// Command releasetool writes and checks the parts of a release beside the
// binaries: the list of third-party licenses (read from the CycloneDX SBOMs
// that cyclonedx-gomod writes for each binary), the release notes, and the
// SBOM checks of scripts/check-release.sh. `make release` and the release
// check run it with `go run`; it is never shipped.
//
//	releasetool licenses [-check] -o FILE SBOM...
//	releasetool notes -version V -changelog FILE -sums FILE -commit C -goversion G -o FILE
//	releasetool sbom -module M -version V -binary BIN -os OS -arch ARCH [-require PATH@VERSION]... SBOM
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: releasetool licenses|notes|sbom [flags] [files]")
		os.Exit(2)
	}
	commands := map[string]func([]string) error{
		"licenses": runLicenses,
		"notes":    runNotes,
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
