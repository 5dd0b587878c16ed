package bundle

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/ferry-dev/ferry/pkg/graph"
	"github.com/ferry-dev/ferry/pkg/lock"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Reader serves a bundle's manifests and blobs straight from the tar: it
// implements graph.Fetcher and is safe for concurrent use.
type Reader struct {
	path string
	// f is the bundle's content; closer closes the file behind it.
	f      io.ReaderAt
	closer io.Closer
	size   int64
	blobs  map[v1.Hash]section
	refs   []Ref
	lock   *lock.File
	// trailing counts the bytes after the end of the tar archive.
	trailing int64
	// artifacts are the index.json entries of supply-chain artifacts.
	artifacts []ArtifactRef
	// delta is DeltaFile, nil for a complete bundle.
	delta *Delta
	// indexDigest is the sha256 of index.json.
	indexDigest string
}

var _ graph.Fetcher = (*Reader)(nil)

// section is where an entry's content sits in the file.
type section struct{ off, size int64 }

// ignored are files other tools put beside an OCI layout (docker save) that
// a reader may skip.
var ignored = map[string]bool{"manifest.json": true, "repositories": true}

// Open indexes the bundle at path: it reads every tar header once and
// refuses anything a bundle should not hold (see ErrInvalid). Blobs are
// checked when read. The lock must agree with index.json (see
// LockMismatchError). A plain OCI-layout tar from another tool (skopeo's
// oci-archive, docker save) opens too, without a lock: its index.json
// entries stand for themselves.
//
// A split bundle opens from its parts file, from any of its parts or from
// its base name when no file of that name exists (see PartPath): the parts
// are read as one file, in place.
func Open(path string) (*Reader, error) {
	if base, ok := splitBase(path); ok {
		return openSplit(path, base)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening bundle: %w", err)
	}
	r, err := open(path, f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("opening bundle %s: %w", path, err)
	}
	r.closer = f
	return r, nil
}

func open(path string, f *os.File) (*Reader, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, invalidf("not a regular file")
	}
	return openReaderAt(path, f, st.Size())
}

// openReaderAt indexes a bundle of size bytes read through ra; the fuzz test
// calls it on memory, without a file per input.
func openReaderAt(path string, ra io.ReaderAt, size int64) (*Reader, error) {
	r := &Reader{path: path, f: ra, size: size, blobs: map[v1.Hash]section{}}
	if err := r.load(); err != nil {
		return nil, err
	}
	return r, nil
}

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

func (r *Reader) load() error {
	files := map[string]section{}
	seen := map[string]bool{}
	var end int64
	// The section reader tells where each entry's data starts, and lets the
	// tar reader seek past data rather than read it.
	sr := io.NewSectionReader(r.f, 0, r.size)
	tr := tar.NewReader(sr)
	for n := 0; ; n++ {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return invalidf("truncated tar (after %d entries)", n)
			}
			return invalidf("not a readable tar: %v", err)
		}
		if n >= maxEntries {
			return invalidf("more than %d entries", maxEntries)
		}
		pos, err := sr.Seek(0, io.SeekCurrent)
		if err != nil {
			return err
		}
		name, err := entryName(h)
		if err != nil {
			return err
		}
		if seen[name] {
			return invalidf("%q appears twice", h.Name)
		}
		seen[name] = true
		if h.Typeflag == tar.TypeDir {
			end = pos
			continue
		}
		if h.Size < 0 || pos+h.Size > r.size {
			return invalidf("truncated tar: %s needs %d bytes at offset %d, the file has %d", name, h.Size, pos, r.size)
		}
		end = pos + padded(h.Size)
		s := section{off: pos, size: h.Size}
		if hex, ok := strings.CutPrefix(name, blobDir); ok {
			r.blobs[v1.Hash{Algorithm: "sha256", Hex: hex}] = s
			continue
		}
		files[name] = s
	}
	pos, err := sr.Seek(0, io.SeekCurrent)
	if err != nil {
		return err
	}
	if pos < end+2*block {
		return invalidf("truncated tar: no end-of-archive marker")
	}
	if r.trailing, err = r.trailingBytes(pos); err != nil {
		return err
	}
	return r.loadFiles(files)
}

// maxPadding is how many zero bytes past the end-of-archive marker pass for
// padding to a tar record (GNU tar pads to 10 KiB by default) rather than
// trailing data.
const maxPadding = 1 << 20

// trailingBytes counts what follows the end of the archive at pos: nothing
// when it is at most maxPadding zero bytes.
func (r *Reader) trailingBytes(pos int64) (int64, error) {
	n := r.size - pos
	if n <= 0 || n > maxPadding {
		return max(n, 0), nil
	}
	b := make([]byte, n)
	if _, err := r.f.ReadAt(b, pos); err != nil {
		return 0, fmt.Errorf("reading past the end of the archive: %w", err)
	}
	for _, c := range b {
		if c != 0 {
			return n, nil
		}
	}
	return 0, nil
}

