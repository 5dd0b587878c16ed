// Package graph walks the content-addressed graph of an image: an index, its
// child manifests (recursively), and each manifest's config and layers. It
// keeps every manifest as the raw bytes served, checked against its digest.
package graph

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// MaxManifestSize caps a manifest or index, as registries do (distribution
// refuses more than 4 MiB on PUT), so a hostile source cannot exhaust memory.
const MaxManifestSize = 4 << 20

// ManifestAccept is the Accept header of every manifest request. A registry
// picks what it serves from it: distribution answers a client that does not
// accept manifest lists with one platform's manifest instead of the list,
// and one that accepts nothing newer with a schema 1 conversion.
var ManifestAccept = strings.Join([]string{
	string(types.OCIImageIndex),
	string(types.OCIManifestSchema1),
	string(types.DockerManifestList),
	string(types.DockerManifestSchema2),
	"*/*",
}, ", ")

// Fetcher serves raw manifests and blobs, e.g. of one registry repository or
// of a bundle. Its methods are called concurrently.
type Fetcher interface {
	// Manifest returns the raw bytes of the manifest d names. The caller
	// checks them against d.Digest and d.Size.
	Manifest(ctx context.Context, d v1.Descriptor) ([]byte, error)
	// Blob streams the blob d names. The caller checks the bytes.
	Blob(ctx context.Context, d v1.Descriptor) (io.ReadCloser, error)
}

// Node is a manifest or an index together with what it refers to.
type Node struct {
	// Desc describes the node: digest, size, media type, and the platform
	// when it is the child of an index.
	Desc v1.Descriptor
	// Raw is the manifest exactly as served.
	Raw []byte
	// Children are the manifests of an index, in index order.
	Children []*Node
	// Blobs are an image manifest's config and layers, in manifest order,
	// without the non-distributable layers left out (see Skipped).
	Blobs []v1.Descriptor
	// Skipped are non-distributable layers that were not included.
	Skipped []v1.Descriptor
}

// Options tune a walk.
type Options struct {
	// IncludeNonDistributable keeps foreign layers in Blobs.
	IncludeNonDistributable bool
}

// ErrDigestMismatch is returned when content does not hash to the digest
// that named it.
var ErrDigestMismatch = errors.New("digest mismatch")

// ErrTooLarge is returned for a manifest over MaxManifestSize.
var ErrTooLarge = errors.New("manifest too large")

// Walk fetches root and, recursively, every manifest it refers to.
// Blobs are not fetched; their descriptors are collected.
func Walk(ctx context.Context, f Fetcher, root v1.Descriptor, o Options) (*Node, error) {
	w := &walker{f: f, o: o, path: map[v1.Hash]bool{}, seen: map[v1.Hash]*Node{}, pre: map[v1.Hash]*fetched{}}
	return w.walk(ctx, root, 0)
}

// MaxDepth bounds how deeply indexes may nest; real images use one or two levels.
const MaxDepth = 16

type walker struct {
	f    Fetcher
	o    Options
	path map[v1.Hash]bool
	// seen fetches each manifest once, however often an index repeats it,
	// so a hostile index cannot make the walk exponential.
	seen map[v1.Hash]*Node
	// pre holds children of an index fetched ahead, all at once.
	pre map[v1.Hash]*fetched
}

// fetched is one manifest fetched ahead of the walk.
type fetched struct {
	raw []byte
	err error
}

// prefetchJobs bounds the manifests of one index fetched at once.
const prefetchJobs = 8

// prefetch fetches the children of an index at once, so that an image of
// n platforms costs two round trips to the registry instead of n+1 (a
// remote registry's round trip is tens of milliseconds). The walk then
// takes them in order; an error is kept and reported where the walk
// meets that child, as if it had been fetched there.
func (w *walker) prefetch(ctx context.Context, children []v1.Descriptor, depth int) {
	if depth > MaxDepth {
		return // refused by the walk before any fetch
	}
	var todo []v1.Descriptor
	queued := map[v1.Hash]bool{}
	for _, c := range children {
		if _, ok := w.seen[c.Digest]; ok || queued[c.Digest] || w.pre[c.Digest] != nil || w.path[c.Digest] || c.Size > MaxManifestSize || c.MediaType.IsSchema1() {
			continue
		}
		queued[c.Digest] = true
		todo = append(todo, c)
	}
	if len(todo) < 2 {
		return
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, prefetchJobs)
	for _, c := range todo {
		f := &fetched{}
		w.pre[c.Digest] = f
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			f.raw, f.err = w.f.Manifest(ctx, c)
		}()
	}
	wg.Wait()
}

