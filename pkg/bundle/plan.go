package bundle

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"

	"github.com/ferry-dev/ferry/pkg/graph"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const block = 512

// plan is the whole tar laid out before a byte is fetched: every entry's
// header and data offset, and what fills it.
type plan struct {
	items []*item
	// size is the length of the tar, end-of-archive blocks included.
	size int64
	// hash identifies the layout; a journal of another plan is ignored.
	hash string
	// fetch are the items whose content comes from a Fetcher, by digest.
	fetch []*item
	// left counts, per image, the fetched items not yet written.
	left map[string]int
	// inlineBytes is what is written from memory.
	inlineBytes int64
	fetchBytes  int64
}

// item is one tar entry.
type item struct {
	name    string
	hdr     []byte
	off     int64 // where the header starts
	dataOff int64 // where the content starts
	size    int64
	// inline is content known up front: oci-layout, index.json, the lock,
	// every manifest as served. Nil for blobs fetched later.
	inline []byte
	dir    bool
	// desc, users and fetchers describe a blob to fetch: the images that
	// need it (for error messages and progress) and where it can come from,
	// first choice first.
	desc     v1.Descriptor
	users    []string
	fetchers []graph.Fetcher
}

// newPlan lays out the bundle for entries, which must have unique names
// and walked roots. lockYAML may be nil. With have, the blobs it lists are
// left out and recorded in DeltaFile (manifests always stay in).
func newPlan(entries []Entry, lockYAML []byte, have *Have) (*plan, error) {
	entries = slices.Clone(entries)
	sort.SliceStable(entries, func(i, j int) bool { return entries[i].Name < entries[j].Name })
	seen := map[string]bool{}
	idx := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{}}
	content := map[v1.Hash]*item{}
	p := &plan{left: map[string]int{}}
	// Artifact entries follow the images, in the order first met.
	var artifacts []v1.Descriptor
	artifactSeen := map[string]bool{}
	for _, e := range entries {
		switch {
		case e.Name == "":
			return nil, fmt.Errorf("bundle entry has no name")
		case seen[e.Name]:
			return nil, fmt.Errorf("bundle entry %q appears twice", e.Name)
		case e.Root == nil:
			return nil, fmt.Errorf("bundle entry %q has no walked image", e.Name)
		case e.Fetcher == nil:
			return nil, fmt.Errorf("bundle entry %q has no fetcher", e.Name)
		}
		seen[e.Name] = true
		root := e.Root
		d := v1.Descriptor{
			MediaType:   root.Desc.MediaType,
			Digest:      root.Desc.Digest,
			Size:        int64(len(root.Raw)),
			Annotations: map[string]string{AnnotationRefName: e.Name},
		}
		if n := containerdName(e.Name); n != "" {
			d.Annotations[AnnotationImageName] = n
		}
		idx.Manifests = append(idx.Manifests, d)
		graphs := []*graph.Node{root}
		for _, a := range e.Artifacts {
			if a.Root == nil {
				return nil, fmt.Errorf("bundle entry %q: artifact of %s has no walked manifest", e.Name, a.Subject)
			}
			if k := artifactKey(a); !artifactSeen[k] {
				artifactSeen[k] = true
				artifacts = append(artifacts, artifactDesc(a))
			}
			graphs = append(graphs, a.Root)
		}
		for _, m := range manifestsOf(graphs) {
			if err := graph.CheckBytes(m.Raw, v1.Descriptor{Digest: m.Desc.Digest, Size: int64(len(m.Raw))}); err != nil {
				return nil, fmt.Errorf("bundle entry %q: manifest %w", e.Name, err)
			}
			it := content[m.Desc.Digest]
			if it == nil {
				it = &item{name: blobName(m.Desc.Digest), desc: m.Desc}
				content[m.Desc.Digest] = it
			}
			// A manifest also listed as a blob (an artifact) is written
			// from the bytes at hand.
			it.inline, it.size, it.fetchers = m.Raw, int64(len(m.Raw)), nil
			addUser(it, e.Name)
			for _, b := range m.Blobs {
				bit := content[b.Digest]
				if bit == nil {
					if b.Size <= 0 && b.Digest != emptyDigest {
						return nil, fmt.Errorf("bundle entry %q: blob %s has no size in manifest %s", e.Name, b.Digest, m.Desc.Digest)
					}
					bit = &item{name: blobName(b.Digest), desc: b, size: b.Size}
					content[b.Digest] = bit
				} else if bit.size != b.Size && bit.inline == nil {
					return nil, fmt.Errorf("bundle entry %q: blob %s is %d bytes in manifest %s but %d bytes elsewhere", e.Name, b.Digest, b.Size, m.Desc.Digest, bit.size)
				}
				addUser(bit, e.Name)
				if bit.inline == nil && !slices.Contains(bit.fetchers, e.Fetcher) {
					bit.fetchers = append(bit.fetchers, e.Fetcher)
				}
			}
		}
	}
	idx.Manifests = append(idx.Manifests, artifacts...)
	var deltaJSON []byte
	if have != nil {
		absent := map[v1.Hash]*item{}
		for h, it := range content {
			if _, ok := have.Blobs[h]; ok && it.inline == nil {
				absent[h] = it
				delete(content, h)
			}
		}
		var err error
		if deltaJSON, err = encodeDelta(have, absent); err != nil {
			return nil, err
		}
	}
	if lockYAML != nil || deltaJSON != nil {
		idx.Annotations = map[string]string{}
	}
	if lockYAML != nil {
		idx.Annotations[AnnotationLockDigest] = lockDigest(lockYAML)
	}
	if deltaJSON != nil {
		idx.Annotations[AnnotationDeltaDigest] = sha256Of(deltaJSON)
	}
	indexJSON, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding index.json: %w", err)
	}
	indexJSON = append(indexJSON, '\n')

	p.items = append(p.items,
		&item{name: LayoutFile, inline: []byte(layoutJSON)},
		&item{name: IndexFile, inline: indexJSON},
	)
	if lockYAML != nil {
		p.items = append(p.items, &item{name: LockFile, inline: lockYAML})
	}
	if deltaJSON != nil {
		p.items = append(p.items, &item{name: DeltaFile, inline: deltaJSON})
	}
	p.items = append(p.items, &item{name: "blobs/", dir: true}, &item{name: blobDir, dir: true})
	digests := make([]v1.Hash, 0, len(content))
	for h := range content {
		digests = append(digests, h)
	}
	sort.Slice(digests, func(i, j int) bool { return digests[i].String() < digests[j].String() })
	for _, h := range digests {
		it := content[h]
		p.items = append(p.items, it)
		if it.inline == nil {
			p.fetch = append(p.fetch, it)
			p.fetchBytes += it.size
			for _, u := range it.users {
				p.left[u]++
			}
		}
	}

	sum := sha256.New()
	fmt.Fprintf(sum, "ferry bundle plan v1\n")
	var off int64
	for _, it := range p.items {
		if it.inline != nil {
			it.size = int64(len(it.inline))
			p.inlineBytes += it.size
		}
		hdr, err := header(it.name, it.size, it.dir)
		if err != nil {
			return nil, fmt.Errorf("tar header for %s: %w", it.name, err)
		}
		it.hdr, it.off = hdr, off
		it.dataOff = off + int64(len(hdr))
		off = it.dataOff + padded(it.size)
		sum.Write(hdr)
		if it.inline != nil && !it.dir {
			sum.Write(it.inline)
		}
	}
	// Two zero blocks end the archive.
	p.size = off + 2*block
	p.hash = "sha256:" + hex.EncodeToString(sum.Sum(nil))
	return p, nil
}

