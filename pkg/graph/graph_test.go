package graph

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// memFetcher serves content from a map, counting manifest fetches.
type memFetcher struct {
	content map[v1.Hash][]byte
	mu      sync.Mutex
	fetches int
	// gate, when set, is called before each manifest is served.
	gate func(d v1.Descriptor) error
}

func (m *memFetcher) put(b []byte) v1.Hash {
	h, _, _ := v1.SHA256(bytes.NewReader(b))
	m.content[h] = b
	return h
}

func (m *memFetcher) Manifest(_ context.Context, d v1.Descriptor) ([]byte, error) {
	m.mu.Lock()
	m.fetches++
	m.mu.Unlock()
	if m.gate != nil {
		if err := m.gate(d); err != nil {
			return nil, err
		}
	}
	b, ok := m.content[d.Digest]
	if !ok {
		return nil, fmt.Errorf("no %s", d.Digest)
	}
	return b, nil
}

func (m *memFetcher) Blob(_ context.Context, d v1.Descriptor) (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(m.content[d.Digest])), nil
}

func desc(mt types.MediaType, h v1.Hash, b []byte) v1.Descriptor {
	return v1.Descriptor{MediaType: mt, Digest: h, Size: int64(len(b))}
}

func TestWalk(t *testing.T) {
	f := &memFetcher{content: map[v1.Hash][]byte{}}
	cfg := []byte(`{"architecture":"amd64"}`)
	cfgH := f.put(cfg)
	layer := []byte("shared layer")
	layerH := f.put(layer)
	foreign := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("f", 64)}
	img := []byte(fmt.Sprintf(`{
   "schemaVersion": 2,
   "mediaType": "application/vnd.oci.image.manifest.v1+json",
   "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": %q, "size": %d},
   "layers": [
      {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": %q, "size": %d},
      {"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "digest": %q, "size": 5}
   ]
}`, cfgH, len(cfg), layerH, len(layer), foreign))
	imgH := f.put(img)
	inner := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":%d}]}`, imgH, len(img)))
	innerH := f.put(inner)
	outer := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json","digest":%q,"size":%d},{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":%d}]}`, innerH, len(inner), imgH, len(img)))
	outerH := f.put(outer)

	n, err := Walk(context.Background(), f, desc(types.OCIImageIndex, outerH, outer), Options{})
	if err != nil {
		t.Fatal(err)
	}
	var order []v1.Hash
	for _, m := range n.Manifests() {
		order = append(order, m.Desc.Digest)
	}
	if want := []v1.Hash{imgH, innerH, outerH}; fmt.Sprint(order) != fmt.Sprint(want) {
		t.Errorf("Manifests() = %v, want children first, each once: %v", order, want)
	}
	if got := n.AllBlobs(); len(got) != 2 {
		t.Errorf("AllBlobs() = %v, want config and one layer", got)
	}
	if got := n.AllSkipped(); len(got) != 1 || got[0].Digest != foreign {
		t.Errorf("AllSkipped() = %v, want the foreign layer", got)
	}
	n, err = Walk(context.Background(), f, desc(types.OCIImageIndex, outerH, outer), Options{IncludeNonDistributable: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := n.AllBlobs(); len(got) != 3 {
		t.Errorf("with non-distributable: AllBlobs() = %d blobs, want 3", len(got))
	}
}

func TestWalkRefuses(t *testing.T) {
	f := &memFetcher{content: map[v1.Hash][]byte{}}
	good := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"digest":"sha256:` + strings.Repeat("0", 64) + `","size":1},"layers":[]}`)
	goodH := f.put(good)
	other := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("9", 64)}
	f.content[other] = good // served under the wrong digest

	_, err := Walk(context.Background(), f, desc(types.OCIManifestSchema1, other, good), Options{})
	if !errors.Is(err, ErrDigestMismatch) {
		t.Errorf("wrong bytes for a digest: err = %v, want ErrDigestMismatch", err)
	}
	_, err = Walk(context.Background(), f, v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: goodH, Size: MaxManifestSize + 1}, Options{})
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("huge manifest: err = %v, want ErrTooLarge", err)
	}
	notJSON := []byte("{nope")
	h := f.put(notJSON)
	_, err = Walk(context.Background(), f, desc(types.OCIImageIndex, h, notJSON), Options{})
	if err == nil || !strings.Contains(err.Error(), "not valid JSON") {
		t.Errorf("garbage index: err = %v", err)
	}
}

