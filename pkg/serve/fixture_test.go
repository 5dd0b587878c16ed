package serve

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/ferry-dev/ferry/pkg/bundle"
)

// blob is stored content with its digest.
type blob struct {
	digest string
	data   []byte
}

func newBlob(data []byte) blob {
	s := sha256.Sum256(data)
	return blob{"sha256:" + hex.EncodeToString(s[:]), data}
}

func (b blob) desc(mediaType string) map[string]any {
	return map[string]any{"mediaType": mediaType, "digest": b.digest, "size": len(b.data)}
}

// fixture is a bundle written by hand, as a plain tar, with what the tests
// look for in it.
type fixture struct {
	path string
	// web is example.com/app/web:v1, an OCI index of amd64 and arm64.
	web, webAMD64, webARM64 blob
	// layer is the amd64 image's layer; armLayer the arm64 one's.
	layer, armLayer blob
	// nginx is nginx:1.25, a Docker schema2 image; nginxLayer its layer.
	nginx, nginxLayer blob
	// sig refers to web (subject), artifact type application/example.sig,
	// written example.com/app/web@<its digest>.
	sig blob
}

const (
	ociManifest = "application/vnd.oci.image.manifest.v1+json"
	ociIndex    = "application/vnd.oci.image.index.v1+json"
	dockerV2    = "application/vnd.docker.distribution.manifest.v2+json"
)

// manifestJSON encodes v with odd spacing, so any re-encoding shows.
func manifestJSON(v any) []byte {
	b, _ := json.MarshalIndent(v, "", "   ")
	return append(b, '\n')
}

func image(mediaType string, config blob, layers ...blob) blob {
	cfgType, layerType := "application/vnd.oci.image.config.v1+json", "application/vnd.oci.image.layer.v1.tar+gzip"
	if mediaType == dockerV2 {
		cfgType, layerType = "application/vnd.docker.container.image.v1+json", "application/vnd.docker.image.rootfs.diff.tar.gzip"
	}
	var ls []any
	for _, l := range layers {
		ls = append(ls, l.desc(layerType))
	}
	return newBlob(manifestJSON(map[string]any{"schemaVersion": 2, "mediaType": mediaType, "config": config.desc(cfgType), "layers": ls}))
}

// writeFixture writes the standard fixture bundle into a temp dir.
func writeFixture(t *testing.T) fixture {
	t.Helper()
	var f fixture
	cfgA := newBlob([]byte(`{"architecture":"amd64","os":"linux"}`))
	cfgB := newBlob([]byte(`{"architecture":"arm64","os":"linux"}`))
	f.layer = newBlob(bytes.Repeat([]byte("ferry-layer-amd64 "), 4000))
	f.armLayer = newBlob(bytes.Repeat([]byte("ferry-layer-arm64 "), 3000))
	f.webAMD64 = image(ociManifest, cfgA, f.layer)
	f.webARM64 = image(ociManifest, cfgB, f.armLayer)
	child := func(b blob, arch string) map[string]any {
		d := b.desc(ociManifest)
		d["platform"] = map[string]string{"os": "linux", "architecture": arch}
		return d
	}
	f.web = newBlob(manifestJSON(map[string]any{"schemaVersion": 2, "mediaType": ociIndex,
		"manifests": []any{child(f.webAMD64, "amd64"), child(f.webARM64, "arm64")}}))
	cfgN := newBlob([]byte(`{"architecture":"amd64","os":"linux","config":{}}`))
	f.nginxLayer = newBlob(bytes.Repeat([]byte("nginx "), 5000))
	f.nginx = image(dockerV2, cfgN, f.nginxLayer)
	empty := newBlob([]byte("{}"))
	f.sig = newBlob(manifestJSON(map[string]any{"schemaVersion": 2, "mediaType": ociManifest,
		"artifactType": "application/example.sig",
		"config":       empty.desc("application/vnd.oci.empty.v1+json"),
		"layers":       []any{empty.desc("application/vnd.oci.empty.v1+json")},
		"subject":      f.web.desc(ociIndex),
		"annotations":  map[string]string{"org.example.kind": "signature"}}))

	entry := func(b blob, mt, name string) map[string]any {
		d := b.desc(mt)
		d["annotations"] = map[string]string{bundle.AnnotationRefName: name}
		return d
	}
	index := manifestJSON(map[string]any{"schemaVersion": 2, "mediaType": ociIndex, "manifests": []any{
		entry(f.web, ociIndex, "example.com/app/web:v1"),
		entry(f.nginx, dockerV2, "nginx:1.25"),
		entry(f.sig, ociManifest, "example.com/app/web@"+f.sig.digest),
	}})
	blobs := []blob{cfgA, cfgB, f.layer, f.armLayer, f.webAMD64, f.webARM64, f.web, cfgN, f.nginxLayer, f.nginx, empty, f.sig}
	f.path = writeTar(t, index, blobs)
	return f
}

// writeTar writes an OCI layout tar without a lock.
func writeTar(t *testing.T, index []byte, blobs []blob) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	file := func(name string, data []byte) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	file("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	file("index.json", index)
	seen := map[string]bool{}
	for _, b := range blobs {
		if seen[b.digest] {
			continue
		}
		seen[b.digest] = true
		file("blobs/sha256/"+b.digest[len("sha256:"):], b.data)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "bundle.tar")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// serveFixture indexes a fixture and serves it with httptest.
func serveFixture(t *testing.T, f fixture, o Options) (*Index, *httptest.Server) {
	t.Helper()
	r, err := bundle.Open(f.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	x, err := New(context.Background(), r, o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	srv := httptest.NewServer(x.Handler(nil))
	t.Cleanup(srv.Close)
	return x, srv
}

// newIndex opens the bundle at path and indexes it.
func newIndex(t *testing.T, path string, o Options) (*Index, error) {
	t.Helper()
	r, err := bundle.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return New(context.Background(), r, o)
}
