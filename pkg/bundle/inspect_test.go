package bundle

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/ferry-dev/ferry/pkg/graph"
	"github.com/ferry-dev/ferry/pkg/lock"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// TestInspectUnknownPlatform: an image whose config names no os or
// architecture, outside any index, is of platform "unknown", not "" or "?".
func TestInspectUnknownPlatform(t *testing.T) {
	src := mapFetcher{}
	cfg := src.add([]byte(`{"config":{}}`))
	layer := src.add([]byte("a layer"))
	m := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":%q,"digest":%q,"size":%d},"layers":[{"mediaType":%q,"digest":%q,"size":%d}]}`,
		types.OCIManifestSchema1, types.OCIConfigJSON, cfg.Digest, cfg.Size, types.OCILayer, layer.Digest, layer.Size))
	root := src.add(m)
	root.MediaType = types.OCIManifestSchema1
	n, err := graph.Walk(t.Context(), src, root, graph.Options{})
	if err != nil {
		t.Fatal(err)
	}
	name := "example.com/no/platform:1"
	lf := lock.New()
	lf.Images = []lock.Image{{Image: name, Digest: root.Digest.String(), MediaType: string(root.MediaType), Size: root.Size}}
	path := filepath.Join(t.TempDir(), "bundle.tar")
	if _, err := Write(t.Context(), path, []Entry{{Name: name, Root: n, Fetcher: src}}, Options{Lock: lf}); err != nil {
		t.Fatal(err)
	}
	s, err := Inspect(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Images) != 1 || len(s.Images[0].Platforms) != 1 || s.Images[0].Platforms[0].Platform != PlatformUnknown {
		t.Errorf("summary %+v: want one image of platform %q", s.Images, PlatformUnknown)
	}
}
