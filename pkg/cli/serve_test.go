package cli

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/pkg/bundle"
	"github.com/ferry-dev/ferry/pkg/internal/testutil"
	"github.com/ferry-dev/ferry/pkg/lock"
)

// writeServeBundle writes a bundle of one config-only OCI image written
// example.com/app/web:v1, and returns its path and the image's digest.
func writeServeBundle(t *testing.T, dir string) (path, digest string) {
	t.Helper()
	sum := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
	config := []byte(`{"architecture":"amd64","os":"linux"}`)
	manifest := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[]}`, sum(config), len(config)))
	index := []byte(fmt.Sprintf(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%d,"annotations":{"org.opencontainers.image.ref.name":"example.com/app/web:v1"}}]}`, sum(manifest), len(manifest)))
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct {
		name string
		data []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", index},
		{"blobs/sha256/" + sum(config), config},
		{"blobs/sha256/" + sum(manifest), manifest},
	} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(f.data)
	}
	tw.Close()
	path = filepath.Join(dir, "bundle.tar")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, "sha256:" + sum(manifest)
}

func TestServeCLIErrors(t *testing.T) {
	dir := t.TempDir()
	bundlePath, _ := writeServeBundle(t, dir)
	tests := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"no bundle", []string{"serve"}, 2, "pass -i BUNDLE.tar"},
		{"half tls", []string{"serve", "-i", bundlePath, "--tls-cert", "c.pem"}, 2, "--tls-cert and --tls-key together"},
		{"bad layout", []string{"serve", "-i", bundlePath, "--layout", "tree"}, 2, "want path, host or flat"},
		{"bad addr", []string{"serve", "-i", bundlePath, "--addr", "5000"}, 2, "want HOST:PORT"},
		{"bad repository", []string{"serve", "-i", bundlePath, "--repository", "Reg.example/UP"}, 2, "--repository"},
		{"every address without repository", []string{"serve", "-i", bundlePath, "--addr", "0.0.0.0:0", "--lock-output", filepath.Join(dir, "l.yaml")}, 2, "pass --repository HOST:PORT"},
		{"flat without a name", []string{"serve", "-i", bundlePath, "--addr", "127.0.0.1:0", "--layout", "flat"}, 2, "--repository HOST:PORT/NAME"},
		{"missing bundle", []string{"serve", "-i", filepath.Join(dir, "none.tar")}, 1, "none.tar"},
		{"no connections", []string{"serve", "-i", bundlePath, "--max-connections", "0"}, 2, "at least 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, stderr, code := runWebhookCLI(t, tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.msg) {
				t.Errorf("exit %d, want %d; stderr %q, want it to say %q", code, tt.code, stderr, tt.msg)
			}
		})
	}
}

// TestServeCLI runs ferry serve on a free port: the lock names the port
// the kernel chose, the image answers there, and cancelling the context
// (what SIGTERM does in main) ends the command with no error.
func TestServeCLI(t *testing.T) {
	dir := t.TempDir()
	bundlePath, digest := writeServeBundle(t, dir)
	serveOnce(t, bundlePath, digest)
}

// TestServeCLISplit serves a split bundle from its first part.
func TestServeCLISplit(t *testing.T) {
	dir := t.TempDir()
	whole, digest := writeServeBundle(t, dir)
	b, err := os.ReadFile(whole)
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(dir, "split.tar")
	const size = 1000 // parts must be at least 1 MiB from pkg; a reader takes any size
	ps := bundle.Parts{MediaType: bundle.PartsMediaType, Size: int64(len(b)), PartSize: size}
	for i := 0; i*size < len(b); i++ {
		part := b[i*size : min((i+1)*size, len(b))]
		name := bundle.PartPath(base, i+1)
		if err := os.WriteFile(name, part, 0o644); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(part)
		ps.Parts = append(ps.Parts, bundle.Part{Name: filepath.Base(name), Size: int64(len(part)), Digest: "sha256:" + hex.EncodeToString(sum[:])})
	}
	j, _ := json.Marshal(ps)
	if err := os.WriteFile(bundle.PartsPath(base), j, 0o644); err != nil {
		t.Fatal(err)
	}
	serveOnce(t, bundle.PartPath(base, 1), digest)
}

// serveOnce runs serve on input, asks it for the image and stops it.
func serveOnce(t *testing.T, input, digest string) {
	t.Helper()
	lockPath := filepath.Join(t.TempDir(), "served.lock.yaml")
	root, _ := NewRoot()
	// stderr is read while the command writes it.
	var stdout bytes.Buffer
	var stderr testutil.SyncBuffer
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	root.SetArgs([]string{"serve", "-i", input, "--addr", "127.0.0.1:0", "--repository", "127.0.0.1:0/mirror", "--lock-output", lockPath})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(stderr.String(), "serving") {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("not serving after 20s; stderr:\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	lf, err := lock.Read(lockPath)
	if err != nil {
		t.Fatal(err)
	}
	if want := "127.0.0.1:0/mirror/app/web@" + digest; len(lf.Images) != 1 || lf.Images[0].Relocated != want {
		t.Errorf("lock %+v, want one image relocated to %s", lf.Images, want)
	}
	// The log line names the address the kernel chose.
	line := stderr.String()
	i := strings.Index(line, "http://")
	addr := strings.Fields(line[i+len("http://"):])[0]
	addr = strings.Trim(addr, `"`)
	resp, err := http.Get("http://" + addr + "/v2/mirror/app/web/manifests/v1")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Docker-Content-Digest") != digest {
		t.Errorf("GET manifest: %d %q", resp.StatusCode, resp.Header.Get("Docker-Content-Digest"))
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve after cancel: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve still running 20s after cancel")
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout is for data: %q", stdout.String())
	}
}
