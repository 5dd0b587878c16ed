package bundle

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// A delta bundle leaves out the blobs the target already holds (those of
// the images of an earlier lock or bundle, given to pkg with --have) and
// says so in DeltaFile; index.json carries the file's digest in
// AnnotationDeltaDigest, so that neither goes missing unnoticed. Manifests
// always travel. Every reader takes a blob DeltaFile lists as expected at
// the target, not as missing; a blob absent and not listed is still damage.
const (
	// DeltaFile lists what a delta bundle relies on.
	DeltaFile = "ferry.delta.json"
	// AnnotationDeltaDigest, on index.json, is the sha256 of DeltaFile.
	AnnotationDeltaDigest = "dev.ferry.delta.digest"
	// MediaTypeDelta is DeltaFile's mediaType.
	MediaTypeDelta = "application/vnd.ferry.bundle.delta.v1+json"
	// MaxDeltaSize caps DeltaFile.
	MaxDeltaSize = 16 << 20
)

// Base kinds.
const (
	// BaseLock is a lock, typically the relocated lock unpkg wrote inside.
	BaseLock = "lock"
	// BaseBundle is an earlier bundle.
	BaseBundle = "bundle"
)

// Delta is DeltaFile: the bases a delta bundle was made against and every
// blob it leaves out.
type Delta struct {
	MediaType string `json:"mediaType"`
	// Bases are the --have inputs, in the order given.
	Bases []DeltaBase `json:"bases"`
	// Absent are the blobs the images need that the bundle does not hold,
	// by digest.
	Absent []AbsentBlob `json:"absent"`
}

// DeltaBase is one --have input.
type DeltaBase struct {
	// Kind is BaseLock or BaseBundle.
	Kind string `json:"kind"`
	// Name is the file's base name, as given.
	Name string `json:"name"`
	// Digest is the sha256 of the lock file, or of the bundle's index.json
	// (which pins every image and the bundle's lock).
	Digest string `json:"digest"`
}

// String names the base for messages: `bundle v1.tar (index sha256:…)`.
func (b DeltaBase) String() string {
	if b.Kind == BaseBundle {
		return fmt.Sprintf("bundle %s (index.json %s)", b.Name, b.Digest)
	}
	return fmt.Sprintf("lock %s (%s)", b.Name, b.Digest)
}

// AbsentBlob is one blob a delta bundle expects at the target.
type AbsentBlob struct {
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
	MediaType string `json:"mediaType,omitempty"`
	// Images are the bundle's images that need it.
	Images []string `json:"images"`
	// Bases name the bases that hold it (DeltaBase.Name).
	Bases []string `json:"bases"`
	// Repositories are where a base lock says images using it were
	// relocated: sources for a cross-repository mount.
	Repositories []string `json:"repositories,omitempty"`
	// Sources are the source references of base bundle images using it:
	// under the same --repository they land where the blob is.
	Sources []string `json:"sources,omitempty"`
}

// Bytes adds up the sizes of the absent blobs.
func (d *Delta) Bytes() int64 {
	var n int64
	for _, a := range d.Absent {
		n += a.Size
	}
	return n
}

// lookup returns the absent blob h, if listed.
func (d *Delta) lookup(h v1.Hash) (AbsentBlob, bool) {
	if d == nil {
		return AbsentBlob{}, false
	}
	s := h.String()
	i, ok := slices.BinarySearchFunc(d.Absent, s, func(a AbsentBlob, t string) int {
		switch {
		case a.Digest < t:
			return -1
		case a.Digest > t:
			return 1
		}
		return 0
	})
	if !ok {
		return AbsentBlob{}, false
	}
	return d.Absent[i], true
}

// Expects reports whether the delta leaves out h for the target to hold;
// false for a complete bundle (nil).
func (d *Delta) Expects(h v1.Hash) bool {
	_, ok := d.lookup(h)
	return ok
}

// Have is what the target already holds, for pkg to leave out: the blobs
// of the images of every base.
type Have struct {
	Bases []DeltaBase
	Blobs map[v1.Hash]HaveBlob
}

// HaveBlob is where one held blob is known to be.
type HaveBlob struct {
	// Bases, Repositories and Sources are as in AbsentBlob.
	Bases, Repositories, Sources []string
}

// Add records that base holds h, in repository repo or at the target
// place of source (either may be "").
func (h *Have) Add(d v1.Hash, base, repo, source string) {
	if h.Blobs == nil {
		h.Blobs = map[v1.Hash]HaveBlob{}
	}
	b := h.Blobs[d]
	b.Bases = addOnce(b.Bases, base)
	b.Repositories = addOnce(b.Repositories, repo)
	b.Sources = addOnce(b.Sources, source)
	h.Blobs[d] = b
}