func TestVerify(t *testing.T) {
	b := []byte("hello blob")
	h, _, _ := v1.SHA256(bytes.NewReader(b))
	tests := []struct {
		name    string
		content []byte
		d       v1.Descriptor
		ok      bool
	}{
		{"good", b, v1.Descriptor{Digest: h, Size: int64(len(b))}, true},
		{"good, size unknown", b, v1.Descriptor{Digest: h}, true},
		{"tampered", []byte("hellO blob"), v1.Descriptor{Digest: h, Size: int64(len(b))}, false},
		{"short", b[:4], v1.Descriptor{Digest: h, Size: int64(len(b))}, false},
		{"long", append(append([]byte{}, b...), 'x'), v1.Descriptor{Digest: h, Size: int64(len(b))}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := io.Copy(io.Discard, Verify(io.NopCloser(bytes.NewReader(tt.content)), tt.d))
			if tt.ok && err != nil {
				t.Errorf("err = %v, want none", err)
			}
			if !tt.ok && !errors.Is(err, ErrDigestMismatch) {
				t.Errorf("err = %v, want ErrDigestMismatch", err)
			}
		})
	}
}

func TestWalkFetchesRepeatedManifestsOnce(t *testing.T) {
	f := &memFetcher{content: map[v1.Hash][]byte{}}
	img := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:` + strings.Repeat("0", 64) + `","size":1},"layers":[]}`)
	h := f.put(img)
	// Each level lists the one below 300 times: without memoising, the walk
	// would fetch 300^3 manifests.
	child := desc(types.OCIManifestSchema1, h, img)
	for level := 0; level < 3; level++ {
		var entries []string
		for i := 0; i < 300; i++ {
			entries = append(entries, fmt.Sprintf(`{"mediaType":%q,"digest":%q,"size":%d}`, child.MediaType, child.Digest, child.Size))
		}
		b := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[` + strings.Join(entries, ",") + `]}`)
		child = desc(types.OCIImageIndex, f.put(b), b)
	}
	if _, err := Walk(context.Background(), f, child, Options{}); err != nil {
		t.Fatal(err)
	}
	if f.fetches != 4 {
		t.Errorf("fetched %d manifests, want 4 (each once)", f.fetches)
	}
}

func TestWalkRefusesDeepNesting(t *testing.T) {
	f := &memFetcher{content: map[v1.Hash][]byte{}}
	img := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:` + strings.Repeat("0", 64) + `","size":1},"layers":[]}`)
	child := desc(types.OCIManifestSchema1, f.put(img), img)
	nest := func(levels int) v1.Descriptor {
		d := child
		for i := 0; i < levels; i++ {
			b := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":%q,"digest":%q,"size":%d}]}`, d.MediaType, d.Digest, d.Size))
			d = desc(types.OCIImageIndex, f.put(b), b)
		}
		return d
	}
	if _, err := Walk(context.Background(), f, nest(MaxDepth), Options{}); err != nil {
		t.Errorf("%d nested indexes: %v, want them accepted", MaxDepth, err)
	}
	_, err := Walk(context.Background(), f, nest(MaxDepth+1), Options{})
	if err == nil || !strings.Contains(err.Error(), "nest more than") {
		t.Errorf("%d nested indexes: err = %v, want a refusal", MaxDepth+1, err)
	}
}

// The platforms of an index are fetched at once: each child waits until
// all three are in flight, which a walk fetching them one by one never
// reaches. Errors still surface for the child they belong to.
func TestWalkFetchesAnIndexsChildrenAtOnce(t *testing.T) {
	f := &memFetcher{content: map[v1.Hash][]byte{}}
	var kids []string
	var descs []v1.Descriptor
	for i := range 3 {
		img := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[]}`, strings.Repeat("0", 64), i+1))
		d := desc(types.OCIManifestSchema1, f.put(img), img)
		descs = append(descs, d)
		kids = append(kids, fmt.Sprintf(`{"mediaType":%q,"digest":%q,"size":%d}`, d.MediaType, d.Digest, d.Size))
	}
	idx := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[` + strings.Join(kids, ",") + `]}`)
	root := desc(types.OCIImageIndex, f.put(idx), idx)

	var mu sync.Mutex
	inFlight := 0
	all := make(chan struct{})
	f.gate = func(d v1.Descriptor) error {
		if d.Digest == root.Digest {
			return nil
		}
		mu.Lock()
		inFlight++
		if inFlight == 3 {
			close(all)
		}
		mu.Unlock()
		select {
		case <-all:
		case <-time.After(5 * time.Second):
			return errors.New("children were fetched one at a time")
		}
		if d.Digest == descs[1].Digest {
			return errors.New("second child unavailable")
		}
		return nil
	}
	_, err := Walk(context.Background(), f, root, Options{})
	if err == nil || !strings.Contains(err.Error(), "second child unavailable") {
		t.Fatalf("Walk: %v, want the second child's own error", err)
	}
}