// entryName checks one header and returns its clean name: only the layout
// files, the two blob directories and sha256 blobs, as regular files or
// directories, with relative paths that stay inside the archive.
func entryName(h *tar.Header) (string, error) {
	raw := h.Name
	name := strings.TrimPrefix(raw, "./")
	switch {
	case strings.HasPrefix(name, "/"):
		return "", invalidf("%q is an absolute path", raw)
	case strings.Contains(name, "\\"):
		return "", invalidf("%q contains a backslash", raw)
	}
	trimmed := strings.TrimSuffix(name, "/")
	if trimmed != "" {
		for _, c := range strings.Split(trimmed, "/") {
			switch c {
			case "..":
				return "", invalidf("%q leaves the archive (..)", raw)
			case ".", "":
				return "", invalidf("%q is not a clean path", raw)
			}
		}
	}
	for k := range h.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return "", invalidf("%q is a sparse file", raw)
		}
	}
	switch h.Typeflag {
	case tar.TypeDir:
		if trimmed == "" || trimmed == "blobs" || trimmed+"/" == blobDir {
			return trimmed + "/", nil
		}
		return "", invalidf("unexpected directory %q: a bundle holds only blobs/sha256/", raw)
	case tar.TypeReg, '\x00':
	case tar.TypeSymlink:
		return "", invalidf("%q is a symbolic link", raw)
	case tar.TypeLink:
		return "", invalidf("%q is a hard link", raw)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return "", invalidf("%q is a device or FIFO", raw)
	default:
		return "", invalidf("%q has unsupported tar type %q", raw, h.Typeflag)
	}
	switch {
	case name == LayoutFile, name == IndexFile, name == LockFile, name == DeltaFile, ignored[name]:
		return name, nil
	case strings.HasPrefix(name, blobDir) && hexRE.MatchString(name[len(blobDir):]):
		return name, nil
	}
	return "", invalidf("unexpected file %q: a bundle holds oci-layout, index.json, %s, %s and blobs/sha256/<64 hex>", raw, LockFile, DeltaFile)
}

// loadFiles reads and checks oci-layout, index.json and the lock.
func (r *Reader) loadFiles(files map[string]section) error {
	layout, err := r.small(files, LayoutFile, 4<<10)
	if err != nil {
		return err
	}
	var l struct {
		Version string `json:"imageLayoutVersion"`
	}
	if err := json.Unmarshal(layout, &l); err != nil || l.Version == "" {
		return invalidf("oci-layout is not an OCI layout marker")
	}
	raw, err := r.small(files, IndexFile, MaxIndexSize)
	if err != nil {
		return err
	}
	var idx v1.IndexManifest
	if err := json.Unmarshal(raw, &idx); err != nil {
		return invalidf("index.json is not a valid index: %v", err)
	}
	r.indexDigest = sha256Of(raw)
	if _, ok := files[DeltaFile]; ok {
		b, err := r.small(files, DeltaFile, MaxDeltaSize)
		if err != nil {
			return err
		}
		if err := r.parseDelta(b, idx.Annotations[AnnotationDeltaDigest]); err != nil {
			return err
		}
	} else if d := idx.Annotations[AnnotationDeltaDigest]; d != "" {
		return invalidf("index.json says the bundle is a delta (%s %s) but it has no %s: the bundle was altered after ferry wrote it", AnnotationDeltaDigest, d, DeltaFile)
	}
	for i, d := range idx.Manifests {
		if d.Digest.Algorithm != "sha256" || !hexRE.MatchString(d.Digest.Hex) {
			return invalidf("index.json manifests[%d]: digest %q is not sha256:<64 hex>", i, d.Digest)
		}
		if d.Size < 0 || d.Size > graph.MaxManifestSize {
			return invalidf("index.json manifests[%d]: size %d out of range", i, d.Size)
		}
		if _, ok := d.Annotations[AnnotationSubject]; ok {
			a, err := readArtifactRef(i, d)
			if err != nil {
				return err
			}
			r.artifacts = append(r.artifacts, a)
			continue
		}
		r.refs = append(r.refs, Ref{Name: d.Annotations[AnnotationRefName], Desc: d})
	}
	if _, ok := files[LockFile]; ok {
		b, err := r.small(files, LockFile, MaxLockSize)
		if err != nil {
			return err
		}
		lk, err := lock.Parse(b)
		if err != nil {
			return invalidf("%s: %v", LockFile, err)
		}
		r.lock = lk
		return r.checkLock(&idx, b)
	}
	return r.checkLock(&idx, nil)
}

