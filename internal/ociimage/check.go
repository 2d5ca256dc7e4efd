package ociimage

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// PlatformImage describes one platform's image in an archive.
type PlatformImage struct {
	Platform string
	// Manifest is the image manifest's digest; Config is the config's
	// digest, which Docker's classic image store shows as the image ID.
	Manifest, Config v1.Hash
	BinarySHA256     string // the label's value
}

// Summary is what the release notes say of the image.
type Summary struct {
	Tag    string
	Index  v1.Hash // the multi-platform index's digest
	Images []PlatformImage
}

// Describe reads an archive's tag and digests.
func Describe(archive string) (*Summary, error) {
	a, err := Open(archive)
	if err != nil {
		return nil, err
	}
	defer a.Close()
	idx, tag, err := a.Index()
	if err != nil {
		return nil, err
	}
	return describe(idx, tag)
}

// sha256LabelSuffix ends the name of the label holding the binary's SHA-256.
const sha256LabelSuffix = ".binary.sha256"

func describe(idx v1.ImageIndex, tag string) (*Summary, error) {
	digest, err := idx.Digest()
	if err != nil {
		return nil, err
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	s := &Summary{Tag: tag, Index: digest}
	for _, d := range m.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			return nil, err
		}
		cfg, err := img.ConfigFile()
		if err != nil {
			return nil, err
		}
		configDigest, err := img.ConfigName()
		if err != nil {
			return nil, err
		}
		image := PlatformImage{Platform: cfg.OS + "/" + cfg.Architecture, Manifest: d.Digest, Config: configDigest}
		for k, v := range cfg.Config.Labels {
			if strings.HasSuffix(k, sha256LabelSuffix) {
				image.BinarySHA256 = v
			}
		}
		s.Images = append(s.Images, image)
	}
	slices.SortFunc(s.Images, func(a, b PlatformImage) int { return strings.Compare(a.Platform, b.Platform) })
	return s, nil
}

