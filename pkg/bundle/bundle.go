// Package bundle writes and reads ferry's bundle: a plain, uncompressed tar
// of an OCI image layout (oci-layout, index.json, blobs/sha256/…) with the
// lock stored beside them as ferry.lock.yaml.
//
// Every manifest is known before a blob is fetched, so the whole tar is
// planned up front: each header and data region sits at an offset computed
// in advance. Blobs are then fetched concurrently and written straight to
// their place, hashed as they stream, and the same inputs always give the
// same bytes. Reading indexes the headers once and serves every blob as a
// section of the file, so nothing is extracted and many readers can share
// one open file.
package bundle

import (
	"errors"
	"regexp"
	"time"

	"github.com/ferry-dev/ferry/pkg/imageref"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Names inside the tar.
const (
	// LayoutFile is the OCI layout marker.
	LayoutFile = "oci-layout"
	// IndexFile lists the bundle's images.
	IndexFile = "index.json"
	// LockFile is the lock the bundle was made from, with the
	// non-distributable layers left out recorded per image.
	LockFile = "ferry.lock.yaml"
	// blobDir holds every manifest and blob by digest.
	blobDir = "blobs/sha256/"
)

// Annotations on index.json entries.
const (
	// AnnotationRefName holds the reference as written in the manifests;
	// skopeo's oci-archive:PATH:NAME picks an entry by it.
	AnnotationRefName = "org.opencontainers.image.ref.name"
	// AnnotationImageName holds the normalised reference, for containerd
	// (ctr import) and tools that want a full name.
	AnnotationImageName = "io.containerd.image.name"
)

// layoutJSON is the oci-layout file, as the image-layout spec writes it.
const layoutJSON = `{"imageLayoutVersion":"1.0.0"}`

// modTime is every entry's modification time: fixed, so that the same
// inputs give the same bytes. 2000-01-01 rather than the epoch, which some
// extractors warn about.
var modTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// Limits that keep a hostile bundle from exhausting memory.
const (
	// MaxIndexSize caps index.json.
	MaxIndexSize = 8 << 20
	// MaxLockSize caps ferry.lock.yaml.
	MaxLockSize = 16 << 20
	// maxEntries caps how many tar entries are indexed.
	maxEntries = 1 << 20
)

// Ref is one top-level entry of a bundle's index.json.
type Ref struct {
	// Name is the reference as written (org.opencontainers.image.ref.name);
	// it may be empty in an OCI layout made by another tool.
	Name string
	// Desc is the image or index descriptor.
	Desc v1.Descriptor
}

// ErrNotFound is returned for a manifest or blob the bundle does not hold.
var ErrNotFound = errors.New("not in the bundle")

// ErrInvalid is returned for a tar that is not a bundle ferry will read:
// unsafe paths, links, duplicates, unknown entries, a truncated file, a
// broken index.json.
var ErrInvalid = errors.New("invalid bundle")

var hexRE = regexp.MustCompile(`^[a-f0-9]{64}$`)

// blobName is the tar path of a digest.
func blobName(h v1.Hash) string { return blobDir + h.Hex }

// containerdName is the normalised reference containerd expects
// ("docker.io/library/nginx:1.25"), or "" when name does not parse.
func containerdName(name string) string {
	r, err := imageref.Parse(name)
	if err != nil {
		return ""
	}
	s := r.Normalized()
	if r.Registry() == "index.docker.io" {
		s = "docker.io" + s[len("index.docker.io"):]
	}
	return s
}