func (w *walker) walk(ctx context.Context, d v1.Descriptor, depth int) (*Node, error) {
	f, o, path := w.f, w.o, w.path
	if path[d.Digest] {
		return nil, fmt.Errorf("index %s refers to itself through its children: a cycle", d.Digest)
	}
	if depth > MaxDepth {
		return nil, fmt.Errorf("manifest %s: indexes nest more than %d deep", d.Digest, MaxDepth)
	}
	if n, ok := w.seen[d.Digest]; ok {
		c := *n
		c.Desc = d
		if c.Desc.MediaType == "" {
			c.Desc.MediaType = n.Desc.MediaType
		}
		return &c, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if d.Size > MaxManifestSize {
		return nil, fmt.Errorf("manifest %s: %w: %d bytes, limit %d", d.Digest, ErrTooLarge, d.Size, MaxManifestSize)
	}
	var raw []byte
	var err error
	if p := w.pre[d.Digest]; p != nil {
		delete(w.pre, d.Digest)
		raw, err = p.raw, p.err
	} else {
		raw, err = f.Manifest(ctx, d)
	}
	if err != nil {
		return nil, err
	}
	if err := CheckBytes(raw, d); err != nil {
		return nil, fmt.Errorf("manifest %w", err)
	}
	if d.MediaType == "" {
		d.MediaType = sniffMediaType(raw)
	}
	n := &Node{Desc: d, Raw: raw}
	switch {
	case d.MediaType.IsIndex():
		var idx v1.IndexManifest
		if err := json.Unmarshal(raw, &idx); err != nil {
			return nil, fmt.Errorf("index %s is not valid JSON: %w", d.Digest, err)
		}
		path[d.Digest] = true
		defer delete(path, d.Digest)
		w.prefetch(ctx, idx.Manifests, depth+1)
		for _, c := range idx.Manifests {
			// Every child is walked as a manifest, so that the index stays
			// complete: attestations and other artifacts are OCI manifests
			// with a config, and are copied like images.
			if c.MediaType.IsSchema1() {
				return nil, fmt.Errorf("index %s: child %s is a Docker schema 1 manifest, which ferry does not copy", d.Digest, c.Digest)
			}
			child, err := w.walk(ctx, c, depth+1)
			if err != nil {
				return nil, err
			}
			n.Children = append(n.Children, child)
		}
	case d.MediaType.IsImage() || isManifestLike(raw):
		var m v1.Manifest
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, fmt.Errorf("manifest %s is not valid JSON: %w", d.Digest, err)
		}
		n.Blobs = append(n.Blobs, m.Config)
		for _, l := range m.Layers {
			if !o.IncludeNonDistributable && !l.MediaType.IsDistributable() {
				n.Skipped = append(n.Skipped, l)
				continue
			}
			n.Blobs = append(n.Blobs, l)
		}
	case d.MediaType.IsSchema1():
		return nil, fmt.Errorf("manifest %s is Docker schema 1 (%s), which ferry does not copy", d.Digest, d.MediaType)
	default:
		return nil, fmt.Errorf("manifest %s has unsupported media type %q", d.Digest, d.MediaType)
	}
	w.seen[d.Digest] = n
	return n, nil
}

// isManifestLike accepts OCI artifacts whose manifest has an unusual media
// type but the image manifest's shape.
func isManifestLike(raw []byte) bool {
	var probe struct {
		Config *v1.Descriptor `json:"config"`
	}
	return json.Unmarshal(raw, &probe) == nil && probe.Config != nil
}

// sniffMediaType reads the mediaType field a manifest declares.
func sniffMediaType(raw []byte) types.MediaType {
	var probe struct {
		MediaType types.MediaType `json:"mediaType"`
		Manifests json.RawMessage `json:"manifests"`
	}
	_ = json.Unmarshal(raw, &probe)
	if probe.MediaType != "" {
		return probe.MediaType
	}
	if probe.Manifests != nil {
		return types.OCIImageIndex
	}
	return types.OCIManifestSchema1
}

// CheckBytes checks b against d's digest and, when known, its size.
func CheckBytes(b []byte, d v1.Descriptor) error {
	if d.Size > 0 && int64(len(b)) != d.Size {
		return fmt.Errorf("%s: %w: got %d bytes, want %d", d.Digest, ErrDigestMismatch, len(b), d.Size)
	}
	h, _, err := v1.SHA256(bytesReader(b))
	if err != nil {
		return err
	}
	if h != d.Digest {
		return fmt.Errorf("%w: content hashes to %s, want %s", ErrDigestMismatch, h, d.Digest)
	}
	return nil
}

// Manifests lists every manifest of the graph children first, each digest
// once: the order a registry accepts them in.
func (n *Node) Manifests() []*Node {
	var out []*Node
	seen := map[v1.Hash]bool{}
	var visit func(*Node)
	visit = func(n *Node) {
		if seen[n.Desc.Digest] {
			return
		}
		seen[n.Desc.Digest] = true
		for _, c := range n.Children {
			visit(c)
		}
		out = append(out, n)
	}
	visit(n)
	return out
}

// AllBlobs lists every blob of the graph, each digest once, in walk order.
func (n *Node) AllBlobs() []v1.Descriptor {
	var out []v1.Descriptor
	seen := map[v1.Hash]bool{}
	for _, m := range n.Manifests() {
		for _, b := range m.Blobs {
			if !seen[b.Digest] {
				seen[b.Digest] = true
				out = append(out, b)
			}
		}
	}
	return out
}

// AllSkipped lists every non-distributable layer left out, each digest once.
func (n *Node) AllSkipped() []v1.Descriptor {
	var out []v1.Descriptor
	seen := map[v1.Hash]bool{}
	for _, m := range n.Manifests() {
		for _, b := range m.Skipped {
			if !seen[b.Digest] {
				seen[b.Digest] = true
				out = append(out, b)
			}
		}
	}
	return out
}
