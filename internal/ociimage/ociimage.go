// Package ociimage builds and checks the release's container image: one
// image per Linux platform holding only the static plugin binary, at
// /<name> and as the entrypoint, gathered in one multi-platform index and
// written as an OCI image layout in a tar archive. It is built with
// go-containerregistry, without a container engine, and is reproducible:
// the same binaries, labels and creation time give the same bytes.
//
// The release tool (`releasetool image`) builds and checks it; the
// containerized end-to-end run (`make test-containerized`) reads it.
package ociimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The standard OCI annotation keys (image-spec annotations.md), used both as
// image config labels and as manifest and index annotations.
const (
	LabelTitle       = "org.opencontainers.image.title"
	LabelDescription = "org.opencontainers.image.description"
	LabelVersion     = "org.opencontainers.image.version"
	LabelRevision    = "org.opencontainers.image.revision"
	LabelSource      = "org.opencontainers.image.source"
	LabelLicenses    = "org.opencontainers.image.licenses"
	LabelCreated     = "org.opencontainers.image.created"
	// RefName tags the index inside the layout (skopeo's
	// oci-archive:FILE:TAG and crane read it).
	RefName = "org.opencontainers.image.ref.name"
)

// Spec is everything the image is made of.
type Spec struct {
	// Name is the binary's file name in the image, at the root: /<Name>.
	Name string
	// Version is the plugin version as the binary reports it (v0.1.0); the
	// layout's tag is the version without the "v", the tag Vault's
	// containerized plugins look for.
	Version  string
	Revision string // the commit
	Source   string // the repository URL
	Licenses string // SPDX expression
	Created  time.Time
	// Binaries maps a platform ("linux/amd64") to the release binary.
	Binaries map[string]string
}

// Tag is the tag the image goes by: the version without its "v".
func (s Spec) Tag() string { return strings.TrimPrefix(s.Version, "v") }

// Path is where the binary sits in the image, also the entrypoint.
func (s Spec) Path() string { return "/" + s.Name }

// SHA256Label is the label holding the binary's SHA-256, under the
// reverse-DNS name of the source repository, e.g.
// com.github.manus-community.vault-plugin-secrets-manus.binary.sha256.
func (s Spec) SHA256Label() string { return reverseDNS(s.Source) + sha256LabelSuffix }

// reverseDNS turns https://github.com/owner/repo into com.github.owner.repo.
func reverseDNS(url string) string {
	rest := url
	if _, after, ok := strings.Cut(url, "://"); ok {
		rest = after
	}
	host, p, _ := strings.Cut(rest, "/")
	labels := strings.Split(host, ".")
	slices.Reverse(labels)
	parts := append(labels, strings.Split(strings.Trim(p, "/"), "/")...)
	return strings.ToLower(strings.Join(slices.DeleteFunc(parts, func(s string) bool { return s == "" }), "."))
}

// commonLabels are the labels every platform's image and the index carry.
func (s Spec) commonLabels() map[string]string {
	return map[string]string{
		LabelTitle:       s.Name,
		LabelDescription: "HashiCorp Vault secrets engine for the Manus Team User Management API: only the static plugin binary, at " + s.Path(),
		LabelVersion:     s.Version,
		LabelRevision:    s.Revision,
		LabelSource:      s.Source,
		LabelLicenses:    s.Licenses,
		LabelCreated:     s.Created.UTC().Format(time.RFC3339),
	}
}

// Labels are the labels (and manifest annotations) of the image whose
// binary has the given SHA-256.
func (s Spec) Labels(binarySHA256 string) map[string]string {
	labels := s.commonLabels()
	labels[s.SHA256Label()] = binarySHA256
	return labels
}

// Platforms are the spec's platforms, sorted.
func (s Spec) Platforms() []string { return slices.Sorted(maps.Keys(s.Binaries)) }

// Build makes the multi-platform index in memory.
func Build(s Spec) (v1.ImageIndex, error) {
	if s.Name == "" || s.Version == "" || len(s.Binaries) == 0 {
		return nil, errors.New("an image needs a name, a version and at least one binary")
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, platform := range s.Platforms() {
		img, err := buildImage(s, platform)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", platform, err)
		}
		goos, arch, _ := strings.Cut(platform, "/")
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: goos, Architecture: arch}},
		})
	}
	return mutate.Annotations(idx, s.commonLabels()).(v1.ImageIndex), nil
}