// manifestsOf lists the manifests of several graphs, each digest once.
func manifestsOf(roots []*graph.Node) []*graph.Node {
	var out []*graph.Node
	seen := map[v1.Hash]bool{}
	for _, r := range roots {
		for _, m := range r.Manifests() {
			if !seen[m.Desc.Digest] {
				seen[m.Desc.Digest] = true
				out = append(out, m)
			}
		}
	}
	return out
}

// emptyDigest is the digest of zero bytes, the one blob allowed size 0.
var emptyDigest = v1.Hash{Algorithm: "sha256", Hex: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}

func addUser(it *item, name string) {
	if !slices.Contains(it.users, name) {
		it.users = append(it.users, name)
	}
}

func padded(n int64) int64 { return (n + block - 1) / block * block }

// header renders one tar header with everything that could vary fixed:
// mode, owner, names, time and format.
func header(name string, size int64, dir bool) ([]byte, error) {
	h := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     name,
		Size:     size,
		Mode:     0o644,
		ModTime:  modTime,
		Format:   tar.FormatPAX,
	}
	if dir {
		h.Typeflag, h.Mode, h.Size = tar.TypeDir, 0o755, 0
	}
	var b bytes.Buffer
	// A fresh writer per header: only the header bytes are wanted.
	if err := tar.NewWriter(&b).WriteHeader(h); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// matches reports whether path already holds the bundle this plan lays
// out: the same size, and every tar header, index.json, the lock and every
// manifest byte for byte where the plan puts them. The blobs are not read
// again: a bundle reaches its final path only once each has been checked
// (ferry verify re-hashes them all). A rerun after success is then cheap.
func (p *plan) matches(path string) (bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() || st.Size() != p.size {
		return false, nil
	}
	return p.matchesAt(f), nil
}

// matchesAt reports whether every header and inline content of the plan
// is in place in ra, a file of the plan's size.
func (p *plan) matchesAt(ra io.ReaderAt) bool {
	var buf []byte
	same := func(off int64, want []byte) bool {
		buf = slices.Grow(buf[:0], len(want))[:len(want)]
		_, err := ra.ReadAt(buf, off)
		return err == nil && bytes.Equal(buf, want)
	}
	for _, it := range p.items {
		if !same(it.off, it.hdr) || (it.inline != nil && !same(it.dataOff, it.inline)) {
			return false
		}
	}
	return true
}