func (r *Reader) small(files map[string]section, name string, limit int64) ([]byte, error) {
	s, ok := files[name]
	if !ok {
		return nil, invalidf("no %s: not an OCI image layout", name)
	}
	if s.size > limit {
		return nil, invalidf("%s is %d bytes, more than the %d allowed", name, s.size, limit)
	}
	b := make([]byte, s.size)
	if _, err := r.f.ReadAt(b, s.off); err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	return b, nil
}

// Path is the bundle's file name.
func (r *Reader) Path() string { return r.path }

// Size is the bundle's length in bytes.
func (r *Reader) Size() int64 { return r.size }

// Entries lists index.json's images and indexes in order.
func (r *Reader) Entries() []Ref { return append([]Ref(nil), r.refs...) }

// Lock is the lock stored in the bundle, nil when there is none (an OCI
// layout written by another tool). Open has checked that it agrees with
// index.json.
func (r *Reader) Lock() *lock.File { return r.lock }

// TrailingBytes is how many bytes follow the end of the tar archive (zero
// padding aside): a file that is not exactly what was written, appended
// to or copied over a longer one. Readers ignore them; Verify refuses them.
func (r *Reader) TrailingBytes() int64 { return r.trailing }

// IndexDigest is the sha256 of the bundle's index.json: it pins every
// image and the lock, and names the bundle as a delta's base.
func (r *Reader) IndexDigest() string { return r.indexDigest }

// Has reports whether the bundle holds the blob or manifest h, and its size.
func (r *Reader) Has(h v1.Hash) (int64, bool) {
	s, ok := r.blobs[h]
	return s.size, ok
}

func (r *Reader) find(what string, d v1.Descriptor) (section, error) {
	s, ok := r.blobs[d.Digest]
	if !ok {
		return s, fmt.Errorf("%s %s: %w", what, d.Digest, ErrNotFound)
	}
	if d.Size > 0 && d.Size != s.size {
		return s, fmt.Errorf("%s %s: %w: %d bytes in the bundle, its descriptor says %d", what, d.Digest, graph.ErrDigestMismatch, s.size, d.Size)
	}
	return s, nil
}

// Manifest returns the manifest d names, checked against its digest.
func (r *Reader) Manifest(_ context.Context, d v1.Descriptor) ([]byte, error) {
	s, err := r.find("manifest", d)
	if err != nil {
		return nil, err
	}
	if s.size > graph.MaxManifestSize {
		return nil, fmt.Errorf("manifest %s: %w: %d bytes", d.Digest, graph.ErrTooLarge, s.size)
	}
	b := make([]byte, s.size)
	if _, err := r.f.ReadAt(b, s.off); err != nil {
		return nil, fmt.Errorf("reading manifest %s from %s: %w", d.Digest, r.path, err)
	}
	if err := graph.CheckBytes(b, v1.Descriptor{Digest: d.Digest, Size: s.size}); err != nil {
		return nil, fmt.Errorf("manifest in %s: %w", r.path, err)
	}
	return b, nil
}

// Blob streams the blob d names from its place in the file. The reader
// checks what it serves: reading to the end fails with
// graph.ErrDigestMismatch when the bytes do not hash to d.Digest.
func (r *Reader) Blob(_ context.Context, d v1.Descriptor) (io.ReadCloser, error) {
	s, err := r.find("blob", d)
	if err != nil {
		return nil, err
	}
	return graph.Verify(io.NopCloser(io.NewSectionReader(r.f, s.off, s.size)), v1.Descriptor{Digest: d.Digest, Size: s.size}), nil
}

// Walk walks one entry. Non-distributable layers absent from the bundle
// are moved to Skipped; every other blob stays in Blobs, present or not.
func (r *Reader) Walk(ctx context.Context, ref Ref) (*graph.Node, error) {
	n, err := graph.Walk(ctx, r, ref.Desc, graph.Options{IncludeNonDistributable: true})
	if err != nil {
		return nil, err
	}
	var fix func(*graph.Node)
	fix = func(n *graph.Node) {
		var kept []v1.Descriptor
		for _, b := range n.Blobs {
			if _, ok := r.blobs[b.Digest]; !ok && !b.MediaType.IsDistributable() {
				n.Skipped = append(n.Skipped, b)
				continue
			}
			kept = append(kept, b)
		}
		n.Blobs = kept
		for _, c := range n.Children {
			fix(c)
		}
	}
	fix(n)
	return n, nil
}

// Close closes the file; readers handed out stop working.
func (r *Reader) Close() error {
	if r.closer == nil {
		return nil
	}
	return r.closer.Close()
}
