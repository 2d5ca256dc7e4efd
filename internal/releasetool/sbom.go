package main

import (
	"crypto/sha1" //nolint:gosec // for version 5 UUIDs (sbomSerial), which RFC 4122 defines with SHA-1
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// bom is the part of a CycloneDX JSON document (spec 1.6, as
// cyclonedx-gomod v1.10 writes it) that the release checks read.
type bom struct {
	BOMFormat    string `json:"bomFormat"`
	SpecVersion  string `json:"specVersion"`
	SerialNumber string `json:"serialNumber"`
	Metadata     struct {
		// Timestamp is the time the SBOM was written, which would make
		// every build of the release differ: `make release` leaves it out.
		Timestamp  string          `json:"timestamp"`
		Component  component       `json:"component"`
		Properties []property      `json:"properties"`
		Tools      json.RawMessage `json:"tools"`
	} `json:"metadata"`
	Components []component `json:"components"`
}

type component struct {
	Type     string          `json:"type"`
	Name     string          `json:"name"`
	Version  string          `json:"version"`
	Licenses []licenseChoice `json:"licenses"`
	// Evidence holds licenses the tool detected but does not assert, which
	// is how cyclonedx-gomod reports them unless -assert-licenses is given.
	Evidence *struct {
		Licenses []licenseChoice `json:"licenses"`
	} `json:"evidence"`
}

type licenseChoice struct {
	License *struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"license"`
	Expression string `json:"expression"`
}

type property struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Property names cyclonedx-gomod's bin mode gives the main component.
const (
	propGoVersion = "cdx:gomod:build:env:GOVERSION"
	propGOOS      = "cdx:gomod:build:env:GOOS"
	propGOARCH    = "cdx:gomod:build:env:GOARCH"
	propSHA256    = "cdx:gomod:binary:hash:SHA-256"
)

// readBOM parses a CycloneDX JSON SBOM and refuses anything else.
func readBOM(path string) (*bom, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var b bom
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("%s does not parse as JSON: %w", path, err)
	}
	if b.BOMFormat != "CycloneDX" || b.SpecVersion == "" {
		return nil, fmt.Errorf("%s is not a CycloneDX document (bomFormat %q, specVersion %q)", path, b.BOMFormat, b.SpecVersion)
	}
	return &b, nil
}

func (b *bom) property(name string) string {
	for _, p := range b.Metadata.Properties {
		if p.Name == name {
			return p.Value
		}
	}
	return ""
}

// platform is GOOS/GOARCH of the binary the SBOM describes.
func (b *bom) platform() string {
	return b.property(propGOOS) + "/" + b.property(propGOARCH)
}

// componentVersions maps each listed module path to its version.
func (b *bom) componentVersions() map[string]string {
	versions := make(map[string]string, len(b.Components))
	for _, c := range b.Components {
		versions[c.Name] = c.Version
	}
	return versions
}

// repeated is a flag that may be given several times.
type repeated []string

func (r *repeated) String() string     { return strings.Join(*r, ",") }
func (r *repeated) Set(v string) error { *r = append(*r, v); return nil }

// runSBOM checks one SBOM against the binary it describes: it names the
// main module at the release version, the Go version and platform the
// binary was built with and the binary's SHA-256; it lists exactly the
// modules the binary's build information lists, and each -require module at
// the given version (the one in go.mod).
func runSBOM(args []string) error {
	fs := flag.NewFlagSet("sbom", flag.ContinueOnError)
	module := fs.String("module", "", "main module path")
	version := fs.String("version", "", "release version, with the leading v")
	binary := fs.String("binary", "", "the binary the SBOM describes")
	goos := fs.String("os", "", "GOOS of the binary")
	goarch := fs.String("arch", "", "GOARCH of the binary")
	var require repeated
	fs.Var(&require, "require", "PATH@VERSION that must be listed (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 || *module == "" || *version == "" || *binary == "" || *goos == "" || *goarch == "" {
		return errors.New("need -module, -version, -binary, -os, -arch and one SBOM file")
	}
	b, err := readBOM(fs.Arg(0))
	if err != nil {
		return err
	}
	problems := checkSBOM(b, sbomWant{
		module: *module, version: *version, binary: *binary,
		platform: *goos + "/" + *goarch, require: require,
	})
	if len(problems) > 0 {
		return fmt.Errorf("%s:\n  %s", fs.Arg(0), strings.Join(problems, "\n  "))
	}
	fmt.Printf("%s: %s %s for %s, %s, %d modules, in order\n",
		fs.Arg(0), b.Metadata.Component.Name, b.Metadata.Component.Version,
		b.platform(), b.property(propGoVersion), len(b.Components))
	return nil
}

type sbomWant struct {
	module, version, binary, platform string
	require                           []string
}

// checkSBOM returns every way the SBOM disagrees with want and the binary.
func checkSBOM(b *bom, want sbomWant) []string {
	var problems []string
	addf := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	app := b.Metadata.Component
	if app.Name != want.module || app.Version != want.version || app.Type != "application" {
		addf("main component is %s %s %s, want application %s %s", app.Type, app.Name, app.Version, want.module, want.version)
	}
	if got := b.platform(); got != want.platform {
		addf("platform is %s, want %s", got, want.platform)
	}

	info, err := buildinfo.ReadFile(want.binary)
	if err != nil {
		addf("reading build information of %s: %v", want.binary, err)
		return problems
	}
	if got := b.property(propGoVersion); got == "" || got != info.GoVersion {
		addf("Go version is %q, the binary was built with %s", got, info.GoVersion)
	}
	sum, err := fileSHA256(want.binary)
	if err != nil {
		addf("hashing %s: %v", want.binary, err)
	} else {
		if got := b.property(propSHA256); got != sum {
			addf("binary SHA-256 is %q, %s has %s", got, want.binary, sum)
		}
		if want := "urn:uuid:" + sbomSerial(sum); b.SerialNumber != want {
			addf("serial number is %q, want %s (derived from the binary's SHA-256, so a rebuild gives the same SBOM)", b.SerialNumber, want)
		}
	}
	if b.Metadata.Timestamp != "" {
		addf("metadata.timestamp is %q: an SBOM with the time it was written differs on every build", b.Metadata.Timestamp)
	}

	listed := b.componentVersions()
	linked := make(map[string]string, len(info.Deps))
	for _, dep := range info.Deps {
		linked[dep.Path] = dep.Version
	}
	for _, diff := range diffModules(listed, linked) {
		addf("%s", diff)
	}
	for _, req := range want.require {
		path, version, ok := strings.Cut(req, "@")
		if !ok {
			addf("-require %q is not PATH@VERSION", req)
			continue
		}
		if got, ok := listed[path]; !ok {
			addf("%s is not listed", path)
		} else if got != version {
			addf("%s is listed at %s, go.mod has %s", path, got, version)
		}
	}
	return problems
}

// diffModules compares the SBOM's modules with the binary's, both as
// path → version, and describes each difference.
func diffModules(listed, linked map[string]string) []string {
	var diffs []string
	for path, version := range linked {
		got, ok := listed[path]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("the binary links %s %s, the SBOM does not list it", path, version))
		case got != version:
			diffs = append(diffs, fmt.Sprintf("the binary links %s %s, the SBOM lists %s", path, version, got))
		}
	}
	for path, version := range listed {
		if _, ok := linked[path]; !ok {
			diffs = append(diffs, fmt.Sprintf("the SBOM lists %s %s, the binary does not link it", path, version))
		}
	}
	sort.Strings(diffs)
	return diffs
}

// sbomSerial is the serial number of the SBOM of the binary whose SHA-256
// is sha256Hex: a name-based (version 5) UUID of "sha256:<hex>" in the
// RFC 4122 URL namespace. cyclonedx-gomod would otherwise draw a random one;
// this one identifies the SBOM as uniquely as the binary it describes and is
// the same on every rebuild.
func sbomSerial(sha256Hex string) string {
	namespaceURL := [16]byte{0x6b, 0xa7, 0xb8, 0x11, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8}
	h := sha1.New() //nolint:gosec // SHA-1 is what a version 5 UUID is defined with (RFC 4122 4.3), not a security measure
	h.Write(namespaceURL[:])
	h.Write([]byte("sha256:" + sha256Hex))
	u := h.Sum(nil)[:16]
	u[6] = u[6]&0x0f | 0x50 // version 5
	u[8] = u[8]&0x3f | 0x80 // RFC 4122 variant
	x := hex.EncodeToString(u)
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}

// runSerial prints the serial number `make release` gives the SBOM of the
// binary named by the one argument (cyclonedx-gomod -serial takes it).
func runSerial(args []string) error {
	if len(args) != 1 {
		return errors.New("need one binary")
	}
	sum, err := fileSHA256(args[0])
	if err != nil {
		return err
	}
	fmt.Println(sbomSerial(sum))
	return nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path) //nolint:gosec // a release file named by make release or the release check
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