// buildImage makes one platform's image: a single layer with the binary.
func buildImage(s Spec, platform string) (v1.Image, error) {
	binary, err := os.ReadFile(s.Binaries[platform])
	if err != nil {
		return nil, err
	}
	layerTar, err := binaryLayer(s.Name, binary, s.Created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(
		func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layerTar)), nil },
		tarball.WithMediaType(types.OCILayer),
		tarball.WithCompressionLevel(gzip.DefaultCompression),
		tarball.WithCompressedCaching)
	if err != nil {
		return nil, err
	}
	created := v1.Time{Time: s.Created.UTC()}
	img, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1), mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History:   v1.History{Created: created, CreatedBy: "releasetool image: " + s.Path()},
	})
	if err != nil {
		return nil, err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	goos, arch, _ := strings.Cut(platform, "/")
	cfg.OS, cfg.Architecture, cfg.Created = goos, arch, created
	cfg.Config.Entrypoint = []string{s.Path()}
	cfg.Config.Labels = s.Labels(sha256Hex(binary))
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		return nil, err
	}
	return mutate.Annotations(img, s.Labels(sha256Hex(binary))).(v1.Image), nil
}

// binaryLayer is the uncompressed layer: the binary at the root, owned by
// root, mode 0755, stamped with the creation time, nothing else.
func binaryLayer(name string, binary []byte, created time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeReg,
		Name:     name,
		Mode:     0o755,
		Size:     int64(len(binary)),
		ModTime:  created.UTC(),
		Format:   tar.FormatPAX,
	}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(binary); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// WriteArchive builds the index and writes it to archive as an OCI image
// layout in a tar file, its one entry tagged with Spec.Tag.
func WriteArchive(s Spec, archive string) error {
	idx, err := Build(s)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "ociimage-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{RefName: s.Tag()})); err != nil {
		return err
	}
	return tarDirectory(dir, archive, s.Created)
}

// tarDirectory writes dir's files into a tar at out, sorted, with fixed
// owners, modes and times, so the same layout gives the same archive.
func tarDirectory(dir, out string, mtime time.Time) error {
	var names []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		names = append(names, filepath.ToSlash(rel))
		return err
	})
	if err != nil {
		return err
	}
	sort.Strings(names)
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	for _, name := range names {
		info, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			return errors.Join(err, f.Close())
		}
		hdr := &tar.Header{Name: name, ModTime: mtime.UTC(), Format: tar.FormatPAX}
		if info.IsDir() {
			hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, name+"/", 0o755
		} else {
			hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeReg, 0o644, info.Size()
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return errors.Join(err, f.Close())
		}
		if !info.IsDir() {
			if err := copyFile(tw, filepath.Join(dir, name)); err != nil {
				return errors.Join(err, f.Close())
			}
		}
	}
	return errors.Join(tw.Close(), f.Close())
}

func copyFile(w io.Writer, name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

// Archive is an opened image archive: its layout, unpacked into a
// temporary directory until Close.
type Archive struct {
	dir  string
	Path layout.Path
}

// Open unpacks an OCI layout archive written by WriteArchive (or any OCI
// layout tar) and reads its layout.
func Open(archive string) (*Archive, error) {
	dir, err := os.MkdirTemp("", "ociimage-")
	if err != nil {
		return nil, err
	}
	if err := untar(archive, dir); err != nil {
		return nil, errors.Join(fmt.Errorf("unpacking %s: %w", archive, err), os.RemoveAll(dir))
	}
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("%s is not an OCI image layout: %w", archive, err), os.RemoveAll(dir))
	}
	return &Archive{dir: dir, Path: p}, nil
}

// Close removes the unpacked layout.
func (a *Archive) Close() error { return os.RemoveAll(a.dir) }

// Index returns the layout's one tagged index and its tag.
func (a *Archive) Index() (v1.ImageIndex, string, error) {
	top, err := a.Path.ImageIndex()
	if err != nil {
		return nil, "", err
	}
	m, err := top.IndexManifest()
	if err != nil {
		return nil, "", err
	}
	if len(m.Manifests) != 1 || !m.Manifests[0].MediaType.IsIndex() {
		return nil, "", fmt.Errorf("index.json holds %d entries, want one multi-platform index", len(m.Manifests))
	}
	idx, err := top.ImageIndex(m.Manifests[0].Digest)
	return idx, m.Manifests[0].Annotations[RefName], err
}

// Image returns the image of one platform ("linux/amd64").
func (a *Archive) Image(platform string) (v1.Image, error) {
	idx, _, err := a.Index()
	if err != nil {
		return nil, err
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, d := range m.Manifests {
		if d.Platform != nil && d.Platform.OS+"/"+d.Platform.Architecture == platform {
			return idx.Image(d.Digest)
		}
	}
	return nil, fmt.Errorf("the image has no %s platform", platform)
}

// untar unpacks regular files and directories only, refusing any path
// that would leave dir.
func untar(archive, dir string) error {
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := path.Clean(hdr.Name)
		if !fs.ValidPath(name) {
			return fmt.Errorf("entry %q leaves the archive", hdr.Name)
		}
		target := filepath.Join(dir, filepath.FromSlash(name))
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o700); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
				return err
			}
			if err := writeFrom(target, tr); err != nil {
				return err
			}
		default:
			return fmt.Errorf("entry %q is not a file or directory", hdr.Name)
		}
	}
}

func writeFrom(name string, r io.Reader) error {
	out, err := os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, r)
	return errors.Join(err, out.Close())
}