// Check opens archive and returns every way it differs from what Build
// makes of s: the tag, the labels and annotations, the platforms, each
// image's entrypoint and single layer, and each layer's binary, which must
// be byte-identical to the release binary of its platform. The archive
// must also be exactly what Build produces from s (reproducibility), and
// every digest, size and diff ID in it must verify.
func Check(archive string, s Spec) (*Summary, []string, error) {
	a, err := Open(archive)
	if err != nil {
		return nil, nil, err
	}
	defer a.Close()
	idx, tag, err := a.Index()
	if err != nil {
		return nil, nil, err
	}
	var problems []string
	addf := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	if tag != s.Tag() {
		addf("the layout tags the index %q, want %q", tag, s.Tag())
	}
	if err := validate.Index(idx); err != nil {
		addf("the index does not verify: %v", err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, nil, err
	}
	if m.MediaType != types.OCIImageIndex {
		addf("the index is %s, want %s", m.MediaType, types.OCIImageIndex)
	}
	if diff := diffMaps(m.Annotations, s.commonLabels()); diff != "" {
		addf("index annotations: %s", diff)
	}
	var platforms []string
	for _, d := range m.Manifests {
		if d.Platform == nil {
			addf("index entry %s has no platform", d.Digest)
			continue
		}
		platform := d.Platform.OS + "/" + d.Platform.Architecture
		platforms = append(platforms, platform)
		img, err := idx.Image(d.Digest)
		if err != nil {
			return nil, nil, err
		}
		binary, ok := s.Binaries[platform]
		if !ok {
			addf("the image has a %s platform, which the release has no binary for", platform)
			continue
		}
		for _, p := range checkImage(img, s, platform, binary) {
			addf("%s: %s", platform, p)
		}
	}
	slices.Sort(platforms)
	if !slices.Equal(platforms, s.Platforms()) {
		addf("the index's platforms are %v, want %v", platforms, s.Platforms())
	}

	rebuilt, err := Build(s)
	if err != nil {
		return nil, nil, err
	}
	want, err := rebuilt.Digest()
	if err != nil {
		return nil, nil, err
	}
	summary, err := describe(idx, tag)
	if err != nil {
		return nil, nil, err
	}
	if summary.Index != want {
		addf("the index is %s, but building it again from the same binaries and labels gives %s: the archive is not reproducible, or not built from these", summary.Index, want)
	}
	return summary, problems, nil
}

// checkImage checks one platform's image against its release binary.
func checkImage(img v1.Image, s Spec, platform, binary string) []string {
	var problems []string
	addf := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	sum, size, err := fileDigest(binary)
	if err != nil {
		return []string{err.Error()}
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return []string{err.Error()}
	}
	if got := cfg.OS + "/" + cfg.Architecture; got != platform {
		addf("the config says %s", got)
	}
	if !slices.Equal(cfg.Config.Entrypoint, []string{s.Path()}) || len(cfg.Config.Cmd) != 0 {
		addf("entrypoint %q, cmd %q; want entrypoint [%s] and no cmd", cfg.Config.Entrypoint, cfg.Config.Cmd, s.Path())
	}
	if !cfg.Created.Equal(s.Created) {
		addf("created %s, want %s", cfg.Created.Time.UTC().Format("2006-01-02T15:04:05Z"), s.Created.UTC().Format("2006-01-02T15:04:05Z"))
	}
	if diff := diffMaps(cfg.Config.Labels, s.Labels(sum)); diff != "" {
		addf("labels: %s", diff)
	}
	manifest, err := img.Manifest()
	if err != nil {
		return append(problems, err.Error())
	}
	if diff := diffMaps(manifest.Annotations, s.Labels(sum)); diff != "" {
		addf("manifest annotations: %s", diff)
	}
	layers, err := img.Layers()
	if err != nil {
		return append(problems, err.Error())
	}
	if len(layers) != 1 {
		return append(problems, fmt.Sprintf("%d layers, want 1", len(layers)))
	}
	for _, p := range checkLayer(layers[0], s.Name, sum, size) {
		addf("layer: %s", p)
	}
	return problems
}

// checkLayer checks that the layer holds exactly one file, the binary at
// /<name>, root-owned, mode 0755, with the release binary's bytes.
func checkLayer(layer v1.Layer, name, wantSum string, wantSize int64) []string {
	rc, err := layer.Uncompressed()
	if err != nil {
		return []string{err.Error()}
	}
	defer rc.Close()
	var problems []string
	tr := tar.NewReader(rc)
	entries := 0
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return append(problems, err.Error())
		}
		entries++
		if strings.TrimPrefix(strings.TrimPrefix(hdr.Name, "./"), "/") != name || hdr.Typeflag != tar.TypeReg {
			problems = append(problems, fmt.Sprintf("holds %q (type %c), not only the binary %s", hdr.Name, hdr.Typeflag, name))
			continue
		}
		if hdr.Mode != 0o755 || hdr.Uid != 0 || hdr.Gid != 0 {
			problems = append(problems, fmt.Sprintf("%s is mode %o, owner %d:%d; want 755, 0:0", name, hdr.Mode, hdr.Uid, hdr.Gid))
		}
		h := sha256.New()
		// At most one byte more than the release binary: enough to tell a
		// longer file, never a decompression bomb's worth.
		n, err := io.Copy(h, io.LimitReader(tr, wantSize+1))
		if err != nil {
			return append(problems, err.Error())
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != wantSum || n != wantSize {
			problems = append(problems, fmt.Sprintf("%s is %d bytes with SHA-256 %s; the release binary is %d bytes with %s", name, n, got, wantSize, wantSum))
		}
	}
	if entries != 1 {
		problems = append(problems, fmt.Sprintf("%d entries, want exactly the binary", entries))
	}
	return problems
}

func fileDigest(name string) (string, int64, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	return hex.EncodeToString(h.Sum(nil)), n, err
}

// diffMaps describes how got differs from want ("" when equal).
func diffMaps(got, want map[string]string) string {
	var diffs []string
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if g, ok := got[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s missing (want %q)", k, want[k]))
		} else if g != want[k] {
			diffs = append(diffs, fmt.Sprintf("%s is %q, want %q", k, g, want[k]))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("unexpected %s=%q", k, got[k]))
		}
	}
	return strings.Join(diffs, "; ")
}
