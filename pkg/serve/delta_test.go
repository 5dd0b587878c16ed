package serve

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/pkg/bundle"
)

// TestServeDelta: a delta bundle is served with its manifests and the blobs
// it holds; an absent blob is a 404 that says it was left out of the delta.
func TestServeDelta(t *testing.T) {
	f := writeFixture(t)
	// The same images as a delta that leaves nginx's layer out.
	delta := bundle.Delta{MediaType: bundle.MediaTypeDelta, Bases: []bundle.DeltaBase{{Kind: bundle.BaseLock, Name: "v1.lock.yaml", Digest: f.nginx.digest}},
		Absent: []bundle.AbsentBlob{{Digest: f.nginxLayer.digest, Size: int64(len(f.nginxLayer.data)), Images: []string{"nginx:1.25"}, Bases: []string{"v1.lock.yaml"}}}}
	record, err := json.Marshal(delta)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(record)
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	in, err := os.Open(f.path)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	tr := tar.NewReader(in)
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		var b bytes.Buffer
		if _, err := b.ReadFrom(tr); err != nil {
			t.Fatal(err)
		}
		data := b.Bytes()
		switch h.Name {
		case "blobs/sha256/" + strings.TrimPrefix(f.nginxLayer.digest, "sha256:"):
			continue
		case "index.json":
			var idx map[string]any
			if err := json.Unmarshal(data, &idx); err != nil {
				t.Fatal(err)
			}
			idx["annotations"] = map[string]string{bundle.AnnotationDeltaDigest: "sha256:" + hex.EncodeToString(sum[:])}
			data = manifestJSON(idx)
			h.Size = int64(len(data))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(data)
	}
	tw.WriteHeader(&tar.Header{Name: bundle.DeltaFile, Mode: 0o644, Size: int64(len(record)), Typeflag: tar.TypeReg})
	tw.Write(record)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	f.path = filepath.Join(t.TempDir(), "delta.tar")
	if err := os.WriteFile(f.path, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	_, srv := serveFixture(t, f, Options{})
	if got := do(t, "GET", srv.URL+"/v2/library/nginx/manifests/1.25"); got.status != 200 || string(got.body) != string(f.nginx.data) {
		t.Errorf("manifest of a delta image: status %d", got.status)
	}
	if got := do(t, "GET", srv.URL+"/v2/app/web/blobs/"+f.layer.digest); got.status != 200 {
		t.Errorf("a blob the delta holds: status %d", got.status)
	}
	got := do(t, "GET", srv.URL+"/v2/library/nginx/blobs/"+f.nginxLayer.digest)
	if got.status != 404 || !strings.Contains(string(got.body), "left out of this delta bundle") {
		t.Errorf("an absent blob: status %d, body %s; want 404 saying it was left out of the delta", got.status, got.body)
	}
}