func addOnce(s []string, v string) []string {
	if v == "" || slices.Contains(s, v) {
		return s
	}
	return append(s, v)
}

// encodeDelta renders DeltaFile: sorted, so that the same inputs give the
// same bytes.
func encodeDelta(have *Have, absent map[v1.Hash]*item) ([]byte, error) {
	d := Delta{MediaType: MediaTypeDelta, Bases: slices.Clone(have.Bases), Absent: []AbsentBlob{}}
	if d.Bases == nil {
		d.Bases = []DeltaBase{}
	}
	for h, it := range absent {
		hb := have.Blobs[h]
		a := AbsentBlob{
			Digest: h.String(), Size: it.size, MediaType: string(it.desc.MediaType),
			Images: sorted(it.users), Bases: sorted(hb.Bases), Repositories: sorted(hb.Repositories), Sources: sorted(hb.Sources),
		}
		d.Absent = append(d.Absent, a)
	}
	sort.Slice(d.Absent, func(i, j int) bool { return d.Absent[i].Digest < d.Absent[j].Digest })
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding %s: %w", DeltaFile, err)
	}
	// Readers refuse a larger record: never write a bundle they refuse.
	if len(b) >= MaxDeltaSize {
		return nil, fmt.Errorf("%s would be %d bytes (%d absent blobs), more than the %d a reader accepts: split the release into several bundles, or leave out --have", DeltaFile, len(b), len(d.Absent), MaxDeltaSize)
	}
	return append(b, '\n'), nil
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// sha256Of is the digest of b as "sha256:<hex>".
func sha256Of(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// parseDelta reads and checks DeltaFile against the digest index.json
// records for it and against the blobs the tar holds.
func (r *Reader) parseDelta(raw []byte, want string) error {
	if want == "" {
		return invalidf("%s is there but index.json has no %s annotation: the bundle was altered after ferry wrote it", DeltaFile, AnnotationDeltaDigest)
	}
	if got := sha256Of(raw); got != want {
		return invalidf("%s hashes to %s, index.json says %s: the bundle was altered after ferry wrote it", DeltaFile, got, want)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var d Delta
	if err := dec.Decode(&d); err != nil {
		return invalidf("%s: %v", DeltaFile, err)
	}
	if d.MediaType != MediaTypeDelta {
		return invalidf("%s: mediaType %q, want %q", DeltaFile, d.MediaType, MediaTypeDelta)
	}
	for i, a := range d.Absent {
		h, err := v1.NewHash(a.Digest)
		if err != nil || h.Algorithm != "sha256" || !hexRE.MatchString(h.Hex) {
			return invalidf("%s: absent[%d]: digest %q is not sha256:<64 hex>", DeltaFile, i, a.Digest)
		}
		if i > 0 && d.Absent[i-1].Digest >= a.Digest {
			return invalidf("%s: absent[%d]: %s is out of order or listed twice", DeltaFile, i, a.Digest)
		}
		if a.Size < 0 {
			return invalidf("%s: absent[%d]: size %d", DeltaFile, i, a.Size)
		}
		if _, ok := r.blobs[h]; ok {
			return invalidf("%s: absent[%d]: %s is listed as absent but the bundle holds it", DeltaFile, i, a.Digest)
		}
	}
	r.delta = &d
	return nil
}

// Delta is what a delta bundle relies on at the target; nil for a
// complete bundle.
func (r *Reader) Delta() *Delta { return r.delta }

// absent reports whether h is left out on purpose, as a delta expected at
// the target, and its recorded size.
func (r *Reader) absent(h v1.Hash) (AbsentBlob, bool) { return r.delta.lookup(h) }

// DeltaSummary is what inspect and verify report of a delta bundle.
type DeltaSummary struct {
	// Blobs and Bytes count the absent blobs, expected at the target.
	Blobs int   `json:"blobs"`
	Bytes int64 `json:"bytes"`
	// Bases are what the delta was made against.
	Bases []DeltaBase `json:"bases"`
	// Absent lists every expected blob (pkg's result leaves it out).
	Absent []AbsentBlob `json:"absent,omitempty"`
}

// Summary is d for reports; nil for a complete bundle.
func (d *Delta) Summary() *DeltaSummary {
	if d == nil {
		return nil
	}
	return &DeltaSummary{Blobs: len(d.Absent), Bytes: d.Bytes(), Bases: d.Bases, Absent: d.Absent}
}

// IsBundle tells a bundle (a tar, or a split bundle by any of its names)
// from a lock file, for --have: a tar has "ustar" at offset 257.
func IsBundle(path string) bool {
	if _, ok := splitBase(path); ok {
		return true
	}
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	b := make([]byte, block)
	if _, err := io.ReadFull(f, b); err != nil {
		return false
	}
	return string(b[257:262]) == "ustar"
}
