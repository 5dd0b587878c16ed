// Package lock reads and writes image lock files: ferry's own ImagesLock, and
// kbld's and imgpkg's for interoperability.
package lock

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/ferry-dev/ferry/pkg/atomicfile"
	"github.com/ferry-dev/ferry/pkg/imageref"
	"sigs.k8s.io/kustomize/kyaml/yaml"
)

// APIVersion and Kind identify ferry's lock format.
const (
	APIVersion = "ferry.dev/v1alpha1"
	Kind       = "ImagesLock"

	kbldAPIVersion   = "kbld.k14s.io/v1alpha1"
	imgpkgAPIVersion = "imgpkg.carvel.dev/v1alpha1"
	// kbldIDAnnotation is where imgpkg keeps the reference as written.
	kbldIDAnnotation = "kbld.carvel.dev/id"
)

// Format selects the lock dialect to write.
type Format string

// Formats ferry writes.
const (
	FormatFerry Format = "ferry"
	FormatKbld  Format = "kbld"
)

// File is a lock: one entry per image reference as written in the manifests.
type File struct {
	APIVersion string `json:"apiVersion" yaml:"apiVersion"`
	Kind       string `json:"kind" yaml:"kind"`
	// ArtifactTypes is the --artifact-type filter the images' artifacts
	// were recorded with (kinds and media types, sorted); empty when every
	// artifact found was recorded.
	ArtifactTypes []string `json:"artifactTypes,omitempty" yaml:"artifactTypes,omitempty"`
	Images        []Image  `json:"images" yaml:"images"`
}

// Image is one reference and what it resolved (and was relocated) to.
type Image struct {
	// Image is the reference exactly as written in the manifests.
	Image string `json:"image" yaml:"image"`
	// Digest is the digest of the manifest or index the reference pointed at.
	Digest    string `json:"digest,omitempty" yaml:"digest,omitempty"`
	MediaType string `json:"mediaType,omitempty" yaml:"mediaType,omitempty"`
	Size      int64  `json:"size,omitempty" yaml:"size,omitempty"`
	// Resolved is the source location pinned by digest.
	Resolved string `json:"resolved,omitempty" yaml:"resolved,omitempty"`
	// Relocated is the new location, by digest, after unpkg or relocate.
	Relocated string `json:"relocated,omitempty" yaml:"relocated,omitempty"`
	// Platforms lists the children of an index.
	Platforms []Platform `json:"platforms,omitempty" yaml:"platforms,omitempty"`
	// NonDistributable lists foreign layers left out of a bundle.
	NonDistributable []string `json:"nonDistributable,omitempty" yaml:"nonDistributable,omitempty"`
	// Sources says where the reference was found.
	Sources []Source `json:"sources,omitempty" yaml:"sources,omitempty"`
	// Artifacts are the signatures, attestations, SBOMs and OCI referrers
	// attached to the image or to one of its platforms (or to another
	// artifact), which travel with it.
	Artifacts []Artifact `json:"artifacts,omitempty" yaml:"artifacts,omitempty"`
	// Manifest is the manifest or index as served when it was resolved,
	// kept only in memory (never written) so that a command that reads
	// it next does not ask the registry again. The reader checks it
	// against Digest like any fetched manifest.
	Manifest []byte `json:"-" yaml:"-"`
}

// Artifact is a manifest attached to an image: found under cosign's tag
// scheme or as an OCI 1.1 referrer.
type Artifact struct {
	// Subject is the digest of the manifest it is attached to: the image,
	// one of its platforms, or another artifact.
	Subject string `json:"subject" yaml:"subject"`
	// Kind is signature, attestation, sbom (cosign's tags) or referrer.
	Kind         string `json:"kind" yaml:"kind"`
	Digest       string `json:"digest" yaml:"digest"`
	MediaType    string `json:"mediaType,omitempty" yaml:"mediaType,omitempty"`
	ArtifactType string `json:"artifactType,omitempty" yaml:"artifactType,omitempty"`
	Size         int64  `json:"size,omitempty" yaml:"size,omitempty"`
	// Tag is the tag it had at the source (cosign's sha256-<hex>.sig);
	// empty for a referrer.
	Tag string `json:"tag,omitempty" yaml:"tag,omitempty"`
}

