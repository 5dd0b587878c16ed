package bundle

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"path/filepath"
	"testing"

	"github.com/ferry-dev/ferry/pkg/graph"
	"github.com/ferry-dev/ferry/pkg/lock"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// mapFetcher serves content by digest from memory.
type mapFetcher map[v1.Hash][]byte

func (m mapFetcher) add(b []byte) v1.Descriptor {
	sum := sha256.Sum256(b)
	h := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	m[h] = b
	return v1.Descriptor{Digest: h, Size: int64(len(b))}
}

func (m mapFetcher) Manifest(_ context.Context, d v1.Descriptor) ([]byte, error) {
	if b, ok := m[d.Digest]; ok {
		return b, nil
	}
	return nil, fmt.Errorf("no manifest %s", d.Digest)
}

func (m mapFetcher) Blob(_ context.Context, d v1.Descriptor) (io.ReadCloser, error) {
	if b, ok := m[d.Digest]; ok {
		return io.NopCloser(bytes.NewReader(b)), nil
	}
	return nil, fmt.Errorf("no blob %s", d.Digest)
}

// A bundle is current only for the choice about foreign layers it was
// written with: left out (and recorded in the lock), or included.
func TestCurrentHonoursForeignLayers(t *testing.T) {
	src := mapFetcher{}
	cfg := src.add([]byte(`{"architecture":"amd64","os":"windows"}`))
	layer := src.add([]byte("a layer"))
	foreign := src.add([]byte("a foreign base layer"))
	m := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":%q,"digest":%q,"size":%d},"layers":[{"mediaType":%q,"digest":%q,"size":%d},{"mediaType":%q,"digest":%q,"size":%d}]}`,
		types.DockerManifestSchema2, types.DockerConfigJSON, cfg.Digest, cfg.Size,
		types.DockerForeignLayer, foreign.Digest, foreign.Size, types.DockerLayer, layer.Digest, layer.Size))
	root := src.add(m)
	root.MediaType = types.DockerManifestSchema2
	name := "example.com/win/app:1"

	write := func(path string, include bool) *lock.File {
		t.Helper()
		n, err := graph.Walk(t.Context(), src, root, graph.Options{IncludeNonDistributable: include})
		if err != nil {
			t.Fatal(err)
		}
		lf := lock.New()
		lf.Images = []lock.Image{{Image: name, Digest: root.Digest.String(), MediaType: string(root.MediaType), Size: root.Size}}
		stored := *lf
		stored.Images = append([]lock.Image(nil), lf.Images...)
		for _, d := range n.AllSkipped() {
			stored.Images[0].NonDistributable = append(stored.Images[0].NonDistributable, d.Digest.String())
		}
		if _, err := Write(t.Context(), path, []Entry{{Name: name, Root: n, Fetcher: src}}, Options{Lock: &stored}); err != nil {
			t.Fatal(err)
		}
		return lf
	}

	dir := t.TempDir()
	left := filepath.Join(dir, "left-out.tar")
	lf := write(left, false)
	if !Current(t.Context(), left, lf, false) {
		t.Error("a bundle that left the foreign layer out is not current for a run that leaves it out")
	}
	if Current(t.Context(), left, lf, true) {
		t.Error("a bundle without the foreign layer is current for a run that includes it")
	}

	with := filepath.Join(dir, "included.tar")
	lf = write(with, true)
	if !Current(t.Context(), with, lf, true) {
		t.Error("a bundle with the foreign layer is not current for a run that includes it")
	}
	if Current(t.Context(), with, lf, false) {
		t.Error("a bundle holding a foreign layer is current for a run that must leave it out")
	}
}