// Platform is one child manifest of an index.
type Platform struct {
	Platform  string `json:"platform,omitempty" yaml:"platform,omitempty"`
	Digest    string `json:"digest" yaml:"digest"`
	MediaType string `json:"mediaType,omitempty" yaml:"mediaType,omitempty"`
	Size      int64  `json:"size,omitempty" yaml:"size,omitempty"`
}

// Source is a place a reference was found.
type Source struct {
	File string `json:"file" yaml:"file"`
	Line int    `json:"line,omitempty" yaml:"line,omitempty"`
	Path string `json:"path,omitempty" yaml:"path,omitempty"`
}

// New returns an empty ferry lock.
func New() *File { return &File{APIVersion: APIVersion, Kind: Kind} }

// Location is where the image should be pulled from now: the relocated
// reference when there is one, else the resolved one.
func (i Image) Location() string {
	if i.Relocated != "" {
		return i.Relocated
	}
	return i.Resolved
}

// Lookup finds the entry for a reference as written.
func (f *File) Lookup(written string) (Image, bool) {
	for _, im := range f.Images {
		if im.Image == written {
			return im, true
		}
	}
	return Image{}, false
}

// Sort orders entries by reference so that written locks are stable.
func (f *File) Sort() {
	sort.SliceStable(f.Images, func(i, j int) bool { return f.Images[i].Image < f.Images[j].Image })
}

// Read reads a lock file in any format ferry understands.
func Read(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("reading lock: %s does not exist: check the path, or write a lock with 'ferry resolve -f MANIFESTS --lock-output %s'", path, path)
	}
	if err != nil {
		return nil, fmt.Errorf("reading lock: %w", err)
	}
	f, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

var digestRE = regexp.MustCompile(`^sha256:[a-f0-9]{64}$`)

type header struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
}

type kbldConfig struct {
	APIVersion             string         `yaml:"apiVersion"`
	Kind                   string         `yaml:"kind"`
	MinimumRequiredVersion string         `yaml:"minimumRequiredVersion,omitempty"`
	Overrides              []kbldOverride `yaml:"overrides"`
}

type kbldOverride struct {
	Image       string `yaml:"image"`
	NewImage    string `yaml:"newImage"`
	Preresolved bool   `yaml:"preresolved,omitempty"`
}

type imgpkgLock struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Images     []struct {
		Image       string            `yaml:"image"`
		Annotations map[string]string `yaml:"annotations"`
	} `yaml:"images"`
}

// ErrUnknownFormat is returned for a document that is no lock ferry knows.
var ErrUnknownFormat = errors.New("not a lock file: want apiVersion ferry.dev/v1alpha1 kind ImagesLock, kbld's kind Config, or imgpkg's ImagesLock")

// Parse decodes a lock in ferry's, kbld's or imgpkg's format and validates it.
func Parse(b []byte) (*File, error) {
	var h header
	if err := yaml.Unmarshal(b, &h); err != nil {
		return nil, fmt.Errorf("not valid YAML: %w", err)
	}
	var f *File
	switch {
	case h.APIVersion == APIVersion && h.Kind == Kind:
		f = &File{}
		if err := strictUnmarshal(b, f); err != nil {
			return nil, err
		}
	case h.APIVersion == kbldAPIVersion && h.Kind == "Config":
		var k kbldConfig
		if err := yaml.Unmarshal(b, &k); err != nil {
			return nil, fmt.Errorf("kbld lock: %w", err)
		}
		f = New()
		for _, o := range k.Overrides {
			im := Image{Image: o.Image, Resolved: o.NewImage}
			if r, err := imageref.Parse(o.NewImage); err == nil {
				im.Digest = r.Digest
			}
			f.Images = append(f.Images, im)
		}
	case h.APIVersion == imgpkgAPIVersion && h.Kind == Kind:
		var l imgpkgLock
		if err := yaml.Unmarshal(b, &l); err != nil {
			return nil, fmt.Errorf("imgpkg lock: %w", err)
		}
		f = New()
		for _, e := range l.Images {
			written := e.Annotations[kbldIDAnnotation]
			if written == "" {
				written = e.Image
			}
			im := Image{Image: written, Resolved: e.Image}
			if r, err := imageref.Parse(e.Image); err == nil {
				im.Digest = r.Digest
			}
			f.Images = append(f.Images, im)
		}
	default:
		return nil, fmt.Errorf("%w (found apiVersion %q kind %q)", ErrUnknownFormat, h.APIVersion, h.Kind)
	}
	if err := f.Validate(); err != nil {
		return nil, err
	}
	return f, nil
}

func strictUnmarshal(b []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		// yaml lists each problem on a line of its own: one line is printed.
		msg := strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", " ; ")), " ")
		return fmt.Errorf("invalid lock: %s", strings.ReplaceAll(msg, ": ; ", ": "))
	}
	return nil
}

// Validate checks that every entry is a valid reference with a well-formed
// digest and locations pinned to it, and that no reference appears twice.
func (f *File) Validate() error {
	seen := map[string]bool{}
	for i, im := range f.Images {
		where := fmt.Sprintf("images[%d]", i)
		if im.Image == "" {
			return fmt.Errorf("%s: image is empty", where)
		}
		if _, err := imageref.Parse(im.Image); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		if seen[im.Image] {
			return fmt.Errorf("%s: %q appears twice", where, im.Image)
		}
		seen[im.Image] = true
		if im.Digest != "" && !digestRE.MatchString(im.Digest) {
			return fmt.Errorf("%s: digest %q must be sha256:<64 hex characters>", where, im.Digest)
		}
		for _, loc := range []struct{ field, ref string }{{"resolved", im.Resolved}, {"relocated", im.Relocated}} {
			if loc.ref == "" {
				continue
			}
			r, err := imageref.Parse(loc.ref)
			if err != nil {
				return fmt.Errorf("%s.%s: %w", where, loc.field, err)
			}
			if !r.Pinned() {
				return fmt.Errorf("%s.%s: %q is not pinned by digest", where, loc.field, loc.ref)
			}
			if im.Digest != "" && r.Digest != im.Digest {
				return fmt.Errorf("%s.%s: %q does not match digest %s", where, loc.field, loc.ref, im.Digest)
			}
		}
		for j, p := range im.Platforms {
			if !digestRE.MatchString(p.Digest) {
				return fmt.Errorf("%s.platforms[%d]: digest %q must be sha256:<64 hex characters>", where, j, p.Digest)
			}
		}
		for j, a := range im.Artifacts {
			if err := a.validate(); err != nil {
				return fmt.Errorf("%s.artifacts[%d]: %w", where, j, err)
			}
		}
	}
	return nil
}

// Encode writes the lock in the given format.
func (f *File) Encode(w io.Writer, format Format) error {
	var v any
	switch format {
	case FormatFerry, "":
		c := *f
		c.APIVersion, c.Kind = APIVersion, Kind
		v = c
	case FormatKbld:
		k := kbldConfig{APIVersion: kbldAPIVersion, Kind: "Config", MinimumRequiredVersion: "0.31.0"}
		for _, im := range f.Images {
			k.Overrides = append(k.Overrides, kbldOverride{Image: im.Image, NewImage: im.Location(), Preresolved: true})
		}
		v = k
	default:
		return fmt.Errorf("unknown lock format %q: use ferry or kbld", format)
	}
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("encoding lock: %w", err)
	}
	return enc.Close()
}

// Write writes the lock atomically: a temp file beside path, renamed when complete.
func (f *File) Write(path string, format Format) error {
	return atomicfile.Write(path, 0o644, func(w io.Writer) error { return f.Encode(w, format) })
}

// artifactKinds are the kinds an Artifact may have.
var artifactKinds = []string{"signature", "attestation", "sbom", "referrer"}

func (a Artifact) validate() error {
	for _, d := range []struct{ field, value string }{{"subject", a.Subject}, {"digest", a.Digest}} {
		if !digestRE.MatchString(d.value) {
			return fmt.Errorf("%s %q must be sha256:<64 hex characters>", d.field, d.value)
		}
	}
	if !slices.Contains(artifactKinds, a.Kind) {
		return fmt.Errorf("kind %q must be one of %s", a.Kind, strings.Join(artifactKinds, ", "))
	}
	if a.Tag != "" && !tagRE.MatchString(a.Tag) {
		return fmt.Errorf("tag %q is not a valid tag", a.Tag)
	}
	return nil
}

var tagRE = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,127}$`)
